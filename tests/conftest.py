"""Test harness: one migrated database per run (SQLite, or PostgreSQL when
LOYALTY_TEST_DATABASE_URL is set); each test runs in a transaction that is rolled back."""

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from api.core import migrate
from api.core.config import Settings
from api.core.db import make_engine
from api.main import create_app
from tests import factories

TEST_PHONE = "+8613800000000"
TEST_CODE = "123456"
_tmp = tempfile.mkdtemp(prefix="loyalty-test-")
DATABASE_URL = os.environ.get("LOYALTY_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{_tmp}/test.db"
IS_POSTGRES = DATABASE_URL.startswith("postgresql")

postgres_only = pytest.mark.skipif(not IS_POSTGRES, reason="needs PostgreSQL")
sqlite_only = pytest.mark.skipif(IS_POSTGRES, reason="SQLite behaviour")


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "database_url": DATABASE_URL,
        "secret_key": "test-secret-key-that-is-long-enough-0123456789",
        "test_phone_codes": f"{TEST_PHONE}:{TEST_CODE}",
        "worker_in_process": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _remove_sqlite_files(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


async def reset_schema(url: str) -> None:
    """Drop everything so the run starts from an empty database."""
    if url.startswith("sqlite"):
        _remove_sqlite_files(url.split("///", 1)[1])
        return
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    await reset_schema(DATABASE_URL)
    await asyncio.to_thread(migrate.upgrade_head, DATABASE_URL)
    eng = make_engine(DATABASE_URL)
    yield eng
    await eng.dispose()


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            yield conn
        finally:
            await trans.rollback()


@pytest.fixture
def maker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions joined to the test's outer transaction: their commits are savepoints."""
    return async_sessionmaker(
        bind=connection,
        expire_on_commit=False,
        autoflush=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
async def session(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with maker() as s:
        yield s


@pytest.fixture
def app(settings: Settings, engine: AsyncEngine, maker: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    application = create_app(settings, engine=engine)
    application.state.sessionmaker = maker
    return application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def org(session: AsyncSession, settings: Settings) -> factories.Org:
    """Two regions, three stores (a supermarket and two fuel stations), a terminal each,
    and one staff member per role with a bearer token."""
    built = await factories.make_org(session, settings)
    await session.commit()
    return built


class CapturingSender:
    """An SmsSender that keeps the codes instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_code(self, phone: str, code: str) -> None:
        self.sent.append((phone, code))

    def last_code(self, phone: str) -> str:
        return next(code for to, code in reversed(self.sent) if to == phone)


@pytest.fixture
def sms(app) -> CapturingSender:  # type: ignore[no-untyped-def]
    """Capture the sign-in codes the app sends (set as app.state.sms_sender)."""
    sender = CapturingSender()
    app.state.sms_sender = sender
    return sender


def client_at(app, ip: str) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    """A client whose requests come from `ip` (the ASGI transport's client address)."""
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing():  # type: ignore[no-untyped-def]
    """Argon2id at test-sized cost: same algorithm and hash format, ~100× faster per staff."""
    from argon2 import PasswordHasher

    from api.core import security

    default = security._hasher
    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    security._hasher = default
