"""Returns: points reversed in proportion per returned line, never beyond what was bought,
idempotent by return_no, pending lots first, and a negative balance when the points were
already spent (no earn-refund-keep)."""

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.loyalty.ledger import accounts
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.check import check_ledger
from api.loyalty.ledger.exceptions import InsufficientPoints
from api.loyalty.ledger.models import Account, LedgerEntry, LotUse
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import ProgramUpdate
from api.loyalty.till.models import PurchaseLine, PurchaseReturn
from tests import factories
from tests.loyalty.conftest import receipt

SOURCE = ledger.Source("test", actor="test")


async def post(client, org, body: dict[str, Any]) -> dict[str, Any]:
    got = await client.post("/v1/pos/purchases", json=body, headers=org.terminal(org.supermarket))
    assert got.status_code == 201, got.text
    return got.json()


async def give_back(client, org, purchase_id: int, return_no: str, *lines: dict[str, Any]):  # type: ignore[no-untyped-def]
    return await client.post(
        f"/v1/pos/purchases/{purchase_id}/returns",
        json={"return_no": return_no, "lines": list(lines)},
        headers=org.terminal(org.supermarket),
    )


async def fresh(session: AsyncSession, member_id: int) -> Account:
    account = await session.get(Account, member_id, populate_existing=True)
    assert account is not None
    return account


async def set_rules(client, org, *rules: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    got = await client.put(
        "/v1/loyalty/rules", json={"rules": list(rules)}, headers=org.headers["marketer"]
    )
    assert got.status_code == 200, got.text


async def test_points_are_reversed_in_proportion_per_returned_line(client, session, org, member):
    await set_rules(
        client,
        org,
        {
            "code": "dairy2",
            "name": "Dairy x2",
            "kind": "multiplier",
            "params": {"categories": ["dairy"], "multiplier_percent": 200},
        },
    )
    body = receipt("RET-1", ("grocery", 1_000), ("dairy", 3_000), member_code=member.card_number)
    body["lines"][1]["quantity"] = 3
    posted = await post(client, org, body)
    assert posted["points"]["earned"] == 70  # 10 + 30 × 2

    one_dairy = await give_back(
        client, org, posted["purchase_id"], "RT-1", {"line_no": 2, "quantity": 1}
    )
    assert one_dairy.status_code == 200, one_dairy.text
    assert (one_dairy.json()["amount"], one_dairy.json()["points_reversed"]) == (1_000, 20)
    grocery = await give_back(client, org, posted["purchase_id"], "RT-2", {"line_no": 1})
    assert grocery.json()["points_reversed"] == 10
    assert grocery.json()["balance"] == {"available": 40, "pending": 0}

    lines = (
        await session.execute(
            select(PurchaseLine.line_no, PurchaseLine.points_reversed, PurchaseLine.returned_amount)
            .where(PurchaseLine.purchase_id == posted["purchase_id"])
            .order_by(PurchaseLine.line_no)
        )
    ).all()
    assert [tuple(r) for r in lines] == [(1, 10, 1_000), (2, 20, 1_000)]
    assert await check_ledger(session) == []


async def test_partial_returns_add_up_to_exactly_what_was_earned(client, session, org, member):
    await set_rules(
        client,
        org,
        {"code": "basket", "name": "Basket", "kind": "basket",
         "params": {"min_total": 500, "points": 5}},
    )  # fmt: skip
    body = receipt("RET-2", ("grocery", 1_000), member_code=member.card_number)
    body["lines"][0]["quantity"] = 3
    posted = await post(client, org, body)
    assert posted["points"]["earned"] == 15

    reversed_ = []
    for n in range(3):
        got = await give_back(
            client, org, posted["purchase_id"], f"RT-{n}", {"line_no": 1, "quantity": 1}
        )
        assert got.status_code == 200, got.text
        reversed_.append((got.json()["amount"], got.json()["points_reversed"]))
    # earned(receipt) − earned(kept): 15 − (6 + 5), then the basket is lost with 334 kept
    # (15 − 3), then everything: 15 in all
    assert reversed_ == [(333, 4), (333, 8), (334, 3)]
    assert sum(p for _, p in reversed_) == 15
    assert got.json()["balance"] == {"available": 0, "pending": 0}

    beyond = await give_back(client, org, posted["purchase_id"], "RT-9", {"line_no": 1})
    assert beyond.status_code == 422 and beyond.json()["error"] == "ReturnExceedsPurchase"
    assert await check_ledger(session) == []


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([{"line_no": 1, "amount": 2_001}], "ReturnExceedsPurchase"),
        ([{"line_no": 1, "quantity": 3}], "ReturnExceedsPurchase"),
        ([{"line_no": 1, "amount": 1_500}, {"line_no": 1, "amount": 600}], "InvalidPurchase"),
        ([{"line_no": 7}], "InvalidPurchase"),
        ([{"line_no": 1, "amount": 0}], "ValidationError"),
    ],
)
async def test_a_return_never_exceeds_what_was_bought(client, session, org, member, lines, error):
    body = receipt("RET-3", ("grocery", 2_000), member_code=member.card_number)
    body["lines"][0]["quantity"] = 2
    posted = await post(client, org, body)
    got = await give_back(client, org, posted["purchase_id"], "RT-X", *lines)
    assert got.status_code == 422, got.text
    assert got.json()["error"] == error
    assert (
        await session.execute(select(func.count()).select_from(PurchaseReturn))
    ).scalar_one() == 0
    assert (await fresh(session, member.id)).available == 20


async def test_a_fully_returned_line_cannot_come_back_again(client, session, org, member):
    posted = await post(
        client, org, receipt("RET-4", ("grocery", 2_000), member_code=member.card_number)
    )
    assert (
        await give_back(client, org, posted["purchase_id"], "A", {"line_no": 1})
    ).status_code == 200
    again = await give_back(client, org, posted["purchase_id"], "B", {"line_no": 1})
    assert again.status_code == 422 and again.json()["error"] == "ReturnExceedsPurchase"
    assert (
        await session.execute(select(func.count()).select_from(PurchaseReturn))
    ).scalar_one() == 1


async def test_return_no_is_idempotent(client, session, org, member):
    posted = await post(
        client,
        org,
        receipt("RET-5", ("grocery", 1_000), ("dairy", 1_000), member_code=member.card_number),
    )
    first = await give_back(client, org, posted["purchase_id"], "RT-5", {"line_no": 1})
    again = await give_back(client, org, posted["purchase_id"], "RT-5", {"line_no": 1})
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.json()["balance"]["available"] == 10

    reused = await give_back(client, org, posted["purchase_id"], "RT-5", {"line_no": 2})
    assert reused.status_code == 422 and reused.json()["error"] == "ReturnNoReused"
    reverses = select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "reverse")
    assert (await session.execute(reverses)).scalar_one() == 1


async def test_a_return_takes_pending_points_before_available_ones(client, session, org, member):
    bought = await post(
        client, org, receipt("RET-6", ("grocery", 10_000), member_code=member.card_number)
    )
    account = await ledger.lock_account(session, member.id)
    goodwill = await ledger.credit(session, account, kind="adjust", points=30, source=SOURCE)
    await ledger.debit(session, account, kind="spend", points=100, source=SOURCE)
    await program_service.update_program(session, data=ProgramUpdate(pending_days=7))
    await session.commit()
    later = await post(
        client, org, receipt("RET-7", ("grocery", 5_000), member_code=member.card_number)
    )
    assert later["balance"] == {"available": 30, "pending": 50}

    got = await give_back(client, org, bought["purchase_id"], "RT-6", {"line_no": 1})
    assert got.status_code == 200, got.text
    assert got.json()["points_reversed"] == 100
    # its own lot is spent; then the pending 50, then the available 30, and 20 owed
    assert got.json()["balance"] == {"available": -20, "pending": 0}
    reverse = (
        await session.execute(select(LedgerEntry).where(LedgerEntry.kind == "reverse"))
    ).scalar_one()
    uses = (
        await session.execute(
            select(LotUse.lot_id, LotUse.points)
            .where(LotUse.entry_id == reverse.id)
            .order_by(LotUse.id)
        )
    ).all()
    pending_lot = (
        await session.execute(
            select(LedgerEntry.id).where(LedgerEntry.source_id == later["purchase_id"])
        )
    ).scalar_one()
    assert [tuple(u) for u in uses] == [(pending_lot, 50), (goodwill.id, 30)]
    assert reverse.detail["unbacked"] == 20
    assert await check_ledger(session) == []


async def test_returning_spent_points_leaves_a_debt_that_blocks_spending(
    client, session, settings, org, member
):
    posted = await post(
        client, org, receipt("RET-8", ("grocery", 10_000), member_code=member.card_number)
    )
    account = await ledger.lock_account(session, member.id)
    await ledger.debit(session, account, kind="spend", points=80, source=SOURCE)
    await session.commit()

    got = await give_back(client, org, posted["purchase_id"], "RT-8", {"line_no": 1})
    assert got.json()["balance"] == {"available": -80, "pending": 0}
    account = await fresh(session, member.id)
    assert account.available < 0
    assert await check_ledger(session) == []

    with pytest.raises(InsufficientPoints):
        await ledger.debit(session, account, kind="spend", points=1, source=SOURCE)
    with pytest.raises(InsufficientPoints):
        await accounts.adjust(session, member_id=member.id, points=-1, reason="x", actor="t")
    refused = await client.post(
        f"/v1/members/{member.id}/adjustments",
        json={"points": -1, "reason": "take one back"},
        headers=org.headers["admin"],
    )
    assert refused.status_code == 409
    view = await client.get("/v1/me/points", headers=factories.member_headers(settings, member))
    assert (view.json()["available"], view.json()["value"]) == (-80, 0)

    repaid = await post(
        client, org, receipt("RET-9", ("grocery", 10_000), member_code=member.card_number)
    )
    assert repaid["balance"] == {"available": 20, "pending": 0}
    lot = (
        await session.execute(
            select(LedgerEntry)
            .where(LedgerEntry.source_id == repaid["purchase_id"], LedgerEntry.kind == "earn")
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    assert (lot.remaining, lot.detail["repaid_debt"]) == (20, 80)
    assert await check_ledger(session) == []


async def test_a_receipt_claimed_after_a_return_earns_only_on_what_was_kept(
    client, session, settings, org, member
):
    posted = await post(client, org, receipt("RET-10", ("grocery", 3_000), ("dairy", 2_000)))
    back = await give_back(client, org, posted["purchase_id"], "RT-10", {"line_no": 1})
    assert back.status_code == 200 and back.json()["points_reversed"] == 0

    claimed = await client.post(
        "/v1/me/receipts/claim",
        json={
            "store_code": org.supermarket.code,
            "receipt_no": "RET-10",
            "total": 5_000,
            "claim_code": posted["claim_code"],
        },
        headers=factories.member_headers(settings, member),
    )
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["balance"] == {"available": 20, "pending": 0}
    later = await give_back(client, org, posted["purchase_id"], "RT-11", {"line_no": 2})
    assert later.json()["points_reversed"] == 20
    assert later.json()["balance"]["available"] == 0
    assert await check_ledger(session) == []
