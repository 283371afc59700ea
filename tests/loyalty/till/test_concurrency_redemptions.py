"""With real commits: 100 parallel redemptions (reserve, then confirm or cancel) on one member
while the member earns never overdraw, on both databases over real HTTP; on PostgreSQL,
20 parallel claims of a reward with stock 5 issue exactly 5 coupons."""

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
from api.loyalty.ledger import accounts
from api.loyalty.ledger.check import check_ledger
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.rewards import service as rewards
from api.loyalty.rewards.models import Coupon, Reward
from api.loyalty.rewards.schemas import RewardCreate
from api.loyalty.till.models import Redemption
from api.main import create_app
from api.members import cards
from api.members.models import Member
from tests import factories
from tests.conftest import make_settings, postgres_only
from tests.loyalty.conftest import Server, receipt


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
async def committed_app(engine: AsyncEngine) -> AsyncIterator[Committed]:
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


async def test_a_hundred_parallel_redemptions_with_cancels_and_earning_never_overdraw(
    committed: async_sessionmaker[AsyncSession], live_server: Server
):
    """Over real HTTP: 100 tills-worth of reserve → confirm | cancel on one member while ten
    receipts credit the same member; the ledger, read in order, never dips below zero."""
    settings = make_settings()
    opening, earn_each = 5000, 200  # points; a receipt of 200.00 earns 200
    async with committed() as session:
        till = await factories.make_till(session)
        member = await factories.make_member(session, settings)
        await accounts.adjust(
            session, member_id=member.id, points=opening, reason="opening balance", actor="test"
        )
        await session.commit()
    limits = httpx.Limits(max_connections=120, max_keepalive_connections=120)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=60, limits=limits) as client:
        code = cards.current_code(
            member.totp_secret,
            clock.now(),
            period=settings.totp_period,
            digits=settings.totp_digits,
        )
        scan = await client.post(
            "/v1/pos/identify",
            json={"code": cards.payload(member.card_number, code)},
            headers=till.headers,
        )
        assert scan.status_code == 200, scan.text
        assert scan.json()["can_redeem"] is True
        token = scan.json()["till_token"]

        async def redeem(i: int) -> tuple[httpx.Response, httpx.Response | None]:
            asked = await client.post(
                "/v1/pos/redemptions",
                json={"member_code": token, "points": 300 + 7 * (i % 5)},
                headers=till.headers,
            )
            if asked.status_code != 201:
                return asked, None
            action = "cancel" if i % 3 == 0 else "confirm"
            held = asked.json()["id"]
            return asked, await client.post(
                f"/v1/pos/redemptions/{held}/{action}", headers=till.headers
            )

        async def earn(i: int) -> httpx.Response:
            body = receipt(f"EARN-{i}", ("grocery", earn_each * 100), member_code=token)
            return await client.post("/v1/pos/purchases", json=body, headers=till.headers)

        answers = await asyncio.gather(
            *(redeem(i) for i in range(100)), *(earn(i) for i in range(10))
        )
    redeemed = [a for a in answers if isinstance(a, tuple)]
    earned = [a for a in answers if isinstance(a, httpx.Response)]
    assert [r.status_code for r in earned] == [201] * 10, [r.text for r in earned]
    assert sum(r.json()["points"]["earned"] for r in earned) == earn_each * 10
    outcomes = Counter((r.status_code, r.json().get("error")) for r, _ in redeemed)
    assert set(outcomes) == {(201, None), (409, "InsufficientPoints")}, outcomes
    settled = [s for _, s in redeemed if s is not None]
    assert all(s.status_code == 200 for s in settled), [s.text for s in settled]
    confirmed = sum(s.json()["points"] for s in settled if s.json()["status"] == "confirmed")
    cancelled = [s for s in settled if s.json()["status"] == "cancelled"]
    assert confirmed and cancelled

    async with committed() as session:
        rows = list(
            (
                await session.execute(
                    select(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.points)
                    .where(LedgerEntry.member_id == member.id)
                    .order_by(LedgerEntry.id)
                )
            ).all()
        )
        account = await session.get(Account, member.id)
        assert account is not None
        stored = list(
            (
                await session.execute(select(Redemption).where(Redemption.member_id == member.id))
            ).scalars()
        )
        assert await check_ledger(session) == []
    running, lowest = 0, 0
    for _, _, points in rows:
        running += points
        lowest = min(lowest, running)
    assert lowest == 0, f"the ledger went down to {lowest}"
    assert running == account.available + account.pending
    assert account.available == opening + earn_each * 10 - confirmed
    kinds = Counter(kind for _, kind, _ in rows)
    assert kinds["reserve"] == outcomes[(201, None)] == len(stored)
    assert kinds["release"] == len(cancelled)
    assert kinds["earn"] == 10
    assert sum(r.points for r in stored if r.status == "confirmed") == confirmed
    assert not [r for r in stored if r.status == "reserved"]
    print(f"\n{dict(outcomes)}; {len(cancelled)} cancelled; {confirmed} points confirmed")


@postgres_only
async def test_twenty_parallel_claims_of_a_reward_with_stock_five(committed_app: Committed):
    c = committed_app
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
