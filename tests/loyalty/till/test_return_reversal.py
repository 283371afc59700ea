"""Returns reverse exactly what the returned lines earned: earned(receipt) − earned(lines kept),
the kept lines priced by the pure rules with the receipt's original context (rule versions,
tier, first purchase, caps and budgets as they were), never more than was earned over all
returns; a zero-amount line is returned by quantity. Issue: returning only an excluded tobacco
line clawed back 6 points of a TV's basket bonus.

The property test posts random receipts and random sequences of partial returns through the
services and checks, after every return, the total reversed against a quote of the kept lines
(the same rules and context, priced afresh): monotone, never above what was earned, exactly
what was earned once everything is back, and the ledger check passes."""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.core import clock
from api.core.db import make_engine
from api.loyalty.ledger.check import check_ledger
from api.loyalty.ledger.models import Account
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import RuleCreate
from api.loyalty.till import purchases, returns
from api.loyalty.till.models import Purchase, PurchaseLine
from api.loyalty.till.schemas import PurchaseIn, ReturnIn
from tests import factories
from tests.conftest import DATABASE_URL, make_settings
from tests.loyalty.conftest import receipt

T0 = datetime(2030, 1, 15, 4, 0, tzinfo=UTC)  # a Tuesday
RULES = [
    {"code": "no-tobacco", "name": "No tobacco", "kind": "exclude",
     "params": {"categories": ["tobacco"]}},
    {"code": "dairy-x2", "name": "Dairy x2", "kind": "multiplier",
     "params": {"categories": ["dairy"], "multiplier_percent": 200}},
    {"code": "basket", "name": "Basket", "kind": "basket",
     "params": {"min_total": 5_000, "points": 6}},
    {"code": "big-basket", "name": "Big basket", "kind": "basket",
     "params": {"min_total": 15_000, "points": 20}},
    {"code": "tuesday", "name": "Tuesday x1.5", "kind": "member_day",
     "params": {"rrule": "FREQ=WEEKLY;BYDAY=TU", "multiplier_percent": 150, "bonus_points": 3}},
]  # fmt: skip


async def post(client, org, body: dict[str, Any]) -> dict[str, Any]:
    got = await client.post("/v1/pos/purchases", json=body, headers=org.terminal(org.supermarket))
    assert got.status_code == 201, got.text
    return got.json()


async def give_back(client, org, purchase_id: int, return_no: str, *lines: dict[str, Any]):  # type: ignore[no-untyped-def]
    got = await client.post(
        f"/v1/pos/purchases/{purchase_id}/returns",
        json={"return_no": return_no, "lines": list(lines)},
        headers=org.terminal(org.supermarket),
    )
    assert got.status_code == 200, got.text
    return got.json()


async def set_rules(client, org, *rules: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    got = await client.put(
        "/v1/loyalty/rules", json={"rules": list(rules)}, headers=org.headers["marketer"]
    )
    assert got.status_code == 200, got.text


async def test_returning_only_an_excluded_line_reverses_nothing(client, session, org, member):
    await set_rules(client, org, RULES[0], RULES[2])
    body = receipt("TV-1", ("tv", 6_000), ("tobacco", 12_000), member_code=member.card_number)
    posted = await post(client, org, body)
    assert posted["points"]["earned"] == 66  # 60 + the basket bonus on the TV alone
    tobacco = await give_back(client, org, posted["purchase_id"], "R-1", {"line_no": 2})
    assert tobacco["points_reversed"] == 0  # proportions took 6 × 12,000 / 18,000 = 4
    assert tobacco["balance"]["available"] == 66
    tv = await give_back(client, org, posted["purchase_id"], "R-2", {"line_no": 1})
    assert tv["points_reversed"] == 66
    assert await check_ledger(session) == []


async def test_a_return_keeps_the_receipts_context_and_caps_as_they_were(
    client, session, org, member
):
    capped = {**RULES[1], "caps": {"day": 20}}
    welcome = {"code": "hello", "name": "Welcome", "kind": "welcome", "params": {"points": 50}}
    await set_rules(client, org, capped, welcome)
    with clock.frozen(T0):
        first = await post(
            client,
            org,
            receipt("CTX-1", ("dairy", 3_000), ("grocery", 1_000), member_code=member.card_number),
        )
        assert first["points"]["earned"] == 30 + 20 + 10 + 50  # the dairy bonus is capped
        second = await post(
            client, org, receipt("CTX-2", ("dairy", 2_000), member_code=member.card_number)
        )
        assert second["points"]["earned"] == 20  # base only: the cap was used up
        # Returning the first receipt's grocery: it keeps its welcome bonus and dairy bonus
        # (is_first_purchase and the cap usage as they were), so 10 come back, not more.
        grocery = await give_back(client, org, first["purchase_id"], "R-1", {"line_no": 2})
        assert grocery["points_reversed"] == 10
        # The second receipt's dairy earned 20 under the cap; returning it reverses 20.
        dairy = await give_back(client, org, second["purchase_id"], "R-2", {"line_no": 1})
        assert dairy["points_reversed"] == 20
    # A rule change after the receipt changes nothing about its returns.
    await set_rules(
        client, org, {**capped, "params": {**capped["params"], "multiplier_percent": 500}}
    )
    half = await give_back(
        client, org, first["purchase_id"], "R-3", {"line_no": 1, "amount": 1_500}
    )
    # half the dairy kept: 15 base + 15 bonus (under the cap of 20): 110 − 80 − 10 already
    assert half["points_reversed"] == 20
    rest = await give_back(client, org, first["purchase_id"], "R-4", {"line_no": 1})
    assert rest["points_reversed"] == 110 - 10 - 20  # everything: the welcome too
    assert await check_ledger(session) == []


async def test_a_zero_amount_line_is_returned_by_quantity(client, session, org, member):
    await set_rules(client, org, RULES[2])
    body = receipt("FREE-1", ("grocery", 6_000), ("gift", 0), member_code=member.card_number)
    body["lines"][1]["quantity"] = 2
    posted = await post(client, org, body)
    assert posted["points"]["earned"] == 66
    one = await give_back(client, org, posted["purchase_id"], "R-1", {"line_no": 2, "quantity": 1})
    assert one["points_reversed"] == 0 and one["amount"] == 0
    rest = await give_back(client, org, posted["purchase_id"], "R-2", {"line_no": 2})
    assert rest["points_reversed"] == 0
    line = (
        await session.execute(
            select(PurchaseLine)
            .where(PurchaseLine.purchase_id == posted["purchase_id"], PurchaseLine.line_no == 2)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    assert Decimal(line.returned_quantity) == 2  # the whole free line is back, by quantity
    again = await client.post(
        f"/v1/pos/purchases/{posted['purchase_id']}/returns",
        json={"return_no": "R-3", "lines": [{"line_no": 2}]},
        headers=org.terminal(org.supermarket),
    )
    assert again.status_code == 422 and again.json()["error"] == "ReturnExceedsPurchase"


async def test_a_claim_after_returns_uses_the_same_definition(
    client, session, settings, org, member
):
    await set_rules(client, org, RULES[0], RULES[2])
    body = receipt("CL-TV", ("tv", 6_000), ("tobacco", 12_000))
    posted = await post(client, org, body)
    await give_back(client, org, posted["purchase_id"], "R-1", {"line_no": 2})
    claimed = await client.post(
        "/v1/me/receipts/claim",
        json={
            "store_code": org.supermarket.code,
            "receipt_no": "CL-TV",
            "total": 18_000,
            "claim_code": posted["claim_code"],
        },
        headers=factories.member_headers(settings, member),
    )
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["balance"]["available"] == 66  # the tobacco took nothing back
    tv = await give_back(client, org, posted["purchase_id"], "R-2", {"line_no": 1})
    assert tv["points_reversed"] == 66
    assert await check_ledger(session) == []


# ----------------------------------------------------------------------------- the property

LINE = st.tuples(
    st.sampled_from(["grocery", "dairy", "tobacco", "gift"]),
    st.integers(1, 4),  # quantity
    st.integers(1, 9_000),  # amount (a gift is free)
)
PICK = st.tuples(
    st.integers(0, 9),  # which line (modulo the receipt's lines)
    st.sampled_from(["whole", "quantity", "amount"]),
    st.integers(1, 99),  # how much of what is left, in percent
)
SCENARIO = st.tuples(
    st.lists(LINE, min_size=1, max_size=5),
    st.lists(st.lists(PICK, min_size=1, max_size=3), min_size=1, max_size=5),
    st.booleans(),  # return everything at the end
)


class Shop:
    """One example's world, in one outer transaction rolled back at the end."""

    def __init__(self, runner: asyncio.Runner, engine: AsyncEngine) -> None:
        self.runner, self.engine = runner, engine
        self.settings = make_settings()

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    async def open(self) -> None:
        self.connection = await self.engine.connect()
        self.transaction = await self.connection.begin()
        self.session = AsyncSession(
            bind=self.connection,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )
        store = await factories.make_store(self.session, await factories.make_region(self.session))
        self.till = purchases.Till(store=store, terminal_id=None, actor="test")
        self.member = await factories.make_member(self.session, self.settings)
        await program_service.replace_rules(
            self.session, wanted=[RuleCreate.model_validate(r) for r in RULES]
        )

    async def close(self) -> None:
        await self.session.close()
        await self.transaction.rollback()
        await self.connection.close()

    def body(self, receipt_no: str, lines: list[tuple[str, Decimal, int]]) -> PurchaseIn:
        return PurchaseIn.model_validate(
            {
                "receipt_no": receipt_no,
                "occurred_at": T0.isoformat(),
                "member_id": self.member.id,
                "currency": "CNY",
                "total": sum(amount for _, (_, _, amount) in lines),
                "lines": [
                    {
                        "line_no": i,
                        "sku": f"SKU-{category}",
                        "category": category,
                        "quantity": max(quantity, Decimal("0.001")),
                        "amount": amount,
                    }
                    for i, (category, quantity, amount) in lines
                ],
            }
        )

    async def earned_if_kept(self, purchase_id: int) -> int:
        """What the lines kept would earn on a receipt of their own, priced now by the same
        rules and context (no welcome, caps, budgets or tiers here, so the context is equal)."""
        rows = await self._lines(purchase_id)
        kept = []
        for ln in rows:
            quantity = Decimal(ln.quantity) - Decimal(ln.returned_quantity)
            amount = ln.amount - ln.returned_amount
            if (ln.amount > 0 and amount > 0) or (ln.amount == 0 and quantity > 0):
                kept.append((ln.line_no, (ln.category, quantity, amount)))
        if not kept:
            return 0
        body = self.body("KEPT", kept)
        quoted = await purchases.quote(
            self.session, settings=self.settings, till=self.till, body=body
        )
        return quoted.points.earned

    async def _lines(self, purchase_id: int) -> list[PurchaseLine]:
        stmt = (
            select(PurchaseLine)
            .where(PurchaseLine.purchase_id == purchase_id)
            .order_by(PurchaseLine.line_no)
            .execution_options(populate_existing=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def return_lines(self, purchase_id: int, no: str, picks: list[Any]) -> int | None:
        rows = {ln.line_no: ln for ln in await self._lines(purchase_id)}
        wanted: dict[int, dict[str, Any]] = {}
        for index, how, percent in picks:
            ln = rows[index % len(rows) + 1]
            quantity_left = Decimal(ln.quantity) - Decimal(ln.returned_quantity)
            amount_left = ln.amount - ln.returned_amount
            if (ln.amount > 0 and amount_left <= 0) or (ln.amount == 0 and quantity_left <= 0):
                continue
            if how == "amount" and ln.amount > 0:
                wanted[ln.line_no] = {
                    "line_no": ln.line_no,
                    "amount": max(1, amount_left * percent // 100),
                }
            elif how == "quantity" and quantity_left > 0:
                part = (quantity_left * percent / 100).quantize(Decimal("0.001"))
                wanted[ln.line_no] = {
                    "line_no": ln.line_no,
                    "quantity": max(part, Decimal("0.001")),
                }
            else:
                wanted[ln.line_no] = {"line_no": ln.line_no}
        if not wanted:
            return None
        async with self.session.begin_nested():
            done = await returns.process(
                self.session,
                purchase_id=purchase_id,
                body=ReturnIn.model_validate({"return_no": no, "lines": list(wanted.values())}),
                terminal_id=None,
                actor="test",
            )
        return done.points_reversed

    async def scenario(self, lines: list[Any], steps: list[Any], everything: bool) -> None:
        items = [
            (i, (category, Decimal(quantity), 0 if category == "gift" else amount))
            for i, (category, quantity, amount) in enumerate(lines, start=1)
        ]
        async with self.session.begin_nested():
            posted = await purchases.record(
                self.session, settings=self.settings, till=self.till, body=self.body("P", items)
            )
        earned, purchase_id = posted.points.earned, posted.purchase_id
        assert purchase_id is not None
        total = 0
        for n, picks in enumerate(steps):
            now = await self.return_lines(purchase_id, f"R-{n}", picks)
            if now is None:
                continue
            assert now >= 0
            total += now
            assert total <= earned
            assert total == earned - await self.earned_if_kept(purchase_id)
        if everything:
            rows = await self._lines(purchase_id)
            rest = [{"index": ln.line_no - 1} for ln in rows]
            now = await self.return_lines(
                purchase_id, "R-all", [(r["index"], "whole", 100) for r in rest]
            )
            total += now or 0
            assert total == earned, (total, earned)
        purchase = await self.session.get(Purchase, purchase_id, populate_existing=True)
        assert purchase is not None and purchase.points_reversed == total
        account = await self.session.get(Account, self.member.id, populate_existing=True)
        assert account is not None and account.available == earned - total
        assert await check_ledger(self.session) == []


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(SCENARIO)
def test_returns_reverse_earned_minus_kept_for_any_receipt_and_returns(
    engine: AsyncEngine, example: Any
) -> None:
    lines, steps, everything = example
    with asyncio.Runner() as runner, clock.frozen(T0 + timedelta(hours=1)):
        shop = Shop(runner, runner.run(_engine()))
        shop.run(shop.open())
        try:
            shop.run(shop.scenario(lines, steps, everything))
        finally:
            shop.run(shop.close())
            shop.run(shop.engine.dispose())


async def _engine() -> AsyncEngine:
    return make_engine(DATABASE_URL)
