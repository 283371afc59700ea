"""Rewards catalogue and coupons: who may write, what a member sees, claims that spend points
under stock and per-member limits, single use at the till, store scope, cancel and expiry
that give the points back."""

import io
from datetime import UTC, datetime, timedelta

import PIL.Image
import pytest
import zxingcpp
from sqlalchemy import func, select

from api import worker
from api.core import clock
from api.core.db import run_in_transaction
from api.loyalty.ledger import accounts
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.rewards import service as rewards
from api.loyalty.rewards.models import Coupon, Reward
from tests import factories

T0 = datetime(2026, 3, 4, 10, 0, 5, tzinfo=UTC)
REDEEM = "/v1/pos/coupons/redeem"


@pytest.fixture(autouse=True)
def frozen():
    with clock.frozen(T0) as c:
        yield c


@pytest.fixture
def me(settings, member) -> dict[str, str]:
    return factories.member_headers(settings, member)


async def give(session, member, points: int) -> None:
    await accounts.adjust(
        session, member_id=member.id, points=points, reason="opening balance", actor="test"
    )
    await session.commit()


async def make_reward(client, org, **fields) -> dict:
    body = {"name": "Coffee", "points_cost": 300, **fields}
    r = await client.post("/v1/rewards", json=body, headers=org.headers["marketer"])
    assert r.status_code == 201, r.text
    return r.json()


async def claim(client, headers, reward_id: int, **extra_headers: str):
    return await client.post(
        f"/v1/me/rewards/{reward_id}/claim", headers={**headers, **extra_headers}
    )


async def fresh(session, model, key):
    stmt = (
        select(model)
        .where(model.__mapper__.primary_key[0] == key)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def available(session, member) -> int:
    account = await fresh(session, Account, member.id)
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.member_id == member.id
        )
    )
    assert account.available + account.pending == total
    return account.available


# ---------------------------------------------------------------- catalogue


async def test_marketers_write_the_catalogue_and_staff_read_it(client, org):
    body = {"name": "Car wash", "points_cost": 500}
    refused = await client.post("/v1/rewards", json=body, headers=org.headers["cashier"])
    assert refused.status_code == 403
    made = await make_reward(
        client,
        org,
        name="Car wash",
        points_cost=500,
        stock=10,
        per_member_limit=2,
        valid_until=(T0 + timedelta(days=60)).isoformat(),
        store_ids=[org.fuel_a.id, org.fuel_b.id],
        value=2000,
        coupon_days=14,
    )
    assert made["active"] is True
    assert (made["stock"], made["per_member_limit"], made["coupon_days"]) == (10, 2, 14)
    assert made["store_ids"] == sorted([org.fuel_a.id, org.fuel_b.id])

    listed = await client.get("/v1/rewards", headers=org.headers["cashier"])
    assert [r["id"] for r in listed.json()] == [made["id"]]
    assert (await client.get("/v1/rewards")).status_code == 401

    patched = await client.patch(
        f"/v1/rewards/{made['id']}",
        json={"stock": None, "points_cost": 450, "store_ids": None},
        headers=org.headers["marketer"],
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["stock"], patched.json()["points_cost"]) == (None, 450)
    assert patched.json()["store_ids"] is None
    one = await client.get(f"/v1/rewards/{made['id']}", headers=org.headers["admin"])
    assert one.json()["points_cost"] == 450
    missing = await client.patch("/v1/rewards/999999", json={}, headers=org.headers["admin"])
    assert missing.status_code == 404
    assert missing.json()["error"] == "RewardNotFound"


@pytest.mark.parametrize(
    "fields",
    [
        {"valid_until": "2026-05-01T00:00:00"},  # no offset
        {"valid_until": "2026-03-01T00:00:00+00:00"},  # past
        {"store_ids": [999999]},
        {"points_cost": 0},
        {"stock": -1},
    ],
)
async def test_invalid_rewards_are_refused(client, org, fields):
    body = {"name": "Bad", "points_cost": 100, **fields}
    r = await client.post("/v1/rewards", json=body, headers=org.headers["marketer"])
    assert r.status_code == 422, r.text


async def test_required_fields_cannot_be_cleared(client, org):
    made = await make_reward(client, org)
    for field in ("name", "points_cost", "active", "coupon_days"):
        r = await client.patch(
            f"/v1/rewards/{made['id']}", json={field: None}, headers=org.headers["marketer"]
        )
        assert r.status_code == 422, (field, r.text)


async def test_members_see_only_what_they_can_claim(client, org, me):
    offered = await make_reward(client, org, name="Offered")
    inactive = await make_reward(client, org, name="Inactive")
    await client.patch(
        f"/v1/rewards/{inactive['id']}", json={"active": False}, headers=org.headers["marketer"]
    )
    await make_reward(client, org, name="Sold out", stock=0)
    await make_reward(client, org, name="Ends", valid_until=(T0 + timedelta(minutes=2)).isoformat())
    seen = await client.get("/v1/me/rewards", headers=me)
    assert seen.status_code == 200
    assert {r["name"] for r in seen.json()} == {"Offered", "Ends"}
    with clock.frozen(T0 + timedelta(minutes=3)):
        later = await client.get("/v1/me/rewards", headers=me)
    assert [r["id"] for r in later.json()] == [offered["id"]]
    assert (await client.get("/v1/me/rewards")).status_code == 401


# ---------------------------------------------------------------- claiming


async def test_claim_spends_points_and_takes_one_from_stock(client, session, org, member, me):
    await give(session, member, 1000)
    reward = await make_reward(client, org, stock=2, coupon_days=30)
    r = await claim(client, me, reward["id"])
    assert r.status_code == 201, r.text
    coupon = r.json()
    assert coupon["status"] == "issued"
    assert coupon["points_spent"] == 300
    assert coupon["reward_id"] == reward["id"]
    assert len(coupon["code"]) == rewards.CODE_LENGTH
    assert set(coupon["code"]) <= set(rewards.CODE_ALPHABET)
    assert datetime.fromisoformat(coupon["expires_at"]) == T0 + timedelta(days=30)
    assert await available(session, member) == 700
    assert (await fresh(session, Reward, reward["id"])).stock == 1
    spend = (
        await session.execute(
            select(LedgerEntry).where(
                LedgerEntry.member_id == member.id, LedgerEntry.kind == "spend"
            )
        )
    ).scalar_one()
    assert (spend.points, spend.source_type, spend.source_id) == (-300, "coupon", coupon["id"])

    mine = await client.get("/v1/me/coupons", headers=me)
    assert [c["code"] for c in mine.json()["items"]] == [coupon["code"]]
    png = await client.get(f"/v1/me/coupons/{coupon['id']}/qr.png", headers=me)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    scanned = zxingcpp.read_barcodes(PIL.Image.open(io.BytesIO(png.content)))
    assert [s.text for s in scanned] == [coupon["code"]]


async def test_coupon_expiry_never_outlives_the_reward(client, session, org, member, me):
    await give(session, member, 1000)
    ends = T0 + timedelta(days=5)
    reward = await make_reward(client, org, coupon_days=30, valid_until=ends.isoformat())
    coupon = (await claim(client, me, reward["id"])).json()
    assert datetime.fromisoformat(coupon["expires_at"]) == ends


async def test_per_member_limit_counts_coupons_not_cancelled(client, session, org, member, me):
    await give(session, member, 2000)
    reward = await make_reward(client, org, per_member_limit=2)
    first = (await claim(client, me, reward["id"])).json()
    assert (await claim(client, me, reward["id"])).status_code == 201
    third = await claim(client, me, reward["id"])
    assert third.status_code == 409
    assert third.json()["error"] == "RewardLimitReached"
    cancel = await client.post(f"/v1/me/coupons/{first['id']}/cancel", headers=me)
    assert cancel.status_code == 200
    assert (await claim(client, me, reward["id"])).status_code == 201
    assert await available(session, member) == 2000 - 2 * 300


async def test_out_of_stock_is_refused_and_nothing_is_spent(
    client, session, settings, org, member, me
):
    other = await factories.make_member(session, settings)
    await give(session, member, 1000)
    await give(session, other, 1000)
    reward = await make_reward(client, org, stock=1)
    assert (await claim(client, me, reward["id"])).status_code == 201
    sold_out = await claim(client, factories.member_headers(settings, other), reward["id"])
    assert sold_out.status_code == 409
    assert sold_out.json()["error"] == "RewardUnavailable"
    assert await available(session, other) == 1000
    assert (await fresh(session, Reward, reward["id"])).stock == 0


async def test_claims_need_points_an_active_reward_and_no_debt(
    client, session, settings, org, member, me, frozen
):
    reward = await make_reward(
        client, org, stock=3, valid_until=(T0 + timedelta(days=1)).isoformat()
    )
    poor = await claim(client, me, reward["id"])
    assert poor.status_code == 409
    assert poor.json()["error"] == "InsufficientPoints"
    assert (await fresh(session, Reward, reward["id"])).stock == 3

    account = await ledger.lock_account(session, member.id)
    await ledger.debit(
        session,
        account,
        kind="reverse",
        points=10,
        source=ledger.Source("return", None, "test"),
        allow_negative=True,
    )
    await session.commit()
    blocked = await claim(client, me, reward["id"])
    assert blocked.status_code == 409
    assert blocked.json()["error"] == "SpendingBlocked"

    await give(session, member, 1000)
    assert await available(session, member) == 990
    frozen.tick(2 * 86400)
    me = factories.member_headers(settings, member)
    expired = await claim(client, me, reward["id"])
    assert expired.status_code == 409
    assert expired.json()["error"] == "RewardUnavailable"
    missing = await claim(client, me, 999999)
    assert missing.status_code == 404
    assert missing.json()["error"] == "RewardNotFound"


async def test_claim_with_idempotency_key_spends_once(client, session, org, member, me):
    await give(session, member, 1000)
    reward = await make_reward(client, org)
    first = await claim(client, me, reward["id"], **{"Idempotency-Key": "claim-1"})
    again = await claim(client, me, reward["id"], **{"Idempotency-Key": "claim-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert await available(session, member) == 700
    assert await session.scalar(select(func.count(Coupon.id))) == 1


# ---------------------------------------------------------------- the till


async def test_coupon_is_redeemed_once(client, session, org, member, me):
    await give(session, member, 1000)
    reward = await make_reward(client, org, value=500)
    coupon = (await claim(client, me, reward["id"])).json()
    till = org.terminal(org.supermarket)
    typed = f"{coupon['code'][:5].lower()}-{coupon['code'][5:].lower()}"
    used = await client.post(REDEEM, json={"code": typed, "receipt_no": "R-9"}, headers=till)
    assert used.status_code == 200, used.text
    body = used.json()
    assert body["member_id"] == member.id
    assert body["reward"]["id"] == reward["id"]
    assert body["coupon"]["status"] == "redeemed"
    assert datetime.fromisoformat(body["coupon"]["redeemed_at"]) == T0
    stored = await fresh(session, Coupon, coupon["id"])
    assert (stored.redeemed_store_id, stored.receipt_no) == (org.supermarket.id, "R-9")

    again = await client.post(
        REDEEM, json={"code": coupon["code"], "receipt_no": "R-9"}, headers=till
    )
    assert again.status_code == 409
    assert again.json()["error"] == "CouponNotRedeemable"
    unknown = await client.post(REDEEM, json={"code": "ZZZZZZZZZZ"}, headers=till)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "CouponNotFound"
    assert (await client.post(REDEEM, json={"code": coupon["code"]})).status_code == 401
    cancel = await client.post(f"/v1/me/coupons/{coupon['id']}/cancel", headers=me)
    assert cancel.status_code == 409
    assert cancel.json()["error"] == "CouponNotRedeemable"
    assert await available(session, member) == 700


async def test_coupon_only_at_the_rewards_stores(client, session, org, member, me):
    await give(session, member, 1000)
    reward = await make_reward(client, org, store_ids=[org.fuel_a.id])
    coupon = (await claim(client, me, reward["id"])).json()
    wrong = await client.post(
        REDEEM, json={"code": coupon["code"]}, headers=org.terminal(org.supermarket)
    )
    assert wrong.status_code == 409
    assert wrong.json()["error"] == "RewardUnavailable"
    assert (await fresh(session, Coupon, coupon["id"])).status == "issued"
    right = await client.post(
        REDEEM, json={"code": coupon["code"]}, headers=org.terminal(org.fuel_a)
    )
    assert right.status_code == 200, right.text


# ---------------------------------------------------------------- points coming back


async def test_member_cancel_returns_points_to_the_same_lots_and_stock(
    client, session, settings, org, member, me
):
    account = await ledger.lock_account(session, member.id)
    src = ledger.Source("adjustment", None, "test", "lots")
    soon = await ledger.credit(
        session, account, kind="adjust", points=200, source=src, expires_at=T0 + timedelta(days=9)
    )
    never = await ledger.credit(session, account, kind="adjust", points=500, source=src)
    await session.commit()
    reward = await make_reward(client, org, stock=5)
    coupon = (await claim(client, me, reward["id"])).json()
    for lot in (soon, never):
        await session.refresh(lot)
    assert (soon.remaining, never.remaining) == (0, 400)

    done = await client.post(f"/v1/me/coupons/{coupon['id']}/cancel", headers=me)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    for lot in (soon, never):
        await session.refresh(lot)
    assert (soon.remaining, never.remaining) == (200, 500)
    assert await available(session, member) == 700
    assert (await fresh(session, Reward, reward["id"])).stock == 5
    twice = await client.post(f"/v1/me/coupons/{coupon['id']}/cancel", headers=me)
    assert twice.status_code == 200
    assert await available(session, member) == 700

    used = await client.post(
        REDEEM, json={"code": coupon["code"]}, headers=org.terminal(org.supermarket)
    )
    assert used.status_code == 409
    stranger = factories.member_headers(settings, await factories.make_member(session, settings))
    for path in (f"/v1/me/coupons/{coupon['id']}/cancel",):
        assert (await client.post(path, headers=stranger)).status_code == 404
    qr = await client.get(f"/v1/me/coupons/{coupon['id']}/qr.png", headers=stranger)
    assert qr.status_code == 404
    assert (await client.get("/v1/me/coupons", headers=stranger)).json()["items"] == []


async def test_expired_unused_coupon_returns_points_through_the_worker(
    client, session, maker, settings, org, member, frozen
):
    await give(session, member, 1000)
    me = factories.member_headers(settings, member)
    reward = await make_reward(client, org, stock=3, coupon_days=1)
    lapsing = (await claim(client, me, reward["id"])).json()
    used = (await claim(client, me, reward["id"])).json()
    till = org.terminal(org.supermarket)
    assert (await client.post(REDEEM, json={"code": used["code"]}, headers=till)).status_code == 200
    assert await available(session, member) == 400

    frozen.tick(86400)
    late = await client.post(REDEEM, json={"code": lapsing["code"]}, headers=till)
    assert late.status_code == 409
    assert late.json()["error"] == "CouponNotRedeemable"
    job = dict(worker.JOBS)["expire_coupons"]
    assert await run_in_transaction(maker, job) == 1
    assert (await fresh(session, Coupon, lapsing["id"])).status == "expired"
    assert (await fresh(session, Coupon, used["id"])).status == "redeemed"
    assert await available(session, member) == 700
    assert (await fresh(session, Reward, reward["id"])).stock == 2
    assert await run_in_transaction(maker, job) == 0
    release = (
        await session.execute(
            select(LedgerEntry).where(
                LedgerEntry.member_id == member.id, LedgerEntry.kind == "release"
            )
        )
    ).scalar_one()
    assert (release.points, release.source_type, release.source_id) == (
        300,
        "coupon",
        lapsing["id"],
    )


async def test_gift_coupon_lapses_without_touching_points_or_stock(
    client, session, maker, org, member, frozen
):
    reward = await make_reward(client, org, stock=4)
    gift = Coupon(
        code=rewards.new_coupon_code(),
        reward_id=reward["id"],
        member_id=member.id,
        status="issued",
        points_spent=0,
        source="campaign",
        expires_at=T0 + timedelta(days=1),
        created_at=T0,
    )
    session.add(gift)
    await session.commit()
    frozen.tick(86400)
    assert await run_in_transaction(maker, dict(worker.JOBS)["expire_coupons"]) == 1
    assert (await fresh(session, Coupon, gift.id)).status == "expired"
    assert (await fresh(session, Reward, reward["id"])).stock == 4
    assert (
        await session.scalar(
            select(func.count(LedgerEntry.id)).where(LedgerEntry.member_id == member.id)
        )
        == 0
    )
