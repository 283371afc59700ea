"""A budget-limited rule, proven against the database (issue: a mutant dropping the budget
update passed every test): budget_used equals what the rule awarded, the receipt that reaches
the budget is cut, later receipts earn nothing from the rule, and parallel receipts on
PostgreSQL never award more than the budget."""

from sqlalchemy import func, select

from api.loyalty.program.models import Rule
from api.loyalty.till.models import Purchase, RuleAward
from tests import factories
from tests.conftest import make_settings, postgres_only
from tests.loyalty.conftest import receipt
from tests.loyalty.till.test_concurrency_purchases import Live, live  # noqa: F401

BUDGETED = {
    "code": "grocery-x2",
    "name": "Grocery x2, 100 points in all",
    "kind": "multiplier",
    "params": {"categories": ["grocery"], "multiplier_percent": 200},
    "budget": 100,
}


async def awarded(session, rule_id: int) -> int:
    stmt = select(func.coalesce(func.sum(RuleAward.points), 0)).where(RuleAward.rule_id == rule_id)
    return int((await session.execute(stmt)).scalar_one())


async def test_a_budget_is_spent_exactly_and_then_earns_nothing(client, session, settings, org):
    r = await client.put(
        "/v1/loyalty/rules", json={"rules": [BUDGETED]}, headers=org.headers["marketer"]
    )
    assert r.status_code == 200, r.text
    rule_id = r.json()[0]["id"]
    till = org.terminal(org.supermarket)
    earned = []
    for n in range(4):
        member = await factories.make_member(session, settings)
        await session.commit()
        body = receipt(f"B-{n}", ("grocery", 4_000), member_code=member.card_number)
        posted = await client.post("/v1/pos/purchases", json=body, headers=till)
        assert posted.status_code == 201, posted.text
        bonus = [a for a in posted.json()["points"]["breakdown"] if a["rule"] == "grocery-x2"]
        earned.append((posted.json()["points"]["earned"], bonus[0]["points"], bonus[0]["reason"]))
    # 40 + 40 from the rule, then the third receipt is cut to the 20 left, then nothing
    assert earned == [(80, 40, None), (80, 40, None), (60, 20, "budget"), (40, 0, "budget")]
    rule = await session.get(Rule, rule_id, populate_existing=True)
    assert rule.budget_used == 100 == await awarded(session, rule_id)
    listed = await client.get("/v1/loyalty/rules", headers=org.headers["marketer"])
    assert [x["budget_used"] for x in listed.json() if x["id"] == rule_id] == [100]


@postgres_only
async def test_parallel_receipts_never_exceed_the_budget(live: Live):  # noqa: F811
    r = await live.client.put(
        "/v1/loyalty/rules", json={"rules": [BUDGETED]}, headers=live.org.headers["marketer"]
    )
    assert r.status_code == 200, r.text
    rule_id = r.json()[0]["id"]
    members = []
    async with live.maker() as s:
        for _ in range(12):
            members.append(await factories.make_member(s, make_settings()))
        await s.commit()
    bodies = [
        receipt(f"BP-{i}", ("grocery", 3_000), member_code=m.card_number)
        for i, m in enumerate(members)
    ]
    responses = await live.post_all("/v1/pos/purchases", bodies, live.till)
    assert [x.status_code for x in responses] == [201] * 12, [x.text for x in responses]
    bonuses = [
        sum(a["points"] for a in x.json()["points"]["breakdown"] if a["rule"] == "grocery-x2")
        for x in responses
    ]
    assert sum(bonuses) == 100  # 12 × 30 wanted, 100 given
    assert await live.scalar(select(Rule.budget_used).where(Rule.id == rule_id)) == 100
    total = select(func.sum(RuleAward.points)).where(RuleAward.rule_id == rule_id)
    assert await live.scalar(total) == 100
    assert await live.scalar(select(func.count()).select_from(Purchase)) == 12
    assert await live.ledger_sound()
