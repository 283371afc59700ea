"""Receipts at the till: idempotency, duplicate receipts, quotes, offline batches, claims by the
member, validation, member days decided by occurred_at, and rule versions in the breakdown."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.program.models import RuleVersion
from api.loyalty.till.models import Purchase
from api.members import cards, identity
from api.members.models import UsedCardCode
from tests import factories
from tests.loyalty.conftest import receipt

T0 = datetime(2030, 1, 15, 4, 0, tzinfo=UTC)  # Tuesday, noon in Shanghai
PURCHASES = "/v1/pos/purchases"


async def count(session: AsyncSession, model: Any, *where: Any) -> int:
    stmt = select(func.count()).select_from(model).where(*where)
    return int((await session.execute(stmt)).scalar_one())


async def earn_entries(session: AsyncSession, member_id: int) -> list[LedgerEntry]:
    stmt = (
        select(LedgerEntry)
        .where(LedgerEntry.member_id == member_id, LedgerEntry.kind == "earn")
        .order_by(LedgerEntry.id)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


# ------------------------------------------------------------------ idempotency and duplicates


async def test_idempotency_key_replays_the_first_response(client, session, org, member):
    till = {**org.terminal(org.supermarket), "Idempotency-Key": "k-1"}
    body = receipt("IDEM-1", ("grocery", 4_321), member_code=member.card_number)

    first = await client.post(PURCHASES, json=body, headers=till)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await client.post(PURCHASES, json=body, headers=till)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()

    other = receipt("IDEM-2", ("grocery", 999), member_code=member.card_number)
    reused = await client.post(PURCHASES, json=other, headers=till)
    assert reused.status_code == 422
    assert reused.json()["error"] == "IdempotencyKeyReused"

    assert await count(session, Purchase) == 1
    assert len(await earn_entries(session, member.id)) == 1
    assert (await session.get(Account, member.id)).available == 43


async def test_a_receipt_twice_at_one_store_is_a_duplicate_but_fine_at_another(
    client, session, org, member
):
    body = receipt("DUP-1", ("grocery", 2_000), member_code=member.card_number)
    first = await client.post(PURCHASES, json=body, headers=org.terminal(org.supermarket))
    assert first.status_code == 201
    again = await client.post(PURCHASES, json=body, headers=org.terminal(org.supermarket))
    assert again.status_code == 409
    assert again.json()["error"] == "DuplicateReceipt"
    assert again.json()["purchase_id"] == first.json()["purchase_id"]

    elsewhere = await client.post(PURCHASES, json=body, headers=org.terminal(org.fuel_a))
    assert elsewhere.status_code == 201, elsewhere.text
    assert elsewhere.json()["purchase_id"] != first.json()["purchase_id"]
    assert elsewhere.json()["balance"]["available"] == 40
    assert await count(session, Purchase, Purchase.receipt_no == "DUP-1") == 2
    assert len(await earn_entries(session, member.id)) == 2


# ------------------------------------------------------------------ quote


async def test_quote_is_exactly_what_the_post_earns_and_stores_nothing(
    client, session, settings, org, member
):
    rules = [
        {"code": "fresh", "name": "Fresh x3", "kind": "multiplier",
         "params": {"categories": ["produce"], "multiplier_percent": 300}},
        {"code": "hello", "name": "Welcome", "kind": "welcome", "params": {"points": 50}},
        {"code": "big", "name": "Big basket", "kind": "basket",
         "params": {"min_total": 5_000, "points": 7}},
    ]  # fmt: skip
    assert (
        await client.put(
            "/v1/loyalty/rules", json={"rules": rules}, headers=org.headers["marketer"]
        )
    ).status_code == 200
    code = identity.card_view(settings, member).code
    body = receipt("Q-1", ("produce", 1_250), ("grocery", 4_399), member_code=code)
    till = org.terminal(org.supermarket)

    quoted = await client.post(f"{PURCHASES}/quote", json=body, headers=till)
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["member_id"] == member.id
    assert quoted.json()["points"]["earned"] == 138  # floor(37.5 + 43.99) + 50 + 7
    assert await count(session, Purchase) == 0
    assert await count(session, LedgerEntry) == 0
    assert await count(session, UsedCardCode) == 0
    assert await session.get(Account, member.id) is None

    posted = await client.post(PURCHASES, json=body, headers=till)  # the same rotating code
    assert posted.status_code == 201, posted.text
    assert posted.json()["points"] == quoted.json()["points"]
    assert posted.json()["balance"]["available"] == quoted.json()["points"]["earned"]


async def test_quote_refuses_what_the_post_would_refuse(client, session, org, member):
    body = receipt("Q-2", ("grocery", 1_000), member_code=member.card_number, currency="EUR")
    quoted = await client.post(
        f"{PURCHASES}/quote", json=body, headers=org.terminal(org.supermarket)
    )
    assert quoted.status_code == 422 and quoted.json()["error"] == "CurrencyMismatch"
    assert await count(session, Purchase) == 0


# ------------------------------------------------------------------ batch


async def test_batch_receipts_are_independent_and_a_reupload_gives_duplicates(
    client, session, org, member
):
    with clock.frozen(T0):
        good = receipt("B-1", ("grocery", 3_000), member_code=member.card_number)
        unbalanced = receipt("B-2", ("grocery", 1_000))
        unbalanced["total"] = 1_001
        anonymous = receipt("B-3", ("grocery", 700))
        future = receipt("B-4", ("grocery", 900), occurred_at=T0 + timedelta(days=1))
        also_good = receipt("B-5", ("dairy", 2_000), member_code=member.card_number)
        batch = {"purchases": [good, unbalanced, anonymous, future, also_good]}
        till = org.terminal(org.supermarket)

        first = await client.post(f"{PURCHASES}/batch", json=batch, headers=till)
        assert first.status_code == 200, first.text
        results = first.json()["results"]
        assert [(r["receipt_no"], r["status"]) for r in results] == [
            ("B-1", "created"),
            ("B-2", "rejected"),
            ("B-3", "created"),
            ("B-4", "rejected"),
            ("B-5", "created"),
        ]
        assert (results[1]["error"], results[3]["error"]) == ("ValidationError", "InvalidPurchase")
        assert [r["points"] for r in results if r["status"] == "created"] == [30, 0, 20]

        second = await client.post(f"{PURCHASES}/batch", json=batch, headers=till)
    again = second.json()["results"]
    assert [r["status"] for r in again] == [
        "duplicate",
        "rejected",
        "duplicate",
        "rejected",
        "duplicate",
    ]
    assert [r["purchase_id"] for r in again if r["status"] == "duplicate"] == [
        r["purchase_id"] for r in results if r["status"] == "created"
    ]
    assert await count(session, Purchase) == 3
    assert (await session.get(Account, member.id)).available == 50


# ------------------------------------------------------------------ claims


async def post_anonymous(client, org, receipt_no: str, amount: int = 8_800) -> dict[str, Any]:
    body = receipt(receipt_no, ("grocery", amount))
    posted = await client.post(PURCHASES, json=body, headers=org.terminal(org.supermarket))
    assert posted.status_code == 201, posted.text
    assert posted.json()["member_id"] is None and posted.json()["points"]["earned"] == 0
    return posted.json()


async def test_a_receipt_without_a_member_is_claimed_once(client, session, settings, org, member):
    posted = await post_anonymous(client, org, "C-1")
    me = factories.member_headers(settings, member)
    claim = {
        "store_code": org.supermarket.code,
        "receipt_no": "C-1",
        "total": 8_800,
        "claim_code": posted["claim_code"],
    }

    wrong_total = await client.post(
        "/v1/me/receipts/claim", json={**claim, "total": 8_801}, headers=me
    )
    assert wrong_total.status_code == 404 and wrong_total.json()["error"] == "ReceiptNotClaimable"
    wrong_store = await client.post(
        "/v1/me/receipts/claim", json={**claim, "store_code": "NOPE"}, headers=me
    )
    assert wrong_store.status_code == 404

    claimed = await client.post("/v1/me/receipts/claim", json=claim, headers=me)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["purchase_id"] == posted["purchase_id"]
    assert claimed.json()["points"]["earned"] == 88
    assert claimed.json()["balance"] == {"available": 88, "pending": 0}

    twice = await client.post("/v1/me/receipts/claim", json=claim, headers=me)
    assert twice.status_code == 404 and twice.json()["error"] == "ReceiptNotClaimable"
    someone_else = await factories.make_member(session, settings)
    await session.commit()
    theirs = await client.post(
        "/v1/me/receipts/claim",
        json=claim,
        headers=factories.member_headers(settings, someone_else),
    )
    assert theirs.status_code == 404
    assert theirs.json()["detail"] == wrong_total.json()["detail"]
    (lot,) = await earn_entries(session, member.id)
    assert lot.points == 88 and lot.source_id == posted["purchase_id"]
    assert await session.get(Account, someone_else.id) is None


async def test_claims_close_after_the_claim_window(client, session, settings, org, member):
    with clock.frozen(T0) as frozen:
        first = await post_anonymous(client, org, "C-2", 1_000)
        second = await post_anonymous(client, org, "C-3", 2_000)
        frozen.set(T0 + timedelta(days=30) - timedelta(minutes=1))
        me = factories.member_headers(settings, member)
        claim = {
            "store_code": org.supermarket.code,
            "receipt_no": "C-2",
            "total": 1_000,
            "claim_code": first["claim_code"],
        }
        inside = await client.post("/v1/me/receipts/claim", json=claim, headers=me)
        assert inside.status_code == 200, inside.text

        frozen.set(T0 + timedelta(days=30, minutes=1))
        me = factories.member_headers(settings, member)
        claim = {
            "store_code": org.supermarket.code,
            "receipt_no": "C-3",
            "total": 2_000,
            "claim_code": second["claim_code"],
        }
        late = await client.post("/v1/me/receipts/claim", json=claim, headers=me)
    assert late.status_code == 404 and late.json()["error"] == "ReceiptNotClaimable"
    assert (await session.get(Account, member.id)).available == 10


# ------------------------------------------------------------------ validation


def _invalid(change: str) -> dict[str, Any]:
    body = receipt("V-1", ("grocery", 1_000), ("dairy", 500))
    match change:
        case "negative amount":
            body["lines"][1]["amount"] = -500
            body["total"] = 500
        case "lines do not add up":
            body["total"] = 1_499
        case "unknown currency":
            body["currency"] = "XXX"
        case "malformed currency":
            body["currency"] = "cny"
        case "another currency":
            body["currency"] = "USD"
        case "future occurred_at":
            body["occurred_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        case "occurred_at without offset":
            body["occurred_at"] = "2026-01-01T10:00:00"
        case "ancient occurred_at":
            body["occurred_at"] = (datetime.now(UTC) - timedelta(days=365)).isoformat()
        case "absurd total":
            body["lines"][0]["amount"] = 50_000_000_000
            body["total"] = 50_000_000_500
        case "duplicate line_no":
            body["lines"][1]["line_no"] = 1
        case "no lines":
            body["lines"], body["total"] = [], 0
        case "zero quantity":
            body["lines"][0]["quantity"] = 0
    return body


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("negative amount", "ValidationError"),
        ("lines do not add up", "ValidationError"),
        ("unknown currency", "CurrencyMismatch"),
        ("malformed currency", "ValidationError"),
        ("another currency", "CurrencyMismatch"),
        ("future occurred_at", "InvalidPurchase"),
        ("occurred_at without offset", "ValidationError"),
        ("ancient occurred_at", "InvalidPurchase"),
        ("absurd total", "InvalidPurchase"),
        ("duplicate line_no", "ValidationError"),
        ("no lines", "ValidationError"),
        ("zero quantity", "ValidationError"),
    ],
)
async def test_invalid_receipts_are_refused_and_nothing_is_stored(
    client, session, org, member, change, error
):
    body = {**_invalid(change), "member_code": member.card_number}
    got = await client.post(PURCHASES, json=body, headers=org.terminal(org.supermarket))
    assert got.status_code == 422, got.text
    assert got.json()["error"] == error
    assert await count(session, Purchase) == 0
    assert await count(session, LedgerEntry) == 0
    assert await session.get(Account, member.id) is None


# ------------------------------------------------------------------ member day and rule versions


async def test_member_day_follows_occurred_at_in_store_time_not_the_upload_day(client, org, member):
    wednesdays = {
        "code": "member-wed",
        "name": "Member Wednesday",
        "kind": "member_day",
        "params": {"rrule": "FREQ=WEEKLY;BYDAY=WE", "multiplier_percent": 200},
    }
    put = await client.put(
        "/v1/loyalty/rules", json={"rules": [wednesdays]}, headers=org.headers["marketer"]
    )
    assert put.status_code == 200, put.text
    wednesday_evening = datetime(2030, 1, 16, 12, 0, tzinfo=UTC)  # 20:00 Wednesday in Shanghai
    thursday_small_hours = datetime(2030, 1, 16, 17, 0, tzinfo=UTC)  # Wednesday in UTC only
    till = org.terminal(org.supermarket)
    with clock.frozen(datetime(2030, 1, 17, 2, 0, tzinfo=UTC)):  # uploaded Thursday 10:00
        batch = {
            "purchases": [
                receipt("MD-1", ("grocery", 5_000), member_code=member.card_number,
                        occurred_at=wednesday_evening),
                receipt("MD-2", ("grocery", 5_000), member_code=member.card_number,
                        occurred_at=thursday_small_hours),
            ]
        }  # fmt: skip
        uploaded = await client.post(f"{PURCHASES}/batch", json=batch, headers=till)
        today = await client.post(
            PURCHASES,
            json=receipt("MD-3", ("grocery", 5_000), member_code=member.card_number),
            headers=till,
        )
    assert [r["points"] for r in uploaded.json()["results"]] == [100, 50]
    assert today.json()["points"]["earned"] == 50


async def test_breakdown_keeps_the_rule_versions_it_was_computed_with(client, session, org, member):
    def fresh(percent: int) -> dict[str, Any]:
        return {
            "rules": [
                {
                    "code": "fresh",
                    "name": "Fresh produce",
                    "kind": "multiplier",
                    "params": {"categories": ["produce"], "multiplier_percent": percent},
                }
            ]
        }

    marketer, till = org.headers["marketer"], org.terminal(org.supermarket)
    v1 = await client.put("/v1/loyalty/rules", json=fresh(300), headers=marketer)
    assert v1.json()[0]["version"] == 1
    old = await client.post(
        PURCHASES,
        json=receipt("RV-1", ("produce", 1_000), member_code=member.card_number),
        headers=till,
    )
    assert old.json()["points"]["earned"] == 30
    assert {"line_no": 1, "rule": "fresh", "points": 20, "rule_version": 1}.items() <= next(
        a for a in old.json()["points"]["breakdown"] if a["rule"] == "fresh"
    ).items()

    same = await client.put("/v1/loyalty/rules", json=fresh(300), headers=marketer)
    assert same.json()[0]["version"] == 1  # nothing changed, no new version
    v2 = await client.put("/v1/loyalty/rules", json=fresh(200), headers=marketer)
    assert v2.json()[0]["version"] == 2
    new = await client.post(
        PURCHASES,
        json=receipt("RV-2", ("produce", 1_000), member_code=member.card_number),
        headers=till,
    )
    assert new.json()["points"]["earned"] == 20

    first, second = await earn_entries(session, member.id)
    assert (first.points, first.detail["rules"]["fresh"]) == (30, 1)
    assert (second.points, second.detail["rules"]["fresh"]) == (20, 2)
    assert [a["rule_version"] for a in first.detail["breakdown"] if a["rule"] == "fresh"] == [1]
    stored = await session.get(Purchase, old.json()["purchase_id"])
    assert [a["rule_version"] for a in stored.breakdown if a["rule"] == "fresh"] == [1]
    versions = (
        await session.execute(
            select(RuleVersion.version, RuleVersion.definition).order_by(RuleVersion.version)
        )
    ).all()
    assert [(v, d["params"]["multiplier_percent"]) for v, d in versions] == [(1, 300), (2, 200)]


# ------------------------------------------------------------- found by review of the fast path


def _rotating(settings, member) -> str:  # type: ignore[no-untyped-def]
    code = cards.current_code(
        member.totp_secret, clock.now(), period=settings.totp_period, digits=settings.totp_digits
    )
    return cards.payload(member.card_number, code)


async def test_a_capped_rule_rounding_to_zero_still_respects_its_cap(client, org, member):
    """A capped rule's fraction counts in the receipt's total (rounded once per receipt), so
    its usage must be read even when its own award rounds to 0 points."""
    rule = {
        "code": "fresh-x1.5",
        "name": "Fresh x1.5, 1 point a day",
        "kind": "multiplier",
        "params": {"categories": ["fresh"], "multiplier_percent": 150},
        "caps": {"day": 1},
    }
    created = await client.post("/v1/loyalty/rules", json=rule, headers=org.headers["marketer"])
    assert created.status_code == 201, created.text
    till = org.terminal(org.supermarket)
    used_up = receipt("CAP-1", ("fresh", 1_000), member_id=member.id)
    assert (await client.post(PURCHASES, json=used_up, headers=till)).status_code == 201
    # 0.70 + 1.00 base; the multiplier's 0.35 is over today's cap → 1 point, not 2
    small = receipt("CAP-2", ("fresh", 70), ("dry", 100), member_id=member.id)
    posted = await client.post(PURCHASES, json=small, headers=till)
    assert posted.status_code == 201, posted.text
    assert posted.json()["points"]["earned"] == 1
    reasons = {a["rule"]: a["reason"] for a in posted.json()["points"]["breakdown"]}
    assert reasons["fresh-x1.5"] == "cap_day"


async def test_a_claimed_receipt_counts_towards_the_tier_at_once(client, org, member, settings):
    ladder = {
        "tiers": [
            {"code": "base", "name": "Base", "min_spend": 0, "multiplier_percent": 100},
            {"code": "silver", "name": "Silver", "min_spend": 5_000, "multiplier_percent": 100},
        ]
    }
    assert (
        await client.put("/v1/loyalty/tiers", json=ladder, headers=org.headers["marketer"])
    ).is_success
    till = org.terminal(org.supermarket)
    posted = await client.post(PURCHASES, json=receipt("CL-9", ("grocery", 8_800)), headers=till)
    assert posted.status_code == 201, posted.text
    claim = {
        "store_code": org.supermarket.code,
        "receipt_no": "CL-9",
        "total": 8_800,
        "claim_code": posted.json()["claim_code"],
    }
    claimed = await client.post(
        "/v1/me/receipts/claim", json=claim, headers=factories.member_headers(settings, member)
    )
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["tier"] == "silver"


async def test_retried_duplicates_with_a_spent_code_do_not_lock_the_till(
    client, session, settings, org, member
):
    till = org.terminal(org.supermarket)
    body = receipt("RT-1", ("grocery", 1_000), member_code=_rotating(settings, member))
    assert (await client.post(PURCHASES, json=body, headers=till)).status_code == 201
    first_id = None
    for _ in range(settings.identify_failures_per_minute + 2):
        again = await client.post(PURCHASES, json=body, headers=till)
        assert again.status_code == 409, again.text
        assert again.json()["error"] == "DuplicateReceipt"
        first_id = first_id or again.json()["purchase_id"]
        assert again.json()["purchase_id"] == first_id
    other = await factories.make_member(session, settings, store=org.supermarket)
    fresh = receipt("RT-2", ("grocery", 1_000), member_code=_rotating(settings, other))
    served = await client.post(PURCHASES, json=fresh, headers=till)
    assert served.status_code == 201, served.text
    # a forged code on a stored receipt is still a failed guess
    forged = receipt("RT-1", ("grocery", 1_000), member_code=f"LY1.{member.card_number}.00000000")
    for _ in range(settings.identify_failures_per_minute):
        assert (await client.post(PURCHASES, json=forged, headers=till)).status_code == 409
    locked = receipt("RT-3", ("grocery", 1_000), member_code=_rotating(settings, other))
    assert (await client.post(PURCHASES, json=locked, headers=till)).status_code == 429
