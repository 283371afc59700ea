"""Engine, declarative base and the per-request session (one request = one transaction)."""

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import BigInteger, DateTime, Integer, MetaData, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, mapped_column
from sqlalchemy.types import TypeDecorator

from api.core import clock

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on PostgreSQL and on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return clock.as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else clock.as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def pk_column() -> Any:
    return mapped_column(BigIntPK, primary_key=True, autoincrement=True)


def created_at_column() -> Any:
    return mapped_column(UTCDateTime(), default=clock.now, nullable=False)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL + busy timeout, and BEGIN IMMEDIATE so two writers queue instead of deadlocking.

    A read-only connection may ask for `execution_options(sqlite_begin="DEFERRED")`.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "busy_timeout=30000",
            "foreign_keys=ON",
            "synchronous=NORMAL",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


FailureHook = Callable[[AsyncSession], Awaitable[None]]


def on_failure(session: AsyncSession, hook: FailureHook) -> None:
    """Run `hook` in a fresh transaction if this one rolls back (e.g. to count a failed try)."""
    session.info.setdefault("failure_hooks", []).append(hook)


def failure_hooks_mark(session: AsyncSession) -> int:
    """How many failure hooks are pending: pass it to `forget_failure_hooks` to undo later ones."""
    return len(session.info.get("failure_hooks", []))


def forget_failure_hooks(session: AsyncSession, mark: int) -> None:
    """Drop the hooks added since `mark` (the failure turned out to be no failure)."""
    del session.info.get("failure_hooks", [])[mark:]


async def run_in_transaction(
    maker: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    async with maker() as session, session.begin():
        session.info["sessionmaker"] = maker
        return await work(session)


async def run_apart(session: AsyncSession, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in its own short transaction, committed before this one goes on.

    For counters that must hold whatever the request then does (a guess at a code or a
    password is counted before it is compared, so parallel guesses cannot outrun the count),
    without holding their row locks for the rest of the request. It must run before the
    request's session has begun its own transaction: on SQLite a second writer would wait for
    the first, and under the tests' savepoints the request's rollback would take it along.
    """
    maker = session.info.get("sessionmaker")
    if maker is None:
        raise RuntimeError("run_apart needs a session from get_session or run_in_transaction")
    if session.in_transaction():
        raise RuntimeError("run_apart must run before the session's own transaction begins")
    return await run_in_transaction(maker, work)


async def end_reads(session: AsyncSession) -> None:
    """Commit a transaction that has only read so far (e.g. the caller's authentication), so
    that `run_apart` may run next. Refuses when objects are waiting to be written."""
    if not session.in_transaction():
        return
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("end_reads: the session has changes; run_apart must come first")
    await session.commit()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Session for one request: committed after the endpoint returns, before the response."""
    maker = request.app.state.sessionmaker
    async with maker() as session:
        session.info["sessionmaker"] = maker
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            hooks = session.info.pop("failure_hooks", [])
            if hooks:
                await run_in_transaction(maker, lambda fresh: _run_hooks(fresh, hooks))
            raise


async def _run_hooks(session: AsyncSession, hooks: list[FailureHook]) -> None:
    for hook in hooks:
        await hook(session)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_unless_exists(session: AsyncSession, model: type[Any], *conflict: str) -> Any:
    """`INSERT … ON CONFLICT (conflict) DO NOTHING` for the session's database; pass the values
    to `execute` so the compiled statement is reused.

    With RETURNING it answers "was it mine?" in one round trip instead of a savepoint, an
    INSERT and a release; on PostgreSQL a concurrent insert of the same key waits for the other
    transaction, as a plain unique index would.
    """
    return _insert_unless_exists(session.get_bind().dialect.name, model, conflict)


@functools.lru_cache(maxsize=64)
def _insert_unless_exists(dialect_name: str, model: type[Any], conflict: tuple[str, ...]) -> Any:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(model).on_conflict_do_nothing(index_elements=list(conflict))
