"""Points at the till: reserve → confirm | cancel, lapse, rotating-code rule, lot order,
blocked spending after a return, store scoping and Idempotency-Key."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from api import worker
from api.core import clock
from api.core.db import run_in_transaction
from api.loyalty.ledger import accounts
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.till.models import Redemption
from api.members import cards
from tests.loyalty.conftest import receipt

T0 = datetime(2026, 3, 4, 10, 0, 5, tzinfo=UTC)  # 5 s into a 30 s TOTP step
REDEEM = "/v1/pos/redemptions"


@pytest.fixture(autouse=True)
def frozen():
    with clock.frozen(T0) as c:
        yield c


@pytest.fixture
def till(org) -> dict[str, str]:
    return org.terminal(org.supermarket)


def rotating(member, settings) -> str:
    code = cards.current_code(
        member.totp_secret, clock.now(), period=settings.totp_period, digits=settings.totp_digits
    )
    return cards.payload(member.card_number, code)


async def scan(client, headers, code: str) -> dict:
    r = await client.post("/v1/pos/identify", json={"code": code}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def till_token(client, headers, member, settings) -> str:
    return (await scan(client, headers, rotating(member, settings)))["till_token"]


async def give(session, member, points: int) -> None:
    await accounts.adjust(
        session, member_id=member.id, points=points, reason="opening balance", actor="test"
    )
    await session.commit()


async def reserve(client, headers, code: str, points: int, **extra):
    return await client.post(
        REDEEM, json={"member_code": code, "points": points, **extra}, headers=headers
    )


async def account_of(session, member) -> Account:
    stmt = (
        select(Account)
        .where(Account.member_id == member.id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def assert_ledger_consistent(session, member) -> Account:
    """available + pending == SUM(ledger); available == SUM(remaining) of matured lots."""
    account = await account_of(session, member)
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.member_id == member.id
        )
    )
    lots = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.remaining), 0)).where(
            LedgerEntry.member_id == member.id, LedgerEntry.matured.is_(True)
        )
    )
    assert account.available + account.pending == total
    assert max(account.available, 0) == lots
    return account


async def remaining(session, *lots: LedgerEntry) -> list[int]:
    for lot in lots:
        await session.refresh(lot)
    return [lot.remaining for lot in lots]


async def redemption(session, redemption_id: int) -> Redemption:
    stmt = (
        select(Redemption)
        .where(Redemption.id == redemption_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


# ---------------------------------------------------------------- reserve, confirm, cancel


async def test_reserve_then_confirm_spends_the_points(client, session, settings, org, member, till):
    await give(session, member, 1000)
    token = await till_token(client, till, member, settings)

    r = await reserve(client, till, token, 300, receipt_no="R-100")
    assert r.status_code == 201, r.text
    held = r.json()
    assert held["status"] == "reserved"
    assert (held["points"], held["value"], held["member_id"]) == (300, 300, member.id)
    assert datetime.fromisoformat(held["expires_at"]) == T0 + timedelta(minutes=10)
    assert (await account_of(session, member)).available == 700

    done = await client.post(f"{REDEEM}/{held['id']}/confirm", headers=till)
    assert done.status_code == 200, done.text
    assert done.json() == {
        "id": held["id"],
        "status": "confirmed",
        "points": 300,
        "value": 300,
        "balance": {"available": 700, "pending": 0},
    }
    again = await client.post(f"{REDEEM}/{held['id']}/confirm", headers=till)
    assert again.status_code == 200
    assert again.json()["status"] == "confirmed"
    assert (await assert_ledger_consistent(session, member)).available == 700

    late_cancel = await client.post(f"{REDEEM}/{held['id']}/cancel", headers=till)
    assert late_cancel.status_code == 409
    assert late_cancel.json()["error"] == "RedemptionSettled"
    entry = await session.get(LedgerEntry, (await redemption(session, held["id"])).reserve_entry_id)
    assert (entry.kind, entry.points, entry.source_type) == ("reserve", -300, "redemption")


async def test_value_follows_the_programme_point_value(
    client, session, settings, org, member, till
):
    await give(session, member, 1000)
    put = await client.put(
        "/v1/loyalty/program",
        json={"redeem_points": 100, "redeem_value": 50, "min_redemption": 150},
        headers=org.headers["marketer"],
    )
    assert put.status_code == 200, put.text
    token = await till_token(client, till, member, settings)

    too_few = await reserve(client, till, token, 149)
    assert too_few.status_code == 422
    assert too_few.json()["error"] == "BelowMinimumRedemption"
    r = await reserve(client, till, token, 333)
    assert r.status_code == 201, r.text
    assert r.json()["value"] == 166  # 333 * 50 // 100, rounded down


async def test_cancel_gives_the_same_lots_their_points_back(
    client, session, settings, org, member, till
):
    account = await ledger.lock_account(session, member.id)
    src = ledger.Source("adjustment", None, "test", "lots")
    soon = await ledger.credit(
        session, account, kind="adjust", points=100, source=src, expires_at=T0 + timedelta(days=30)
    )
    later = await ledger.credit(
        session, account, kind="adjust", points=500, source=src, expires_at=T0 + timedelta(days=90)
    )
    never = await ledger.credit(session, account, kind="adjust", points=200, source=src)
    await session.commit()
    token = await till_token(client, till, member, settings)

    held = (await reserve(client, till, token, 400)).json()
    assert await remaining(session, soon, later, never) == [0, 200, 200]
    done = await client.post(f"{REDEEM}/{held['id']}/cancel", headers=till)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    assert done.json()["balance"] == {"available": 800, "pending": 0}
    assert await remaining(session, soon, later, never) == [100, 500, 200]
    await assert_ledger_consistent(session, member)
    release = (
        await session.execute(
            select(LedgerEntry).where(
                LedgerEntry.member_id == member.id, LedgerEntry.kind == "release"
            )
        )
    ).scalar_one()
    assert release.points == 400
    assert (await redemption(session, held["id"])).settled_at == T0

    twice = await client.post(f"{REDEEM}/{held['id']}/cancel", headers=till)
    assert twice.status_code == 200
    assert twice.json()["balance"]["available"] == 800
    confirm = await client.post(f"{REDEEM}/{held['id']}/confirm", headers=till)
    assert confirm.status_code == 409
    assert confirm.json()["error"] == "RedemptionSettled"


async def test_spending_takes_soonest_expiring_lots_first_and_never_expiring_last(
    client, session, settings, org, member, till
):
    account = await ledger.lock_account(session, member.id)
    src = ledger.Source("adjustment", None, "test", "lots")
    never = await ledger.credit(session, account, kind="adjust", points=300, source=src)
    late = await ledger.credit(
        session, account, kind="adjust", points=300, source=src, expires_at=T0 + timedelta(days=200)
    )
    soon = await ledger.credit(
        session, account, kind="adjust", points=300, source=src, expires_at=T0 + timedelta(days=20)
    )
    await session.commit()
    token = await till_token(client, till, member, settings)

    assert (await reserve(client, till, token, 400)).status_code == 201
    assert await remaining(session, soon, late, never) == [0, 200, 300]
    assert (await reserve(client, till, token, 300)).status_code == 201
    assert await remaining(session, soon, late, never) == [0, 0, 200]
    await assert_ledger_consistent(session, member)


# ---------------------------------------------------------------- lapse


async def test_lapsed_reservation_is_released_by_the_worker(
    client, session, maker, settings, org, member, till, frozen
):
    await give(session, member, 1000)
    token = await till_token(client, till, member, settings)
    held = (await reserve(client, till, token, 400)).json()
    early = (await reserve(client, till, token, 100)).json()
    frozen.tick(5 * 60)
    fresh = (await reserve(client, till, token, 100)).json()

    frozen.tick(5 * 60)  # exactly at the first two's expiry
    late = await client.post(f"{REDEEM}/{held['id']}/confirm", headers=till)
    assert late.status_code == 409
    assert late.json()["error"] == "ReservationExpired"
    assert (await account_of(session, member)).available == 400

    job = dict(worker.JOBS)["release_lapsed_redemptions"]
    assert await run_in_transaction(maker, job) == 2
    assert (await redemption(session, held["id"])).status == "expired"
    assert (await redemption(session, early["id"])).status == "expired"
    assert (await redemption(session, fresh["id"])).status == "reserved"
    assert (await assert_ledger_consistent(session, member)).available == 900
    assert await run_in_transaction(maker, job) == 0

    after = await client.post(f"{REDEEM}/{held['id']}/confirm", headers=till)
    assert after.status_code == 409
    assert after.json()["error"] == "ReservationExpired"
    cancelled = await client.post(f"{REDEEM}/{held['id']}/cancel", headers=till)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "expired"
    assert cancelled.json()["balance"]["available"] == 900
    ok = await client.post(f"{REDEEM}/{fresh['id']}/confirm", headers=till)
    assert ok.json()["status"] == "confirmed"


async def test_cancelling_a_lapsed_reservation_before_the_worker_releases_it(
    client, session, settings, org, member, till, frozen
):
    await give(session, member, 500)
    held = (
        await reserve(client, till, await till_token(client, till, member, settings), 200)
    ).json()
    frozen.tick(60 * 60)
    done = await client.post(f"{REDEEM}/{held['id']}/cancel", headers=till)
    assert done.status_code == 200
    assert done.json()["status"] == "cancelled"
    assert (await assert_ledger_consistent(session, member)).available == 500


# ---------------------------------------------------------------- who may spend


async def test_static_card_cannot_spend_unless_the_programme_allows(
    client, session, settings, org, member, till
):
    await give(session, member, 1000)
    by_card = await reserve(client, till, member.card_number, 100)
    assert by_card.status_code == 403
    assert by_card.json()["error"] == "RotatingCodeRequired"
    card_scan = await scan(client, till, member.card_number)
    assert card_scan["can_redeem"] is False
    by_card_token = await reserve(client, till, card_scan["till_token"], 100)
    assert by_card_token.status_code == 403
    assert (await assert_ledger_consistent(session, member)).available == 1000
    assert await session.scalar(select(func.count(Redemption.id))) == 0

    put = await client.put(
        "/v1/loyalty/program", json={"static_card_can_spend": True}, headers=org.headers["admin"]
    )
    assert put.status_code == 200, put.text
    assert (await reserve(client, till, member.card_number, 100)).status_code == 201
    assert (await reserve(client, till, card_scan["till_token"], 100)).status_code == 201
    assert (await account_of(session, member)).available == 800


async def test_rotating_code_spends_directly_but_only_once(
    client, session, settings, org, member, till
):
    await give(session, member, 1000)
    code = rotating(member, settings)
    first = await reserve(client, till, code, 100)
    assert first.status_code == 201, first.text
    replay = await reserve(client, till, code, 100)
    assert replay.status_code == 409
    assert replay.json()["error"] == "CodeReplayed"
    assert (await account_of(session, member)).available == 900


async def test_till_token_of_another_terminal_is_refused(client, session, settings, org, member):
    await give(session, member, 1000)
    token = await till_token(client, org.terminal(org.fuel_a), member, settings)
    r = await reserve(client, org.terminal(org.supermarket), token, 100)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "CodeForged"


async def test_refusals_store_nothing(client, session, settings, org, member, till):
    await give(session, member, 250)
    token = await till_token(client, till, member, settings)
    below = await reserve(client, till, token, 99)
    assert below.status_code == 422
    assert below.json()["error"] == "BelowMinimumRedemption"
    short = await reserve(client, till, token, 251)
    assert short.status_code == 409
    assert short.json()["error"] == "InsufficientPoints"
    invalid = await reserve(client, till, token, 0)
    assert invalid.status_code == 422
    assert await session.scalar(select(func.count(Redemption.id))) == 0
    assert (await assert_ledger_consistent(session, member)).available == 250


async def test_negative_balance_after_a_return_blocks_spending(
    client, session, settings, org, member, till
):
    token = await till_token(client, till, member, settings)
    bought = await client.post(
        "/v1/pos/purchases",
        json=receipt("R-NEG", ("grocery", 20000), member_code=token),
        headers=till,
    )
    assert bought.status_code == 201, bought.text
    assert bought.json()["balance"]["available"] == 200
    held = (await reserve(client, till, token, 200)).json()
    assert (await client.post(f"{REDEEM}/{held['id']}/confirm", headers=till)).status_code == 200
    returned = await client.post(
        f"/v1/pos/purchases/{bought.json()['purchase_id']}/returns",
        json={"return_no": "RT-NEG", "lines": [{"line_no": 1}]},
        headers=till,
    )
    assert returned.status_code == 200, returned.text
    assert returned.json()["balance"]["available"] == -200

    blocked = await reserve(client, till, token, 100)
    assert blocked.status_code == 409
    assert blocked.json()["error"] == "SpendingBlocked"

    await give(session, member, 400)
    assert (await assert_ledger_consistent(session, member)).available == 200
    assert (await reserve(client, till, token, 100)).status_code == 201
    assert (await assert_ledger_consistent(session, member)).available == 100


async def test_negative_balance_from_a_direct_debit_blocks_spending(
    client, session, settings, org, member, till
):
    account = await ledger.lock_account(session, member.id)
    await ledger.debit(
        session,
        account,
        kind="reverse",
        points=50,
        source=ledger.Source("return", None, "test"),
        allow_negative=True,
    )
    await session.commit()
    r = await reserve(client, till, await till_token(client, till, member, settings), 100)
    assert r.status_code == 409
    assert r.json()["error"] == "SpendingBlocked"


# ---------------------------------------------------------------- scoping and retries


async def test_only_a_terminal_of_the_same_store_can_settle(
    client, session, settings, org, member, till
):
    await give(session, member, 1000)
    held = (
        await reserve(client, till, await till_token(client, till, member, settings), 100)
    ).json()
    elsewhere = org.terminal(org.fuel_a)
    for action in ("confirm", "cancel"):
        r = await client.post(f"{REDEEM}/{held['id']}/{action}", headers=elsewhere)
        assert r.status_code == 404
        assert r.json()["error"] == "RedemptionNotFound"
    missing = await client.post(f"{REDEEM}/999999/confirm", headers=till)
    assert missing.status_code == 404
    assert (await client.post(f"{REDEEM}/{held['id']}/confirm")).status_code == 401


async def test_idempotency_key_replays_the_first_reservation(
    client, session, settings, org, member, till
):
    await give(session, member, 1000)
    token = await till_token(client, till, member, settings)
    headers = {**till, "Idempotency-Key": "redeem-1"}
    first = await reserve(client, headers, token, 300)
    again = await reserve(client, headers, token, 300)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await reserve(client, headers, token, 301)
    assert other.status_code == 422
    assert other.json()["error"] == "IdempotencyKeyReused"
    assert (await assert_ledger_consistent(session, member)).available == 700
    assert await session.scalar(select(func.count(Redemption.id))) == 1
