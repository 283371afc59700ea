"""Races that only real, committed, concurrent transactions show. These tests use the app's
own sessionmaker (no per-test rollback), so they seed through committed sessions and empty
the application tables afterwards."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as plain_engine

from api.core import clock
from api.core.db import make_engine, run_in_transaction
from api.loyalty.ledger import jobs
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.check import check_ledger
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.till.models import Purchase, PurchaseReturn
from api.main import create_app
from api.members.models import Member
from tests import factories
from tests.conftest import DATABASE_URL, IS_POSTGRES, make_settings, postgres_only, sqlite_only
from tests.loyalty.conftest import receipt


async def wipe() -> None:
    """Empty every application table (all but alembic_version)."""
    if IS_POSTGRES:
        engine = make_engine(DATABASE_URL)
        async with engine.begin() as conn:
            names = (
                await conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables "
                        "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
            ).scalars()
            tables = ", ".join(f'"{name}"' for name in names)
            if tables:
                await conn.execute(text("SET LOCAL lock_timeout = '20s'"))  # fail, never hang
                await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    else:
        engine = plain_engine(DATABASE_URL)  # a plain connection: foreign keys off, any order
        async with engine.begin() as conn:
            names = (
                await conn.execute(
                    text(
                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%' AND name <> 'alembic_version'"
                    )
                )
            ).scalars()
            for name in list(names):
                await conn.execute(text(f'DELETE FROM "{name}"'))
    await engine.dispose()


@dataclass
class Live:
    client: httpx.AsyncClient
    maker: async_sessionmaker[AsyncSession]
    org: factories.Org
    member: Member

    @property
    def till(self) -> dict[str, str]:
        return self.org.terminal(self.org.supermarket)

    async def post_all(self, url: str, bodies: list[Any], headers: dict[str, str]) -> list[Any]:
        return list(
            await asyncio.gather(*(self.client.post(url, json=b, headers=headers) for b in bodies))
        )

    async def scalar(self, stmt: Any) -> Any:
        async with self.maker() as s:
            return (await s.execute(stmt)).scalar_one()

    async def account(self) -> Account:
        async with self.maker() as s:
            account = await s.get(Account, self.member.id)
            assert account is not None
            return account

    async def ledger_sound(self) -> bool:
        async with self.maker() as s:
            return await check_ledger(s) == []


@pytest.fixture
async def live(engine: AsyncEngine) -> AsyncIterator[Live]:
    """The app on its real sessionmaker (every request commits), with committed seed data."""
    settings = make_settings()
    app = create_app(settings, engine=engine)
    maker = app.state.sessionmaker
    try:
        async with maker() as s:
            org = await factories.make_org(s, settings)
            member = await factories.make_member(s, settings, store=org.supermarket)
            await s.commit()
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Live(client, maker, org, member)
    finally:
        await wipe()


def earn_entries(member_id: int) -> Any:
    return (
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.member_id == member_id, LedgerEntry.kind == "earn")
    )


@postgres_only
async def test_twenty_parallel_posts_of_one_receipt_accrue_once(live: Live):
    body = receipt("RACE-1", ("grocery", 10_000), member_code=live.member.card_number)
    responses = await live.post_all("/v1/pos/purchases", [body] * 20, live.till)

    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 1, [r.text for r in responses]
    purchase_id = created[0].json()["purchase_id"]
    for refused in (r for r in responses if r.status_code != 201):
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "DuplicateReceipt"
        assert refused.json()["purchase_id"] == purchase_id
    receipts = select(func.count()).select_from(Purchase).where(Purchase.receipt_no == "RACE-1")
    assert await live.scalar(receipts) == 1
    assert await live.scalar(earn_entries(live.member.id)) == 1
    account = await live.account()
    assert (account.available, account.purchases) == (100, 1)
    assert await live.ledger_sound()


@postgres_only
async def test_twenty_parallel_retries_with_one_idempotency_key_run_once(live: Live):
    body = receipt("RACE-2", ("grocery", 25_000), member_code=live.member.card_number)
    headers = {**live.till, "Idempotency-Key": "till-1-retry-7"}
    responses = await live.post_all("/v1/pos/purchases", [body] * 20, headers)

    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1  # every caller sees the same response
    replayed = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == 19
    receipts = select(func.count()).select_from(Purchase).where(Purchase.receipt_no == "RACE-2")
    assert await live.scalar(receipts) == 1
    assert await live.scalar(earn_entries(live.member.id)) == 1
    assert (await live.account()).available == 250
    assert await live.ledger_sound()


@postgres_only
async def test_parallel_returns_of_one_receipt_add_up_exactly(live: Live):
    body = receipt("RACE-3", ("grocery", 10_000), member_code=live.member.card_number)
    body["lines"][0]["quantity"] = 5
    posted = await live.client.post("/v1/pos/purchases", json=body, headers=live.till)
    purchase_id = posted.json()["purchase_id"]
    url = f"/v1/pos/purchases/{purchase_id}/returns"

    returns = [{"return_no": f"RT-{i}", "lines": [{"line_no": 1, "quantity": 1}]} for i in range(5)]
    responses = await live.post_all(url, returns, live.till)
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert sum(r.json()["points_reversed"] for r in responses) == 100
    async with live.maker() as s:
        purchase = await s.get(Purchase, purchase_id)
        assert purchase is not None
        assert (purchase.returned_total, purchase.points_reversed) == (10_000, 100)
    assert (await live.account()).available == 0

    again = await live.post_all(url, [{"return_no": "RT-9", "lines": [{"line_no": 1}]}], live.till)
    assert again[0].status_code == 422 and again[0].json()["error"] == "ReturnExceedsPurchase"
    assert await live.ledger_sound()


@postgres_only
async def test_parallel_posts_of_one_return_no_give_one_return(live: Live):
    body = receipt(
        "RACE-4", ("grocery", 4_000), ("dairy", 6_000), member_code=live.member.card_number
    )
    posted = await live.client.post("/v1/pos/purchases", json=body, headers=live.till)
    url = f"/v1/pos/purchases/{posted.json()['purchase_id']}/returns"
    same = {"return_no": "RT-ONCE", "lines": [{"line_no": 2}]}
    responses = await live.post_all(url, [same] * 10, live.till)

    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert len({(r.json()["return_id"], r.json()["points_reversed"]) for r in responses}) == 1
    count = select(func.count()).select_from(PurchaseReturn)
    assert await live.scalar(count) == 1
    assert (await live.account()).available == 40
    assert await live.ledger_sound()


@sqlite_only
async def test_concurrent_writers_on_sqlite_never_hit_database_is_locked(live: Live):
    bodies = [
        receipt(f"LOCAL-{i}", ("grocery", 1_000 * (i + 1)), member_code=live.member.card_number)
        for i in range(10)
    ]
    responses = await live.post_all("/v1/pos/purchases", bodies, live.till)

    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
    assert not any("locked" in r.text for r in responses)
    account = await live.account()
    assert account.available == sum(10 * (i + 1) for i in range(10))
    assert account.purchases == 10
    assert await live.scalar(earn_entries(live.member.id)) == 10
    assert await live.ledger_sound()


async def test_workers_running_side_by_side_expire_each_lot_exactly_once(live: Live):
    settings = make_settings()
    async with live.maker() as s:
        members = [await factories.make_member(s, settings) for _ in range(30)]
        for m in members:
            account = await ledger.lock_account(s, m.id)
            await ledger.credit(
                s,
                account,
                kind="earn",
                points=70,
                source=ledger.Source("test"),
                expires_at=clock.now() - timedelta(days=1),
            )
        await s.commit()

    async def worker_pass() -> int:
        return await run_in_transaction(live.maker, lambda s: jobs.expire_lots(s, limit=10))

    await asyncio.gather(*(worker_pass() for _ in range(4)))
    while await worker_pass():  # whatever a busy pass skipped, a later one takes
        pass

    expired = select(func.count(), func.sum(LedgerEntry.points)).where(LedgerEntry.kind == "expire")
    async with live.maker() as s:
        count, total = (await s.execute(expired)).one()
        assert (count, total) == (30, -70 * 30)
        assert await check_ledger(s) == []
