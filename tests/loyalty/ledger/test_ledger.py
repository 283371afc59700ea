"""The ledger: lots and the order burns take them in, expiry dates, pending points, the
worker jobs, the member's points view and history, manual adjustments and ledger-check."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api import worker
from api.cli import main as cli
from api.core import clock
from api.core.config import get_settings
from api.core.db import make_engine, make_sessionmaker, run_in_transaction
from api.loyalty.ledger import jobs
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.check import check_ledger
from api.loyalty.ledger.exceptions import InsufficientPoints
from api.loyalty.ledger.models import Account, LedgerEntry, LotUse
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import ProgramUpdate, TierIn, TierSet
from api.org import service as org_service
from tests import factories
from tests.conftest import DATABASE_URL, make_settings
from tests.loyalty.conftest import receipt
from tests.loyalty.till.test_concurrency_purchases import wipe

T0 = datetime(2030, 1, 15, 4, 0, tzinfo=UTC)  # noon in Shanghai
SOURCE = ledger.Source("test", actor="test")


async def fresh(session: AsyncSession, member_id: int) -> Account:
    account = await session.get(Account, member_id, populate_existing=True)
    assert account is not None
    return account


async def entries(session: AsyncSession, member_id: int, kind: str) -> list[LedgerEntry]:
    stmt = (
        select(LedgerEntry)
        .where(LedgerEntry.member_id == member_id, LedgerEntry.kind == kind)
        .order_by(LedgerEntry.id)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


def staff_headers(org: factories.Org, role: str) -> dict[str, str]:
    """A staff bearer issued at the (possibly frozen) current time."""
    token, _ = org_service.issue_staff_token(make_settings(), org.staff[role])
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------ lots


async def test_burns_take_the_soonest_expiring_lots_first_and_never_expiring_last(session, member):
    account = await ledger.lock_account(session, member.id)
    never = await ledger.credit(session, account, kind="adjust", points=50, source=SOURCE)
    late = await ledger.credit(
        session, account, kind="earn", points=30, source=SOURCE, expires_at=T0 + timedelta(60)
    )
    soon = await ledger.credit(
        session, account, kind="earn", points=20, source=SOURCE, expires_at=T0 + timedelta(10)
    )

    burn = await ledger.debit(session, account, kind="spend", points=60, source=SOURCE)

    uses = (
        await session.execute(
            select(LotUse.lot_id, LotUse.points)
            .where(LotUse.entry_id == burn.id)
            .order_by(LotUse.id)
        )
    ).all()
    assert [tuple(u) for u in uses] == [(soon.id, 20), (late.id, 30), (never.id, 10)]
    assert (soon.remaining, late.remaining, never.remaining) == (0, 0, 40)
    assert (account.available, account.pending) == (40, 0)
    assert await check_ledger(session) == []


async def test_a_burn_beyond_the_balance_is_refused_and_changes_nothing(session, member):
    account = await ledger.lock_account(session, member.id)
    await ledger.credit(session, account, kind="earn", points=10, source=SOURCE)
    with pytest.raises(InsufficientPoints):
        await ledger.debit(session, account, kind="spend", points=11, source=SOURCE)
    assert account.available == 10
    assert await entries(session, member.id, "spend") == []


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


async def test_points_landing_while_the_balance_is_negative_repay_the_debt_first(session, member):
    account = await ledger.lock_account(session, member.id)
    bought = await ledger.credit(session, account, kind="earn", points=100, source=SOURCE)
    reserved = await ledger.debit(session, account, kind="reserve", points=30, source=SOURCE)
    await ledger.debit(session, account, kind="spend", points=50, source=SOURCE)
    await ledger.debit(
        session, account, kind="reverse", points=100, source=SOURCE, prefer_lot_ids=[bought.id],
        allow_negative=True,
    )  # fmt: skip
    assert (account.available, account.pending) == (-80, 0)
    assert await check_ledger(session) == []

    with clock.frozen(T0) as frozen:
        pending = await ledger.credit(
            session, account, kind="earn", points=50, source=SOURCE,
            available_at=T0 + timedelta(days=7),
        )  # fmt: skip
        assert (account.available, account.pending) == (-80, 50)
        frozen.set(T0 + timedelta(days=7))
        assert await jobs.mature_pending(session) == 1
    assert (account.available, account.pending) == (-30, 0)
    assert (pending.remaining, pending.detail["repaid_debt"]) == (0, 50)
    assert await check_ledger(session) == []

    await ledger.restore(session, account, burn=reserved, source=SOURCE)  # the reservation lapses
    assert account.available == 0
    assert bought.remaining == 0 and bought.detail["repaid_debt"] == 30
    assert await check_ledger(session) == []
    top_up = await ledger.credit(session, account, kind="adjust", points=25, source=SOURCE)
    assert (account.available, top_up.remaining) == (25, 25)
    assert await check_ledger(session) == []


@pytest.mark.parametrize(
    ("earned_at", "months", "timezone", "expected"),
    [
        # 01:00 on 1 February in Shanghai: February's end a year on, at local midnight
        (utc(2026, 1, 31, 17), 12, "Asia/Shanghai", utc(2027, 2, 28, 16)),
        # still 31 January in Shanghai
        (utc(2026, 1, 31, 15), 12, "Asia/Shanghai", utc(2027, 1, 31, 16)),
        (utc(2026, 3, 15), 12, "UTC", utc(2027, 4, 1)),
        (utc(2026, 11, 30, 12), 3, "UTC", utc(2027, 3, 1)),
        (utc(2024, 2, 29, 12), 12, "UTC", utc(2025, 3, 1)),
        # New York in winter is UTC-5
        (utc(2025, 2, 10, 12), 12, "America/New_York", utc(2026, 3, 1, 5)),
        (utc(2026, 3, 15), None, "UTC", None),
    ],
)
def test_expiry_is_at_month_end_in_the_programme_time_zone(earned_at, months, timezone, expected):
    assert ledger.expiry_for(earned_at, months, timezone) == expected


async def test_earned_points_expire_at_month_end_twelve_months_on(client, session, org, member):
    till = org.terminal(org.supermarket)
    with clock.frozen(T0):
        body = receipt("EXP-1", ("grocery", 10_000), member_code=member.card_number)
        posted = await client.post("/v1/pos/purchases", json=body, headers=till)
    assert posted.status_code == 201, posted.text
    expected = datetime(2031, 1, 31, 16, tzinfo=UTC)  # 1 February 2031 00:00 in Shanghai
    assert datetime.fromisoformat(posted.json()["points"]["expires_at"]) == expected
    (lot,) = await entries(session, member.id, "earn")
    assert lot.expires_at == expected


# ------------------------------------------------------------------ worker jobs


async def test_pending_points_become_available_after_the_pending_days(client, session, org, member):
    await program_service.update_program(session, data=ProgramUpdate(pending_days=7))
    await session.commit()
    with clock.frozen(T0) as frozen:
        body = receipt("PEND-1", ("grocery", 10_000), member_code=member.card_number)
        posted = (
            await client.post("/v1/pos/purchases", json=body, headers=org.terminal(org.supermarket))
        ).json()
        assert posted["points"]["pending"] == 100
        assert posted["balance"] == {"available": 0, "pending": 100}
        assert datetime.fromisoformat(posted["points"]["available_at"]) == T0 + timedelta(days=7)

        frozen.set(T0 + timedelta(days=7) - timedelta(seconds=1))
        assert await jobs.mature_pending(session) == 0
        account = await fresh(session, member.id)
        assert (account.available, account.pending) == (0, 100)

        frozen.set(T0 + timedelta(days=7))
        assert await jobs.mature_pending(session) == 1
        assert await jobs.mature_pending(session) == 0  # nothing left to do
    account = await fresh(session, member.id)
    assert (account.available, account.pending) == (100, 0)
    (lot,) = await entries(session, member.id, "earn")
    assert lot.matured and lot.remaining == 100
    assert await check_ledger(session) == []


async def test_expiry_job_writes_expire_entries_for_what_is_left(client, session, org, member):
    with clock.frozen(T0) as frozen:
        body = receipt("EXP-2", ("grocery", 10_000), member_code=member.card_number)
        posted = await client.post(
            "/v1/pos/purchases", json=body, headers=org.terminal(org.supermarket)
        )
        assert posted.status_code == 201
        account = await ledger.lock_account(session, member.id)
        await ledger.debit(session, account, kind="spend", points=30, source=SOURCE)
        (lot,) = await entries(session, member.id, "earn")

        frozen.set(lot.expires_at - timedelta(seconds=1))
        assert await jobs.expire_lots(session) == 0
        frozen.set(lot.expires_at)
        assert await jobs.expire_lots(session) == 1
        assert await jobs.expire_lots(session) == 0

    (expired,) = await entries(session, member.id, "expire")
    assert expired.points == -70
    assert (expired.source_type, expired.source_id) == ("expiry", lot.id)
    uses = (await session.execute(select(LotUse).where(LotUse.entry_id == expired.id))).scalars()
    assert [(u.lot_id, u.points) for u in uses] == [(lot.id, 70)]
    account = await fresh(session, member.id)
    assert (account.available, account.pending) == (0, 0)
    assert await check_ledger(session) == []


async def test_the_worker_runs_the_ledger_jobs(maker, session, member):
    account = await ledger.lock_account(session, member.id)
    await ledger.credit(
        session, account, kind="earn", points=40, source=SOURCE, expires_at=T0 - timedelta(1)
    )
    await ledger.credit(
        session,
        account,
        kind="earn",
        points=25,
        source=SOURCE,
        available_at=T0 + timedelta(days=1),
        expires_at=T0 + timedelta(days=400),
    )
    await session.commit()
    ours = {"mature_pending_points", "expire_points", "review_tiers"}
    registered = [(name, job) for name, job in worker.JOBS if name in ours]
    assert {name for name, _ in registered} == ours

    with clock.frozen(T0 + timedelta(days=2)):
        done = {name: await run_in_transaction(maker, job) for name, job in registered}
    assert done["expire_points"] == 1
    assert done["mature_pending_points"] == 1
    account = await fresh(session, member.id)
    assert (account.available, account.pending) == (25, 0)
    assert await check_ledger(session) == []


# ------------------------------------------------------------------ the member's view


async def test_my_points_show_value_expiring_lots_and_tier_progress(
    client, session, settings, org, member
):
    await program_service.update_program(session, data=ProgramUpdate(redeem_value=50))
    await program_service.replace_tiers(
        session,
        data=TierSet(
            tiers=[
                TierIn(code="silver", name="Silver", min_spend=0),
                TierIn(code="gold", name="Gold", min_spend=500_000, multiplier_percent=150),
            ]
        ),
    )
    await session.commit()
    till = org.terminal(org.supermarket)
    with clock.frozen(T0) as frozen:
        first = receipt("VIEW-1", ("grocery", 12_345), member_code=member.card_number)
        assert (await client.post("/v1/pos/purchases", json=first, headers=till)).status_code == 201
        frozen.tick(40 * 86400)  # a later month: another expiry date
        second = receipt("VIEW-2", ("grocery", 5_000), member_code=member.card_number)
        assert (
            await client.post("/v1/pos/purchases", json=second, headers=till)
        ).status_code == 201
        got = await client.get("/v1/me/points", headers=factories.member_headers(settings, member))
    assert got.status_code == 200, got.text
    data = got.json()
    assert (data["available"], data["pending"]) == (173, 0)
    assert data["value"] == 86  # 173 points × 0.50 per 100
    assert [(e["points"], datetime.fromisoformat(e["expires_at"])) for e in data["expiring"]] == [
        (123, datetime(2031, 1, 31, 16, tzinfo=UTC)),
        (50, datetime(2031, 2, 28, 16, tzinfo=UTC)),
    ]
    tier = data["tier"]
    assert (tier["code"], tier["next_code"], tier["qualifying_spend"]) == ("silver", "gold", 17_345)
    assert tier["next_min_spend"] == 500_000
    assert tier["progress"] == pytest.approx(17_345 / 500_000, abs=1e-4)


async def test_history_is_cursor_paginated_newest_first(client, session, settings, member):
    account = await ledger.lock_account(session, member.id)
    made = [
        (await ledger.credit(session, account, kind="adjust", points=n, source=SOURCE)).id
        for n in range(1, 6)
    ]
    await session.commit()
    headers = factories.member_headers(settings, member)
    seen, pages, cursor = [], [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get("/v1/me/points/history", params=params, headers=headers)
        assert page.status_code == 200, page.text
        pages.append(len(page.json()["items"]))
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == [2, 2, 1]
    assert seen == sorted(made, reverse=True)
    bad = await client.get("/v1/me/points/history", params={"cursor": "nonsense"}, headers=headers)
    assert bad.status_code == 422


# ------------------------------------------------------------------ adjustments


@pytest.mark.parametrize("role", ["admin", "marketer"])
async def test_admins_and_marketers_adjust_points_with_a_reason(
    client, session, settings, org, member, role
):
    url = f"/v1/members/{member.id}/adjustments"
    added = await client.post(
        url, json={"points": 250, "reason": "goodwill: broken pump"}, headers=org.headers[role]
    )
    assert added.status_code == 201, added.text
    assert added.json()["kind"] == "adjust" and added.json()["points"] == 250
    taken = await client.post(
        url, json={"points": -50, "reason": "duplicate goodwill"}, headers=org.headers[role]
    )
    assert taken.status_code == 201, taken.text
    too_much = await client.post(
        url, json={"points": -1000, "reason": "more than there is"}, headers=org.headers[role]
    )
    assert too_much.status_code == 409 and too_much.json()["error"] == "InsufficientPoints"

    history = await client.get(
        "/v1/me/points/history", headers=factories.member_headers(settings, member)
    )
    items = history.json()["items"]
    assert [(i["points"], i["reason"]) for i in items] == [
        (-50, "duplicate goodwill"),
        (250, "goodwill: broken pump"),
    ]
    assert items[0]["actor"] == f"staff:{org.staff[role].id}"
    assert await check_ledger(session) == []


@pytest.mark.parametrize(
    ("role", "body", "status"),
    [
        ("store_manager", {"points": 10, "reason": "not allowed"}, 403),
        ("region_manager", {"points": 10, "reason": "not allowed"}, 403),
        ("cashier", {"points": 10, "reason": "not allowed"}, 403),
        ("admin", {"points": 10}, 422),
        ("admin", {"points": 10, "reason": "  "}, 422),
        ("admin", {"points": 0, "reason": "nothing at all"}, 422),
    ],
)
async def test_adjustments_need_the_role_and_a_reason(
    client, session, org, member, role, body, status
):
    got = await client.post(
        f"/v1/members/{member.id}/adjustments", json=body, headers=org.headers[role]
    )
    assert got.status_code == status, got.text
    count = select(func.count()).select_from(LedgerEntry).where(LedgerEntry.member_id == member.id)
    assert (await session.execute(count)).scalar_one() == 0


# ------------------------------------------------------------------ ledger-check


async def test_ledger_check_passes_on_sound_data_and_names_a_corrupted_account(
    client, session, settings, org
):
    members = [await factories.make_member(session, settings) for _ in range(3)]
    for i, m in enumerate(members):
        account = await ledger.lock_account(session, m.id)
        await ledger.credit(session, account, kind="earn", points=100 + i, source=SOURCE)
        await ledger.credit(
            session,
            account,
            kind="earn",
            points=20,
            source=SOURCE,
            available_at=clock.now() + timedelta(days=3),
        )
        await ledger.debit(session, account, kind="spend", points=50, source=SOURCE)
    await session.flush()
    assert await check_ledger(session) == []

    cached, lots, orphan = members
    await session.execute(
        update(Account)
        .where(Account.member_id == cached.id)
        .values(available=Account.available + 5)
    )
    await session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.member_id == lots.id, LedgerEntry.matured.is_(False))
        .values(remaining=LedgerEntry.remaining - 1)
    )
    await session.execute(
        Account.__table__.delete().where(Account.__table__.c.member_id == orphan.id)
    )
    found = {m.member_id: m for m in await check_ledger(session)}
    assert set(found) == {cached.id, lots.id, orphan.id}
    assert found[cached.id].problems == [
        "available+pending 75 != ledger 70",
        "available 55 != matured lots 50",
    ]
    assert found[lots.id].problems == ["pending 20 != pending lots 19"]
    assert "available+pending 0 != ledger 72" in str(found[orphan.id])


def test_ledger_check_cli_exits_non_zero_on_a_mismatch(engine, monkeypatch):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", DATABASE_URL)
    get_settings.cache_clear()

    async def seed(corrupt_by: int) -> int:
        eng = make_engine(DATABASE_URL)
        try:
            async with make_sessionmaker(eng)() as s:
                member = await factories.make_member(s, make_settings())
                account = await ledger.lock_account(s, member.id)
                await ledger.credit(s, account, kind="earn", points=40, source=SOURCE)
                account.available += corrupt_by
                await s.commit()
                return member.id
        finally:
            await eng.dispose()

    try:
        asyncio.run(seed(0))
        result = CliRunner().invoke(cli, ["ledger-check"])
        assert result.exit_code == 0, result.output
        assert "ledger consistent" in result.output

        bad = asyncio.run(seed(7))
        result = CliRunner().invoke(cli, ["ledger-check"])
        assert result.exit_code == 1, result.output
        assert f"member {bad}: available+pending 47 != ledger 40" in result.output
    finally:
        asyncio.run(wipe())
        get_settings.cache_clear()
