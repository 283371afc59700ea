"""Push fixtures: one loopback fake FCM per test session, its service account, settings that
point the real firebase-admin SDK at it, and a transport per test."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from api.core.config import Settings
from api.push.transport import FirebaseTransport, transport_for
from tests import factories
from tests.conftest import make_settings
from tests.fakes.fcm import FakeFCM, service_account_file


@pytest.fixture(scope="session")
def fcm_server() -> Iterator[FakeFCM]:
    fake = FakeFCM().start()
    yield fake
    fake.stop()


@pytest.fixture
def fcm(fcm_server: FakeFCM) -> FakeFCM:
    """The fake FCM, its request log and failures cleared."""
    fcm_server.reset()
    return fcm_server


@pytest.fixture(scope="session")
def service_account(fcm_server: FakeFCM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return service_account_file(tmp_path_factory.mktemp("fcm"), fcm_server.url)


def push_settings(
    service_account: Path | None, fcm_url: str | None, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "firebase_credentials": str(service_account) if service_account else None,
        "fcm_url": fcm_url,
        "push_quiet_hours": "",
        "push_backoff_base_seconds": 0.01,
        "push_backoff_max_seconds": 3,
        "push_send_rate": 5000,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
def settings(service_account: Path, fcm_server: FakeFCM) -> Settings:
    """The suite's settings plus Firebase credentials for the fake; no quiet hours."""
    return push_settings(service_account, fcm_server.url)


@pytest.fixture
async def transport(settings: Settings) -> AsyncIterator[FirebaseTransport]:
    made = transport_for(settings)
    assert isinstance(made, FirebaseTransport)
    yield made
    await asyncio.to_thread(made.close)


@pytest.fixture
async def shops(session) -> factories.Org:  # type: ignore[no-untyped-def]
    """Regions and stores like the `org` fixture, without its staff and terminals (faster)."""
    north = await factories.make_region(session)
    south = await factories.make_region(session)
    built = factories.Org(
        north,
        south,
        await factories.make_store(session, north, kind="supermarket"),
        await factories.make_store(session, north, kind="fuel_station"),
        await factories.make_store(session, south, kind="fuel_station"),
    )
    await session.commit()
    return built
