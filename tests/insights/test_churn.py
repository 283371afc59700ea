"""Churn: the current churned count, a constructed month's churn rate, cohort retention."""

from datetime import UTC, datetime

from tests.insights.conftest import add_members, buy, refresh

CHURN = "/v1/insights/churn"


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 4, tzinfo=UTC)  # noon in Shanghai


async def test_monthly_churn_rate_of_a_constructed_month(client, session, org):
    churner, stayer, stayer2, gone_long_ago, _never = await add_members(session, org.supermarket, 5)
    store = org.supermarket
    await buy(session, store, at(2026, 2, 10), 1_000, member=churner)  # active 1 May, not 31 May
    await buy(session, store, at(2026, 2, 10), 1_000, member=stayer)
    await buy(session, store, at(2026, 5, 10), 1_000, member=stayer)
    await buy(session, store, at(2026, 4, 20), 1_000, member=stayer2)
    await buy(session, store, at(2025, 10, 1), 1_000, member=gone_long_ago)
    await refresh(session)
    r = await client.get(CHURN, headers=org.headers["marketer"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["churn_days"] == 90
    # today is 15 June: more than 90 days since 10 Feb and 1 Oct; never-buyers don't count
    assert body["churned_members"] == 2 and body["active_members"] == 2
    months = {m["month"]: m for m in body["monthly"]}
    assert len(body["monthly"]) == 12 and body["monthly"][-1]["month"] == "2026-06-01"
    may = months["2026-05-01"]
    assert (may["active_at_start"], may["churned"], may["churn_rate"]) == (3, 1, 0.3333)
    assert not may["partial"] and body["monthly"][-1]["partial"]
    # the 1 October buyer: active on 1 November and 1 December, gone 90 days later in December
    assert (months["2025-11-01"]["active_at_start"], months["2025-11-01"]["churned"]) == (1, 0)
    assert (months["2025-12-01"]["active_at_start"], months["2025-12-01"]["churned"]) == (1, 1)
    assert (months["2026-01-01"]["active_at_start"], months["2026-01-01"]["churn_rate"]) == (
        0,
        None,
    )


async def test_retention_by_enrolment_cohort(client, session, org):
    cohort = await add_members(session, org.supermarket, 4, created_at=at(2026, 1, 10))
    store = org.supermarket
    for m in cohort:
        await buy(session, store, at(2026, 1, 20), 500, member=m)  # month +0: all four
    for m in cohort[:2]:
        await buy(session, store, at(2026, 2, 5), 500, member=m)  # +1: two
        await buy(session, store, at(2026, 2, 25), 500, member=m)  # twice: still two members
    await buy(session, store, at(2026, 4, 1), 500, member=cohort[0])  # +3: one
    await add_members(session, org.supermarket, 2, created_at=at(2026, 3, 3))  # never buy
    await refresh(session)
    body = (await client.get(CHURN, headers=org.headers["admin"])).json()
    cohorts = {c["cohort"]: c for c in body["cohorts"]}
    jan = cohorts["2026-01-01"]
    assert jan["members"] == 4
    shares = [c["share"] for c in jan["retention"]]
    assert shares == [1.0, 0.5, 0.0, 0.25, 0.0, 0.0]  # Jan … Jun
    march = cohorts["2026-03-01"]
    assert march["members"] == 2 and [c["members"] for c in march["retention"]] == [0] * 4
    assert cohorts["2025-07-01"]["members"] == 0 and len(cohorts["2025-07-01"]["retention"]) == 12


async def test_churn_is_scoped(client, session, org):
    mine, theirs = (
        await add_members(session, org.supermarket),
        await add_members(session, org.fuel_b),
    )
    await buy(session, org.supermarket, at(2026, 1, 5), 1_000, member=mine[0])
    await buy(session, org.fuel_b, at(2026, 1, 5), 1_000, member=theirs[0])
    await refresh(session)
    manager = (await client.get(CHURN, headers=org.headers["store_manager"])).json()
    admin = (await client.get(CHURN, headers=org.headers["admin"])).json()
    assert manager["churned_members"] == 1 and admin["churned_members"] == 2
    feb = {m["month"]: m for m in manager["monthly"]}["2026-02-01"]
    assert feb["active_at_start"] == 1
