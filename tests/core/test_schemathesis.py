"""Schemathesis over the OpenAPI schema: every operation, fuzzed with real credentials, answers
without a 5xx and with a documented status, content type and body.

The app runs on its own engine (every request commits) in schemathesis' event-loop thread, so
the seed is committed beforehand and the tables are emptied afterwards. Generation is
derandomised with a fixed number of examples per operation, so a run is repeatable."""

import asyncio
import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.core.db import make_engine, make_sessionmaker
from api.main import create_app
from api.org.models import Terminal
from tests import factories
from tests.conftest import DATABASE_URL, IS_POSTGRES, make_settings
from tests.loyalty.till.test_concurrency_purchases import wipe

# Per operation and generation mode (positive, negative): ~60-90 s a database on 2 cores.
MAX_EXAMPLES = 6 if IS_POSTGRES else 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass(frozen=True)
class Seed:
    """Real credentials of each kind, so fuzzing reaches the handlers instead of a 401."""

    staff: dict[str, str]
    terminal: dict[str, str]
    member: dict[str, str]
    terminal_id: int
    store_id: int

    def headers_for(self, security: list[dict[str, list[str]]]) -> dict[str, str]:
        """Headers for the first credential kind the operation accepts (none if public)."""
        kinds = {
            "StaffPassword": self.staff,
            "TerminalApiKey": self.terminal,
            "MemberBearer": self.member,
        }
        schemes = [name for requirement in security for name in requirement]
        return next((kinds[name] for name in schemes if name in kinds), {})


async def _seed() -> Seed:
    test_settings = make_settings()
    engine = make_engine(DATABASE_URL)
    try:
        async with make_sessionmaker(engine)() as session:
            org = await factories.make_org(session, test_settings)
            member = await factories.make_member(session, test_settings, store=org.supermarket)
            terminal_id = await session.scalar(
                select(Terminal.id).where(Terminal.store_id == org.supermarket.id)
            )
            await session.commit()
    finally:
        await engine.dispose()
    return Seed(
        staff=org.headers["admin"],
        terminal=org.terminal(org.supermarket),
        member=factories.member_headers(test_settings, member),
        terminal_id=int(terminal_id or 0),
        store_id=org.supermarket.id,
    )


def _run(coro_fn):  # type: ignore[no-untyped-def]
    """Run a coroutine on a fresh event loop in another thread (the tests' loop is pytest's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn()).result()


@pytest.fixture(scope="module")
def seed(engine: AsyncEngine) -> Iterator[Seed]:
    """Committed seed data in the migrated test database; emptied after the module."""
    try:
        yield _run(_seed)
    finally:
        asgi.shutdown_lifespans()  # the app disposes its own engine
        _run(wipe)


APP = create_app(make_settings())
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP  # requests go to the app in-process; its lifespan starts with the first one
schema.config.generation.update(
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    with_security_parameters=False,  # the seeded credentials are sent instead
)


def _keeps_the_seed_usable(case: Any, seed: Seed) -> bool:
    """Revoking the seeded terminal or closing its store would turn every later till call
    into a 401; such examples are skipped, every other one runs."""
    params = case.path_parameters or {}
    if case.operation.label == "DELETE /v1/terminals/{terminal_id}":
        return params.get("terminal_id") != seed.terminal_id
    if case.operation.label == "PATCH /v1/stores/{store_id}":
        return params.get("store_id") != seed.store_id
    return True


@schema.parametrize()
@settings(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=MAX_EXAMPLES,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, seed: Seed):  # type: ignore[no-untyped-def]
    assume(_keeps_the_seed_usable(case, seed))
    headers = seed.headers_for(case.operation.definition.raw.get("security", []))
    case.call_and_validate(headers=headers, checks=CHECKS)
