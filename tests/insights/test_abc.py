"""ABC classes: a Pareto population with known shares, thresholds, monthly movement, scope."""

from datetime import UTC, datetime

from api.insights import audience
from tests.insights.conftest import add_members, buy, days_ago, fresh_headers, refresh


async def pareto(session, store, *, big_store=None):
    """10 members spending 700.00 and 90 spending 33.33: A is 10% of members, 70% of spend."""
    big = await add_members(session, big_store or store, 10)
    small = await add_members(session, store, 90)
    for m in big:
        await buy(session, big_store or store, days_ago(30), 70_000, member=m)
    for m in small:
        await buy(session, store, days_ago(30), 3_333, member=m)
    return big, small


async def test_pareto_classes_and_shares(client, session, org):
    big, _ = await pareto(session, org.supermarket)
    await refresh(session)
    r = await client.get("/v1/insights/abc", headers=org.headers["marketer"])
    assert r.status_code == 200, r.text
    body = r.json()
    classes = {c["class"]: c for c in body["classes"]}
    assert classes["A"]["members"] == 10
    assert classes["A"]["member_share"] == 0.1
    assert classes["A"]["spend"] == 700_000
    assert classes["A"]["spend_share"] == 0.7
    assert classes["B"]["members"] == 60 and classes["C"]["members"] == 30
    assert classes["B"]["spend_share"] == 0.2 and classes["C"]["spend_share"] == 0.1
    assert body["members"] == 100 and body["computed_at"]
    a_members = set((await session.execute(audience.members_in_abc_classes(["A"]))).scalars())
    assert a_members == {m.id for m in big}


async def test_returns_are_netted_and_members_without_spend_have_no_class(client, session, org):
    buyer, returner, idle = await add_members(session, org.supermarket, 3)
    await buy(session, org.supermarket, days_ago(10), 2_000, member=buyer)
    await buy(session, org.supermarket, days_ago(10), 5_000, member=returner, returned=4_500)
    await buy(session, org.supermarket, days_ago(400), 9_000, member=idle)  # outside 12 months
    await refresh(session)
    body = (await client.get("/v1/insights/abc", headers=org.headers["admin"])).json()
    assert body["spend"] == 2_500 and body["members"] == 2  # 5,000 bought − 4,500 returned
    classes = {c["class"]: c["members"] for c in body["classes"]}
    assert classes == {"A": 1, "B": 1, "C": 0}


async def test_thresholds_are_configurable(client, session, org):
    await pareto(session, org.supermarket)
    r = await client.put(
        "/v1/insights/settings",
        json={"abc_a_percent": 50, "abc_b_percent": 80},
        headers=org.headers["marketer"],
    )
    assert r.status_code == 200, r.text
    await refresh(session)
    body = (await client.get("/v1/insights/abc", headers=org.headers["marketer"])).json()
    classes = {c["class"]: c["members"] for c in body["classes"]}
    # 50% of 999,970 is crossed by the 8th big member, 80% by the 30th small one.
    assert classes == {"A": 8, "B": 2 + 30, "C": 60}
    bad = await client.put(
        "/v1/insights/settings",
        json={"abc_a_percent": 90, "abc_b_percent": 80},
        headers=org.headers["marketer"],
    )
    assert bad.status_code == 422 and bad.json()["error"] == "InvalidThresholds"


async def test_movement_since_the_previous_month(client, session, settings, org, frozen):
    p, q, r = await add_members(session, org.supermarket, 3)
    frozen.set(datetime(2026, 5, 20, 4, tzinfo=UTC))
    await buy(session, org.supermarket, days_ago(3), 700, member=p)
    await buy(session, org.supermarket, days_ago(3), 200, member=q)
    await buy(session, org.supermarket, days_ago(3), 100, member=r)
    await refresh(session)
    admin = fresh_headers(settings, org.staff["admin"])
    may = (await client.get("/v1/insights/abc", headers=admin)).json()
    assert may["movement_since"] is None
    frozen.set(datetime(2026, 6, 20, 4, tzinfo=UTC))
    await buy(session, org.supermarket, days_ago(3), 2_000, member=r)
    await refresh(session)
    admin = fresh_headers(settings, org.staff["admin"])
    june = (await client.get("/v1/insights/abc", headers=admin)).json()
    assert june["movement_since"] == "2026-05-01"
    moved = {k: v for k, v in june["movement"].items() if v}
    assert moved == {"A->B": 1, "B->C": 1, "C->A": 1}


async def test_scoped_view_restricts_programme_classes(client, session, org):
    """A store manager sees the programme-wide classes of their own members only."""
    await pareto(session, org.supermarket, big_store=org.fuel_b)
    await refresh(session)
    mine = (await client.get("/v1/insights/abc", headers=org.headers["store_manager"])).json()
    classes = {c["class"]: c for c in mine["classes"]}
    assert mine["members"] == 90  # the big spenders live at fuel_b, outside the scope
    assert classes["A"]["members"] == 0
    assert classes["B"]["members"] == 60 and classes["C"]["members"] == 30
    assert classes["B"]["member_share"] == round(60 / 90, 4)
    south = (await client.get("/v1/insights/abc", headers=org.headers["region_manager"])).json()
    assert south["members"] == 90  # region north: supermarket + fuel_a
