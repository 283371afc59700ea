"""On PostgreSQL, with real commits: 50 parallel redemptions on one member never overdraw,
and 20 parallel claims of a reward with stock 5 issue exactly 5 coupons."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.core import clock
from api.core.config import Settings
from api.core.db import make_sessionmaker
from api.loyalty import accounts, rewards
from api.loyalty.models import Account, Coupon, LedgerEntry, Redemption, Reward
from api.loyalty.schemas import RewardCreate
from api.main import create_app
from api.members import cards
from api.members.models import Member
from tests import factories
from tests.conftest import make_settings, postgres_only

pytestmark = postgres_only


@dataclass
class Committed:
    """An app on the real sessionmaker: every request commits for real."""

    settings: Settings
    maker: async_sessionmaker[AsyncSession]
    client: httpx.AsyncClient
    org: factories.Org


async def _truncate_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            )
        ).scalars()
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[Committed]:
    settings = make_settings()
    maker = make_sessionmaker(engine)
    app = create_app(settings, engine=engine)
    try:
        async with maker() as session:
            org = await factories.make_org(session, settings)
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Committed(settings, maker, client, org)
    finally:
        await _truncate_all(engine)


async def _member_with(c: Committed, points: int) -> Member:
    async with c.maker() as session:
        member = await factories.make_member(session, c.settings)
        await accounts.adjust(
            session, member_id=member.id, points=points, reason="opening balance", actor="test"
        )
        await session.commit()
    return member


async def _ledger_holds(c: Committed, member_id: int) -> Account:
    async with c.maker() as session:
        account = await session.get(Account, member_id)
        assert account is not None
        total = await session.scalar(
            select(func.sum(LedgerEntry.points)).where(LedgerEntry.member_id == member_id)
        )
        lots = await session.scalar(
            select(func.sum(LedgerEntry.remaining)).where(
                LedgerEntry.member_id == member_id, LedgerEntry.matured.is_(True)
            )
        )
        assert account.available + account.pending == total
        assert account.available == lots
        return account


async def test_fifty_parallel_redemptions_never_overdraw(committed: Committed):
    c = committed
    balance = 5000
    member = await _member_with(c, balance)
    till = c.org.terminal(c.org.supermarket)
    code = cards.current_code(
        member.totp_secret,
        clock.now(),
        period=c.settings.totp_period,
        digits=c.settings.totp_digits,
    )
    scan = await c.client.post(
        "/v1/pos/identify", json={"code": cards.payload(member.card_number, code)}, headers=till
    )
    assert scan.status_code == 200, scan.text
    token = scan.json()["till_token"]

    async def redeem(points: int) -> httpx.Response:
        return await c.client.post(
            "/v1/pos/redemptions", json={"member_code": token, "points": points}, headers=till
        )

    asks = [300 + 7 * (i % 5) for i in range(50)]
    answers = await asyncio.gather(*(redeem(points) for points in asks))
    outcomes = Counter((r.status_code, r.json().get("error")) for r in answers)
    assert set(outcomes) <= {(201, None), (409, "InsufficientPoints")}, outcomes
    reserved = [r.json() for r in answers if r.status_code == 201]
    assert sum(r["points"] for r in reserved) <= balance
    assert balance - sum(r["points"] for r in reserved) < min(asks)  # nothing left unspent

    async def settle(i: int, held: dict) -> httpx.Response:
        action = "confirm" if i % 3 else "cancel"
        return await c.client.post(f"/v1/pos/redemptions/{held['id']}/{action}", headers=till)

    settled = await asyncio.gather(*(settle(i, held) for i, held in enumerate(reserved)))
    assert all(r.status_code == 200 for r in settled), [r.text for r in settled]
    confirmed = sum(r.json()["points"] for r in settled if r.json()["status"] == "confirmed")

    account = await _ledger_holds(c, member.id)
    assert account.available >= 0
    assert account.available == balance - confirmed
    async with c.maker() as session:
        rows = list(
            (
                await session.execute(select(Redemption).where(Redemption.member_id == member.id))
            ).scalars()
        )
    assert len(rows) == len(reserved)
    assert sum(r.points for r in rows if r.status == "confirmed") == confirmed


async def test_twenty_parallel_claims_of_a_reward_with_stock_five(committed: Committed):
    c = committed
    async with c.maker() as session:
        reward = await rewards.create_reward(
            session, data=RewardCreate(name="Limited mug", points_cost=400, stock=5)
        )
        await session.commit()
    members = [await _member_with(c, 1000) for _ in range(15)]
    heavy = await _member_with(c, 10_000)  # one member claiming from several phones at once
    claimants = [*members, heavy, heavy, heavy, heavy, heavy]

    async def claim(member: Member) -> httpx.Response:
        headers = factories.member_headers(c.settings, member)
        return await c.client.post(f"/v1/me/rewards/{reward.id}/claim", headers=headers)

    answers = await asyncio.gather(*(claim(m) for m in claimants))
    outcomes = Counter((r.status_code, r.json().get("error")) for r in answers)
    assert outcomes == {(201, None): 5, (409, "RewardUnavailable"): 15}, outcomes

    async with c.maker() as session:
        stored = await session.get(Reward, reward.id)
        assert stored is not None and stored.stock == 0
        coupons = list(
            (await session.execute(select(Coupon).where(Coupon.reward_id == reward.id))).scalars()
        )
    assert len(coupons) == 5
    assert len({cp.code for cp in coupons}) == 5
    for member in {m.id: m for m in claimants}.values():
        account = await _ledger_holds(c, member.id)
        spent = 400 * sum(1 for cp in coupons if cp.member_id == member.id)
        start = 10_000 if member.id == heavy.id else 1000
        assert account.available == start - spent
