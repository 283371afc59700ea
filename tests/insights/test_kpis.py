"""KPIs: active members, member share of sales, repeat rate, baskets, member-day uplift and
points issued/redeemed per month."""

from datetime import UTC, date, datetime, timedelta

import pytest

from api.insights import member_day
from api.loyalty.program import rules
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import RuleCreate
from tests.insights.conftest import add_members, buy, days_ago, ledger_row, refresh

KPIS = "/v1/insights/kpis"


async def test_member_share_baskets_repeat_rate_and_activity(client, session, org):
    regular, once, old = await add_members(session, org.supermarket, 3)
    await add_members(session, org.supermarket, 1)  # enrolled, never bought
    store = org.supermarket
    for ago in (5, 20, 50):
        await buy(session, store, days_ago(ago), 10_000, member=regular)
    await buy(session, store, days_ago(60), 12_000, member=once, returned=2_000)
    await buy(session, store, days_ago(200), 10_000, member=old)
    for ago in (3, 4):
        await buy(session, store, days_ago(ago), 5_000)  # anonymous
    await buy(session, store, days_ago(500), 99_000)  # older than 12 months
    await buy(session, org.fuel_b, days_ago(3), 7_000)  # another region
    await refresh(session)

    r = await client.get(KPIS, headers=org.headers["store_manager"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["members"], body["active_30d"], body["active_90d"]) == (4, 1, 2)
    assert body["sales"] == 60_000 and body["member_sales"] == 50_000
    assert body["member_share"] == round(50_000 / 60_000, 4)
    assert body["average_basket_member"] == 10_000
    assert body["average_basket_non_member"] == 5_000
    assert body["repeat_rate"] == round(1 / 3, 4)  # 3 buyers in 12 months, 1 bought again

    everyone = (await client.get(KPIS, headers=org.headers["admin"])).json()
    assert everyone["sales"] == 67_000 and everyone["average_basket_non_member"] == 5_666


async def test_points_issued_and_redeemed_per_month(client, session, org):
    member = (await add_members(session, org.supermarket))[0]
    may = datetime(2026, 5, 10, 4, tzinfo=UTC)
    await ledger_row(session, member, "earn", 100, created_at=may)
    await ledger_row(session, member, "adjust", 30, created_at=may)
    await ledger_row(session, member, "adjust", -5, created_at=may)  # a correction, not redeemed
    await ledger_row(session, member, "spend", -40, created_at=may)
    await ledger_row(session, member, "reserve", -20, created_at=may)
    await ledger_row(session, member, "release", 20, created_at=may + timedelta(minutes=5))
    await ledger_row(session, member, "earn", 7, created_at=days_ago(1))
    await refresh(session)
    body = (await client.get(KPIS, headers=org.headers["marketer"])).json()
    points = {p["month"]: (p["issued"], p["redeemed"]) for p in body["points"]}
    assert len(points) == 12
    assert points["2026-05-01"] == (130, 40)
    assert points["2026-06-01"] == (7, 0)
    assert points["2026-04-01"] == (0, 0)


async def test_member_day_uplift(client, session, org):
    """Member day = the first Wednesday of each month. Over the last 26 weeks the supermarket
    sells 2,000 on each member day and 1,000 on every other Wednesday: uplift +100%."""
    await program_service.create_rule(
        session,
        data=RuleCreate(
            code="md-first-wed",
            name="Member day",
            kind="member_day",
            params={"rrule": "FREQ=MONTHLY;BYDAY=1WE", "multiplier_percent": 200},
        ),
    )
    member = (await add_members(session, org.supermarket))[0]
    day, member_days, other_days = date(2026, 6, 14), 0, 0
    for _ in range(26 * 7):
        if day.weekday() == 2:
            noon = datetime(day.year, day.month, day.day, 4, tzinfo=UTC)
            first_wednesday = day.day <= 7
            amount = 2_000 if first_wednesday else 1_000
            await buy(session, org.supermarket, noon, amount, member=member)
            await buy(session, org.supermarket, noon, amount // 2)
            member_days += first_wednesday
            other_days += not first_wednesday
        day -= timedelta(days=1)
    assert (member_days, other_days) == (6, 20)
    counts = await refresh(session)
    assert counts["member_days"] == 6 * 3  # every store has the member day

    mine = (await client.get(KPIS, headers=org.headers["store_manager"])).json()["member_day"]
    assert (mine["member_days"], mine["base_days"]) == (6, 20)
    assert mine["sales_per_member_day"] == 3_000 and mine["sales_per_base_day"] == 1_500
    assert mine["uplift"] == 1.0 and mine["member_sales_uplift"] == 1.0
    everyone = (await client.get(KPIS, headers=org.headers["admin"])).json()["member_day"]
    assert (everyone["member_days"], everyone["base_days"], everyone["uplift"]) == (18, 60, 1.0)


async def test_no_member_day_rule_means_no_uplift(client, session, org):
    await refresh(session)
    body = (await client.get(KPIS, headers=org.headers["admin"])).json()
    assert body["member_day"]["member_days"] == 0 and body["member_day"]["uplift"] is None
    assert body["member_share"] is None and body["average_basket_member"] is None


@pytest.mark.parametrize(
    ("rrule", "dtstart"),
    [
        ("FREQ=MONTHLY;BYDAY=1WE", None),
        ("FREQ=WEEKLY;BYDAY=WE", None),
        ("FREQ=MONTHLY;BYMONTHDAY=18", None),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=SA", "2026-01-03"),
        ("FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=8", None),
    ],
)
def test_occurrence_days_agree_with_the_earning_rules(rrule, dtstart):
    params = {"rrule": rrule} | ({"dtstart": dtstart} if dtstart else {})
    rule = rules.Rule(id=1, version=1, code="md", kind=rules.RuleKind.member_day, params=params)
    first, last = date(2025, 12, 15), date(2026, 6, 14)
    found = member_day.occurrence_days(rule, first, last)
    start = date.fromisoformat(dtstart) if dtstart else None
    expected = {
        first + timedelta(days=i)
        for i in range((last - first).days + 1)
        if rules.occurs_on(rrule, first + timedelta(days=i), start)
    }
    assert found == expected and found
