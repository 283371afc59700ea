"""Fixtures for the points tests: a member with a card, a receipt builder, and for the fault
tests the app served by uvicorn in its own process on the test database (real commits)."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.core.db import make_sessionmaker
from tests import factories
from tests.conftest import DATABASE_URL, IS_POSTGRES

SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"  # as tests.conftest.make_settings
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def member(session, settings, org):
    m = await factories.make_member(session, settings, store=org.supermarket)
    await session.commit()
    return m


def receipt(
    receipt_no: str,
    *lines: tuple[str, int],
    member_code: str | None = None,
    member_id: int | None = None,
    occurred_at: datetime | None = None,
    currency: str = "CNY",
) -> dict[str, Any]:
    """A receipt body: lines are (category, amount) pairs."""
    body: dict[str, Any] = {
        "receipt_no": receipt_no,
        "currency": currency,
        "total": sum(amount for _, amount in lines),
        "lines": [
            {
                "line_no": i,
                "sku": f"SKU-{category}-{i}",
                "category": category,
                "quantity": 1,
                "amount": amount,
            }
            for i, (category, amount) in enumerate(lines, start=1)
        ],
    }
    if member_code:
        body["member_code"] = member_code
    if member_id:
        body["member_id"] = member_id
    if occurred_at:
        body["occurred_at"] = occurred_at.isoformat()
    return body


# ----------------------------------------------------------------------------- a live server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Graceful stop: uvicorn finishes the requests in flight (abandoned ones too)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""


def start_server(log: Path) -> Server:
    """`api.main:app` under uvicorn on 127.0.0.1, as `loyalty serve` runs it: on SQLite with the
    worker in-process (the embedded default), on PostgreSQL without (workers run apart)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_DATABASE_URL=DATABASE_URL,
        LOYALTY_ENV="test",
        LOYALTY_SECRET_KEY=SECRET_KEY,
        LOYALTY_WORKER_IN_PROCESS="false" if IS_POSTGRES else "true",
    )
    args = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", *args, "--no-access-log"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60  # imports alone take seconds on a busy machine
    while True:
        if process.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{server.tail()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"uvicorn did not start:\n{server.tail()}")
        time.sleep(0.1)


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that really commit; every application table is emptied afterwards."""
    from tests.loyalty.till.test_concurrency_purchases import wipe  # that module imports this one

    try:
        yield make_sessionmaker(engine)
    finally:
        await wipe()


@pytest.fixture
def live_server(committed: async_sessionmaker[AsyncSession], tmp_path: Path) -> Iterator[Server]:
    """The app served over real HTTP on the committed test database; stopped before the wipe."""
    server = start_server(tmp_path / "uvicorn.log")
    try:
        yield server
    finally:
        server.stop()
