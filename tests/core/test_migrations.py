"""Alembic on a fresh database: every revision up and back down again, the models match the
migrations, and every constraint and index follows the naming convention.

Runs on a database of its own (a SQLite file in tmp_path, or a new PostgreSQL database on the
test server), never on the shared test database, since downgrades drop everything."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

import api.all_models  # noqa: F401  (registers every table)
from api.core import migrate
from api.core.db import Base, make_engine
from tests.conftest import DATABASE_URL, IS_POSTGRES

ALEMBIC_TABLE = "alembic_version"


@pytest.fixture
async def fresh_url(tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the suite's engine, dropped afterwards."""
    if not IS_POSTGRES:
        yield f"sqlite+aiosqlite:///{tmp_path}/migrations.db"
        return
    name = f"loyalty_migrations_{uuid.uuid4().hex[:12]}"
    server = create_async_engine(DATABASE_URL, isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with server.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await server.dispose()


async def inspect_db(url: str, fn: Any) -> Any:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def schema_of(conn: Connection) -> dict[str, Any]:
    """Tables with their columns, keys, constraints and indexes, comparable as plain data."""
    insp = inspect(conn)
    columns = insp.get_multi_columns()
    pks = insp.get_multi_pk_constraint()
    uniques = insp.get_multi_unique_constraints()
    fks = insp.get_multi_foreign_keys()
    checks = insp.get_multi_check_constraints()
    indexes = insp.get_multi_indexes()
    schema: dict[str, Any] = {}
    for key in sorted(columns, key=lambda k: k[1]):
        if key[1] == ALEMBIC_TABLE:
            continue
        schema[key[1]] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in columns[key]],
            "pk": pks[key]["name"],
            "uq": sorted((u["name"], tuple(u["column_names"])) for u in uniques[key]),
            "fk": sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"]) for f in fks[key]
            ),
            "ck": sorted(c["name"] for c in checks[key]),
            "ix": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in indexes[key]
                if not i.get("duplicates_constraint")
            ),
        }
    return schema


def leftovers_of(conn: Connection) -> dict[str, list[str]]:
    """What a downgrade to base must not leave behind besides alembic's own table."""
    insp = inspect(conn)
    found = {"tables": [t for t in insp.get_table_names() if t != ALEMBIC_TABLE]}
    if conn.dialect.name == "postgresql":
        found["sequences"] = insp.get_sequence_names()
        found["views"] = insp.get_view_names()
        found["types"] = list(
            conn.execute(
                text(
                    "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                    " WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c')"
                    " AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)"
                )
            ).scalars()
        )
    return found


def db_revisions(conn: Connection) -> set[str]:
    return set(conn.execute(text(f"SELECT version_num FROM {ALEMBIC_TABLE}")).scalars())


def revisions_oldest_first() -> list[Any]:
    script = ScriptDirectory.from_config(migrate.alembic_config(DATABASE_URL))
    return list(reversed(list(script.walk_revisions())))


def script_heads() -> set[str]:
    return set(ScriptDirectory.from_config(migrate.alembic_config(DATABASE_URL)).get_heads())


async def run_alembic(fn: Any, *args: Any) -> None:
    # Alembic's env.py calls asyncio.run(), which needs a thread without a running loop.
    await asyncio.to_thread(fn, *args)


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {ALEMBIC_TABLE}


async def test_upgrade_downgrade_upgrade_round_trip(fresh_url: str) -> None:
    revisions = revisions_oldest_first()
    assert revisions, "no migrations found"

    # up one revision at a time, remembering the tables each one adds
    tables_after: dict[str | None, set[str]] = {None: set()}
    added: dict[str, set[str]] = {}
    previous: set[str] = set()
    for rev in revisions:
        await run_alembic(migrate.upgrade, fresh_url, rev.revision)
        tables_after[rev.revision] = await inspect_db(fresh_url, table_names)
        added[rev.revision] = tables_after[rev.revision] - previous
        previous = tables_after[rev.revision]
    assert await inspect_db(fresh_url, db_revisions) == script_heads()
    assert previous == set(Base.metadata.tables)
    first = await inspect_db(fresh_url, schema_of)

    # down one revision at a time: each downgrade drops what its upgrade added, nothing else
    linear = len(script_heads()) == 1
    for rev in reversed(revisions):
        parent = rev.down_revision
        if not isinstance(parent, str | None):  # a merge point: no single parent to go back to
            continue
        before = await inspect_db(fresh_url, table_names)
        await run_alembic(migrate.downgrade, fresh_url, parent or "base")
        left = await inspect_db(fresh_url, table_names)
        assert not left & added[rev.revision], f"downgrade of {rev.revision} leaves its tables"
        assert left <= before
        if linear:
            assert left == tables_after[parent], f"downgrade of {rev.revision} drops too much"

    await run_alembic(migrate.downgrade, fresh_url, "base")
    leftovers = await inspect_db(fresh_url, leftovers_of)
    assert all(not found for found in leftovers.values()), leftovers
    assert await inspect_db(fresh_url, db_revisions) == set()

    # and up again: the very same schema, matching the models
    await run_alembic(migrate.upgrade_head, fresh_url)
    assert await inspect_db(fresh_url, db_revisions) == script_heads()
    again = await inspect_db(fresh_url, schema_of)
    assert again == first
    assert set(again) == set(Base.metadata.tables)
    assert await migrate.model_differences(fresh_url) == []

    # every name follows the convention, and is the name the models would give
    assert naming_problems(again) == []
    assert names_in(again) == names_in(schema_from_models())


PREFIXES = {"pk": "pk_", "uq": "uq_", "fk": "fk_", "ck": "ck_", "ix": "ix_"}


def names_in(schema: dict[str, Any]) -> set[tuple[str, str, str | None]]:
    names: set[tuple[str, str, str | None]] = set()
    for table, parts in schema.items():
        names.add((table, "pk", parts["pk"]))
        for kind in ("uq", "fk", "ix"):
            names |= {(table, kind, item[0]) for item in parts[kind]}
        names |= {(table, "ck", name) for name in parts["ck"]}
    return names


def naming_problems(schema: dict[str, Any]) -> list[str]:
    problems = []
    for table, kind, name in sorted(names_in(schema), key=str):
        expected = f"pk_{table}" if kind == "pk" else f"{PREFIXES[kind]}{table}_"
        ok = name == expected if kind == "pk" else bool(name and name.startswith(expected))
        if kind == "ix" and name and name.startswith(f"uq_{table}_"):
            ok = True  # a unique index may carry the unique-constraint prefix
        if not ok:
            problems.append(f"{table}: {kind} named {name!r}, expected {expected}…")
    return problems


def schema_from_models() -> dict[str, Any]:
    """The schema `create_all` makes from the models, on a scratch in-memory SQLite."""
    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
            return schema_of(conn)
    finally:
        engine.dispose()


def test_models_name_every_constraint_by_the_convention() -> None:
    assert naming_problems(schema_from_models()) == []


def test_naming_check_catches_a_stray_name() -> None:
    schema = {
        "member": {
            "pk": "member_pkey",
            "uq": [("member_phone_key", ("phone",))],
            "fk": [(None, ("home_store_id",), "org_store")],
            "ck": ["status_check"],
            "ix": [("idx_member_name", ("name",), False)],
        }
    }
    assert len(naming_problems(schema)) == 5


def test_revision_files_follow_the_file_template() -> None:
    versions = Path(migrate.MIGRATIONS_DIR) / "versions"
    files = sorted(p.name for p in versions.glob("*.py") if p.name != "__init__.py")
    assert files
    for name in files:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{4}_[a-z0-9_]+\.py", name), name
    assert len(revisions_oldest_first()) == len(files)
