"""Offline QR codes checked against occurred_at, verified plates, one open reservation per
receipt, and read-back of receipts and redemptions by the till."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from api.core import clock
from api.loyalty.ledger import accounts
from api.loyalty.ledger.models import LedgerEntry
from api.loyalty.till.models import Redemption
from api.members import cards, identity
from api.members.models import Vehicle
from tests import factories
from tests.loyalty.conftest import receipt

PURCHASES = "/v1/pos/purchases"
REDEEM = "/v1/pos/redemptions"


def code_at(member, settings, at: datetime) -> str:
    code = cards.current_code(
        member.totp_secret, at, period=settings.totp_period, digits=settings.totp_digits
    )
    return cards.payload(member.card_number, code)


async def give(session, member, points: int) -> None:
    await accounts.adjust(session, member_id=member.id, points=points, reason="test", actor="test")
    await session.commit()


# ----------------------------------------------------------------------------- 5: offline codes


async def test_a_code_scanned_offline_is_checked_against_occurred_at(
    client, session, settings, org, member
):
    till = org.terminal(org.supermarket)
    scanned = clock.now() - timedelta(hours=2)
    body = receipt("OFF-1", ("grocery", 5_000), member_code=code_at(member, settings, scanned))
    body["occurred_at"] = scanned.isoformat()
    posted = await client.post(PURCHASES, json=body, headers=till)
    assert posted.status_code == 201, posted.text
    assert posted.json()["member_id"] == member.id and posted.json()["points"]["earned"] == 50

    # each code once: the same old code on another receipt is a replay
    again = {**body, "receipt_no": "OFF-2"}
    r = await client.post(PURCHASES, json=again, headers=till)
    assert (r.status_code, r.json()["error"]) == (409, "CodeReplayed")
    # the code of 2 hours ago does not fit a receipt of now
    now_body = receipt(
        "OFF-3",
        ("grocery", 5_000),
        member_code=code_at(member, settings, scanned + timedelta(minutes=1)),
    )
    r = await client.post(PURCHASES, json=now_body, headers=till)
    assert r.status_code in (410, 422), r.text
    # nor a receipt dated a few steps away from the scan
    shifted = receipt(
        "OFF-4",
        ("grocery", 5_000),
        member_code=code_at(member, settings, scanned + timedelta(minutes=5)),
    )
    shifted["occurred_at"] = (scanned + timedelta(minutes=8)).isoformat()
    r = await client.post(PURCHASES, json=shifted, headers=till)
    assert r.status_code in (410, 422), r.text


async def test_the_offline_batch_accepts_codes_of_their_receipts(
    client, session, settings, org, member
):
    till = org.terminal(org.supermarket)
    bodies = []
    for n, hours in enumerate((30, 5, 1)):
        at = clock.now() - timedelta(hours=hours)
        body = receipt(f"BAT-{n}", ("grocery", 1_000), member_code=code_at(member, settings, at))
        body["occurred_at"] = at.isoformat()
        bodies.append(body)
    too_old = clock.now() - identity.OFFLINE_CODE_WINDOW - timedelta(hours=1)
    old = receipt("BAT-OLD", ("grocery", 1_000), member_code=code_at(member, settings, too_old))
    old["occurred_at"] = too_old.isoformat()
    r = await client.post(f"{PURCHASES}/batch", json={"purchases": [*bodies, old]}, headers=till)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created"] * 3 + ["rejected"]
    assert results[3]["error"] == "OfflineCodeTooOld"
    assert "72 hours" in results[3]["detail"]
    earned = (
        await session.execute(
            select(LedgerEntry.points).where(
                LedgerEntry.member_id == member.id, LedgerEntry.kind == "earn"
            )
        )
    ).scalars()
    assert sorted(earned) == [10, 10, 10]


async def test_an_old_code_can_credit_but_never_spend(client, session, settings, org, member):
    await give(session, member, 1_000)
    till = org.terminal(org.supermarket)
    old = code_at(member, settings, clock.now() - timedelta(minutes=30))
    r = await client.post(REDEEM, json={"member_code": old, "points": 100}, headers=till)
    assert r.status_code == 410 and r.json()["error"] == "CodeExpired", r.text
    # the same code does identify an offline receipt of its moment, for earning
    body = receipt("OLD-1", ("grocery", 1_000), member_code=old)
    body["occurred_at"] = (clock.now() - timedelta(minutes=30)).isoformat()
    assert (await client.post(PURCHASES, json=body, headers=till)).status_code == 201
    assert (await session.execute(select(Redemption))).first() is None


# ----------------------------------------------------------------------------- 6: plates


async def identify(client, till, code: str):  # type: ignore[no-untyped-def]
    return await client.post("/v1/pos/identify", json={"code": code}, headers=till)


async def test_a_plate_added_in_the_app_earns_only_once_confirmed(
    client, session, settings, org, member
):
    till = org.terminal(org.fuel_a)
    me = factories.member_headers(settings, member)
    added = await client.post("/v1/me/vehicles", json={"plate": "粤B12345"}, headers=me)
    assert added.status_code == 201 and added.json()["verified"] is False
    r = await identify(client, till, "粤B12345")
    assert (r.status_code, r.json()["error"]) == (404, "CodeNotRecognised")
    by_plate = receipt("PL-1", ("grocery", 1_000), member_code="粤B12345")
    assert (await client.post(PURCHASES, json=by_plate, headers=till)).status_code == 404

    # a receipt identified by the member's QR with that plate (the car at the pump) verifies it
    body = receipt("PL-2", ("grocery", 1_000), member_code=code_at(member, settings, clock.now()))
    body["plate"] = "粤b·12345"
    assert (await client.post(PURCHASES, json=body, headers=till)).status_code == 201
    listed = await client.get("/v1/me/vehicles", headers=me)
    assert [v["verified"] for v in listed.json()] == [True]
    r = await identify(client, till, "粤B12345")
    assert r.status_code == 200 and r.json()["member_id"] == member.id


async def test_a_plate_on_a_receipt_by_card_number_verifies_nothing(
    client, session, settings, org, member
):
    thief = await factories.make_member(session, settings)
    await session.commit()
    till = org.terminal(org.fuel_a)
    await client.post(
        "/v1/me/vehicles",
        json={"plate": "粤B54321"},
        headers=factories.member_headers(settings, thief),
    )
    body = receipt("PL-3", ("grocery", 1_000), member_code=thief.card_number)
    body["plate"] = "粤B54321"
    assert (await client.post(PURCHASES, json=body, headers=till)).status_code == 201
    r = await identify(client, till, "粤B54321")
    assert r.status_code == 404  # a typed card number is no proof of the car


async def test_staff_confirm_a_plate_with_the_members_qr_and_other_claims_go(
    client, session, settings, org, member
):
    squatter = await factories.make_member(
        session, settings, plate="粤C11111", plate_verified=False
    )
    await session.commit()
    till = org.terminal(org.fuel_a)
    url = "/v1/pos/vehicles/confirm"
    typed = await client.post(
        url, json={"member_code": member.card_number, "plate": "粤C11111"}, headers=till
    )
    assert (typed.status_code, typed.json()["error"]) == (403, "RotatingCodeRequired")
    ok = await client.post(
        url,
        json={"member_code": code_at(member, settings, clock.now()), "plate": "粤C 11111"},
        headers=till,
    )
    assert ok.status_code == 200, ok.text
    assert (ok.json()["member_id"], ok.json()["plate"], ok.json()["verified"]) == (
        member.id,
        "粤C11111",
        True,
    )
    owners = (
        await session.execute(
            select(Vehicle.member_id, Vehicle.verified_by).where(Vehicle.plate == "粤C11111")
        )
    ).all()
    assert len(owners) == 1 and owners[0][0] == member.id and owners[0][0] != squatter.id
    assert owners[0][1].startswith("terminal:")
    r = await identify(client, till, "粤C11111")
    assert r.json()["member_id"] == member.id


# ----------------------------------------------------------------------------- 7: reservations


async def test_a_redemption_reserved_twice_for_a_receipt_returns_the_open_one(
    client, session, settings, org, member
):
    await give(session, member, 1_000)
    till = org.terminal(org.supermarket)
    scan = await identify(client, till, code_at(member, settings, clock.now()))
    token = scan.json()["till_token"]
    body = {"member_code": token, "points": 300, "receipt_no": "RES-1"}
    first = await client.post(REDEEM, json=body, headers=till)
    second = await client.post(REDEEM, json=body, headers=till)
    assert first.status_code == second.status_code == 201, second.text
    assert second.json()["id"] == first.json()["id"]
    other = await client.post(REDEEM, json={**body, "points": 400}, headers=till)
    assert (other.status_code, other.json()["error"]) == (409, "ReservationOpen")
    assert other.json()["redemption_id"] == first.json()["id"]
    holds = (await session.execute(select(Redemption))).scalars().all()
    assert len(holds) == 1
    assert (await accounts.balance_of(session, member.id)).available == 700
    # another receipt is another hold
    third = await client.post(REDEEM, json={**body, "receipt_no": "RES-2"}, headers=till)
    assert third.status_code == 201 and third.json()["id"] != first.json()["id"]


async def test_a_retry_with_the_spent_rotating_code_gets_the_open_hold(
    client, session, settings, org, member
):
    await give(session, member, 1_000)
    till = org.terminal(org.supermarket)
    body = {
        "member_code": code_at(member, settings, clock.now()),
        "points": 300,
        "receipt_no": "RES-9",
    }
    first = await client.post(REDEEM, json=body, headers=till)
    assert first.status_code == 201, first.text
    retry = await client.post(REDEEM, json=body, headers=till)
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == first.json()["id"]
    without_receipt = {**body, "receipt_no": None}
    r = await client.post(REDEEM, json=without_receipt, headers=till)
    assert (r.status_code, r.json()["error"]) == (409, "CodeReplayed")


# ----------------------------------------------------------------------------- 9: read-back


async def test_the_till_reads_back_its_receipts_and_redemptions(
    client, session, settings, org, member
):
    await give(session, member, 1_000)
    till = org.terminal(org.supermarket)
    body = receipt("RB-1", ("grocery", 4_000), ("dairy", 1_000), member_code=member.card_number)
    posted = await client.post(PURCHASES, json=body, headers=till)
    dup = await client.post(PURCHASES, json=body, headers=till)
    assert dup.status_code == 409
    read = await client.get(f"{PURCHASES}/{dup.json()['purchase_id']}", headers=till)
    assert read.status_code == 200, read.text
    got = read.json()
    assert (got["receipt_no"], got["member_id"], got["total"], got["points"]) == (
        "RB-1",
        member.id,
        5_000,
        posted.json()["points"]["earned"],
    )
    assert [ln["amount"] for ln in got["lines"]] == [4_000, 1_000]
    assert got["claimable"] is False

    scan = await identify(client, till, code_at(member, settings, clock.now()))
    held = await client.post(
        REDEEM, json={"member_code": scan.json()["till_token"], "points": 200}, headers=till
    )
    r = await client.get(f"{REDEEM}/{held.json()['id']}", headers=till)
    assert r.status_code == 200 and r.json()["status"] == "reserved" and r.json()["points"] == 200

    elsewhere = org.terminal(org.fuel_a)
    for url in (f"{PURCHASES}/{got['purchase_id']}", f"{REDEEM}/{held.json()['id']}"):
        hidden = await client.get(url, headers=elsewhere)
        missing = await client.get(url.rsplit("/", 1)[0] + "/999999999", headers=elsewhere)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["error"] == missing.json()["error"]


@pytest.mark.parametrize("path", ["purchases", "redemptions"])
async def test_read_back_needs_a_terminal(client, settings, member, path):
    r = await client.get(f"/v1/pos/{path}/1", headers=factories.member_headers(settings, member))
    assert r.status_code in (401, 403)
