"""Purchase cycles and lapse alerts: the 7-day member 11 days out is lapsed, 9 days out is not,
2 purchases are never enough; alerts per episode, auto-assignment, follow-up, scope."""

from decimal import Decimal

from sqlalchemy import select

from api.insights import audience
from api.insights.models import LapseAlert, MemberStats, PortfolioEntry
from api.org.models import Role
from tests import factories
from tests.insights.conftest import add_members, buy, cycle, days_ago, refresh

LAPSED = "/v1/insights/lapsed"


async def stats_of(session, member):
    return await session.get(MemberStats, member.id, populate_existing=True)


async def test_lapsed_when_past_median_interval_plus_grace(session, org):
    out11, out9, two, irregular = await add_members(session, org.supermarket, 4)
    await cycle(session, org.supermarket, out11, every=7, last=11, n=5)
    await cycle(session, org.supermarket, out9, every=7, last=9, n=5)
    await cycle(session, org.supermarket, two, every=7, last=60, n=2)
    # gaps 2, 4, 30 and 6 days → median (4 + 6) / 2 = 5; 9 days out > 5 + 3
    for ago in (9, 11, 15, 45, 51):
        await buy(session, org.supermarket, days_ago(ago), 500, member=irregular)
    counts = await refresh(session)

    s11, s9, s2, s_irr = [await stats_of(session, m) for m in (out11, out9, two, irregular)]
    assert (s11.usual_interval_days, s11.days_since_last, s11.lapsed) == (Decimal("7"), 11, True)
    assert (s9.usual_interval_days, s9.days_since_last, s9.lapsed) == (Decimal("7"), 9, False)
    assert s2.usual_interval_days is None and s2.days_since_last == 60 and not s2.lapsed
    assert s_irr.usual_interval_days == Decimal("5") and s_irr.lapsed
    assert counts["lapsed"] == 2
    lapsed = set((await session.execute(audience.lapsed_members())).scalars())
    assert lapsed == {out11.id, irregular.id}
    assert audience.is_lapsed(11, Decimal(7), 3) and not audience.is_lapsed(9, Decimal(7), 3)
    assert not audience.is_lapsed(60, None, 3)
    assert "at least 3" in audience.is_lapsed_definition()


async def test_grace_days_are_configurable(client, session, org):
    member = (await add_members(session, org.supermarket))[0]
    await cycle(session, org.supermarket, member, every=7, last=9, n=4)
    r = await client.put(
        "/v1/insights/settings", json={"lapse_grace_days": 1}, headers=org.headers["admin"]
    )
    assert r.status_code == 200 and r.json()["lapse_grace_days"] == 1
    assert "plus 1 grace days" in r.json()["lapse_definition"]
    await refresh(session)
    assert (await stats_of(session, member)).lapsed


async def test_one_alert_per_episode_closed_when_the_member_buys_again(
    client, session, org, frozen
):
    member = (await add_members(session, org.supermarket))[0]
    await cycle(session, org.supermarket, member, every=7, last=11, n=4)
    first = await refresh(session)
    second = await refresh(session)
    assert (first["alerts_opened"], second["alerts_opened"]) == (1, 0)
    page = (await client.get(LAPSED, headers=org.headers["admin"])).json()
    assert len(page["items"]) == 1
    item = page["items"][0]
    assert item["member_id"] == member.id and item["days_since_last"] == 11
    assert Decimal(item["usual_interval_days"]) == 7 and item["status"] == "open"
    assert item["name"] == member.name and item["home_store_id"] == org.supermarket.id

    await buy(session, org.supermarket, days_ago(0.5), 800, member=member)
    again = await refresh(session)
    assert again["alerts_closed"] == 1
    assert (await client.get(LAPSED, headers=org.headers["admin"])).json()["items"] == []
    closed = await client.get(LAPSED, params={"status": "closed"}, headers=org.headers["admin"])
    assert [i["alert_id"] for i in closed.json()["items"]] == [item["alert_id"]]

    frozen.tick(20 * 86400)  # lapses again: a new episode, a new alert
    later = await refresh(session)
    assert later["alerts_opened"] == 1
    alerts = (await session.execute(select(LapseAlert))).scalars().all()
    assert sorted(a.status for a in alerts) == ["closed", "open"]


async def test_portfolio_owner_gets_the_alert_else_least_loaded_staff(client, session, org):
    """Portfolio size 1: the store manager owns the top spender, the cashier the second;
    the two unowned lapsed members are dealt out one each."""
    await client.put(
        "/v1/insights/settings", json={"portfolio_size": 1}, headers=org.headers["admin"]
    )
    members = await add_members(session, org.supermarket, 4)
    for rank, m in enumerate(members):
        await cycle(session, org.supermarket, m, every=7, last=12, n=4)
        await buy(session, org.supermarket, days_ago(40), 10_000 * (4 - rank), member=m)
    counts = await refresh(session)
    assert counts["portfolio_added"] == 2 and counts["alerts_assigned"] == 4
    manager, cashier = org.staff["store_manager"], org.staff["cashier"]
    alerts = {a.member_id: a for a in (await session.execute(select(LapseAlert))).scalars().all()}
    assert alerts[members[0].id].assigned_staff_id == manager.id
    assert alerts[members[0].id].assigned_by == "portfolio"
    assert alerts[members[1].id].assigned_staff_id == cashier.id
    dealt = {alerts[members[2].id].assigned_staff_id, alerts[members[3].id].assigned_staff_id}
    assert dealt == {manager.id, cashier.id}
    assert alerts[members[2].id].assigned_by == "least_loaded"

    mine = await client.get("/v1/insights/portfolio", headers=org.headers["store_manager"])
    assert mine.status_code == 200, mine.text
    assert [i["member_id"] for i in mine.json()["items"]] == [members[0].id]
    assert mine.json()["items"][0]["lapsed"] is True
    assert mine.json()["items"][0]["open_alert_id"] == alerts[members[0].id].id
    own = await client.get("/v1/insights/portfolio", headers=org.headers["cashier"])
    assert [i["member_id"] for i in own.json()["items"]] == [members[1].id]
    peek = await client.get(
        "/v1/insights/portfolio", params={"staff_id": manager.id}, headers=org.headers["cashier"]
    )
    assert peek.status_code == 403
    by_manager = await client.get(
        "/v1/insights/portfolio", params={"staff_id": cashier.id}, headers=org.headers["admin"]
    )
    assert [i["member_id"] for i in by_manager.json()["items"]] == [members[1].id]


async def test_manual_portfolio_placement(client, session, org):
    member = (await add_members(session, org.supermarket))[0]
    cashier = org.staff["cashier"]
    r = await client.post(
        "/v1/insights/portfolio",
        json={"staff_id": cashier.id, "member_id": member.id},
        headers=org.headers["store_manager"],
    )
    assert r.status_code == 200, r.text
    assert [i["member_id"] for i in r.json()["items"]] == [member.id]
    other_store = (await add_members(session, org.fuel_a))[0]
    wrong = await client.post(
        "/v1/insights/portfolio",
        json={"staff_id": cashier.id, "member_id": other_store.id},
        headers=org.headers["admin"],
    )
    assert wrong.status_code == 422 and wrong.json()["error"] == "StaffNotInStore"


async def test_assign_and_record_outcome(client, session, settings, org):
    member = (await add_members(session, org.supermarket))[0]
    await cycle(session, org.supermarket, member, every=7, last=11, n=4)
    await refresh(session)
    alert_id = (await client.get(LAPSED, headers=org.headers["admin"])).json()["items"][0][
        "alert_id"
    ]
    cashier = org.staff["cashier"]
    r = await client.post(
        f"{LAPSED}/{alert_id}/assign",
        json={"staff_id": cashier.id},
        headers=org.headers["store_manager"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["assigned_staff_id"] == cashier.id
    assert r.json()["assigned_by"] == f"staff:{org.staff['store_manager'].id}"

    elsewhere, _ = await factories.make_staff(
        session, settings, Role.cashier, store_id=org.fuel_a.id
    )
    await session.commit()
    wrong = await client.post(
        f"{LAPSED}/{alert_id}/assign", json={"staff_id": elsewhere.id}, headers=org.headers["admin"]
    )
    assert wrong.status_code == 422 and wrong.json()["error"] == "StaffNotInStore"

    done = await client.post(
        f"{LAPSED}/{alert_id}/outcome",
        json={"outcome": "not_reached", "reason": "phone switched off"},
        headers=org.headers["cashier"],
    )
    assert done.status_code == 200, done.text
    assert done.json()["outcome"] == "not_reached"
    assert done.json()["outcome_reason"] == "phone switched off"
    manager = await client.post(
        f"{LAPSED}/{alert_id}/outcome", json={"outcome": "reached"}, headers=org.headers["admin"]
    )
    assert manager.json()["outcome"] == "reached" and manager.json()["outcome_reason"] is None
    bad = await client.post(
        f"{LAPSED}/{alert_id}/outcome", json={"outcome": "maybe"}, headers=org.headers["admin"]
    )
    assert bad.status_code == 422


async def test_alerts_are_scoped_to_the_members_home_store(client, session, settings, org):
    north_member = (await add_members(session, org.supermarket))[0]
    south_member = (await add_members(session, org.fuel_b))[0]
    await cycle(session, org.supermarket, north_member, every=7, last=11, n=4)
    await cycle(session, org.fuel_b, south_member, every=7, last=11, n=4)
    await refresh(session)

    async def visible(headers):
        r = await client.get(LAPSED, headers=headers)
        assert r.status_code == 200, r.text
        return {i["member_id"] for i in r.json()["items"]}

    assert await visible(org.headers["admin"]) == {north_member.id, south_member.id}
    assert await visible(org.headers["store_manager"]) == {north_member.id}
    assert await visible(org.headers["region_manager"]) == {north_member.id}
    _, south_manager = await factories.make_staff(
        session, settings, Role.region_manager, region_id=org.south.id
    )
    await session.commit()
    assert await visible(south_manager) == {south_member.id}
    north_alert = (await client.get(LAPSED, headers=org.headers["store_manager"])).json()
    alert_id = north_alert["items"][0]["alert_id"]
    hidden = await client.post(
        f"{LAPSED}/{alert_id}/outcome", json={"outcome": "reached"}, headers=south_manager
    )
    assert hidden.status_code == 404 and hidden.json()["error"] == "AlertNotFound"
    assert (await client.get(LAPSED, headers=org.headers["cashier"])).status_code == 403


async def test_lapsed_list_pages_with_a_cursor(client, session, org):
    members = await add_members(session, org.supermarket, 5)
    for m in members:
        await cycle(session, org.supermarket, m, every=7, last=11, n=4)
    await refresh(session)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(LAPSED, params=params, headers=org.headers["marketer"])).json()
        seen += [i["alert_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)


async def test_portfolios_drop_leavers_and_movers_and_trim_to_size(client, session, org):
    members = await add_members(session, org.supermarket, 4)
    for rank, m in enumerate(members):
        await buy(session, org.supermarket, days_ago(5), 1_000 * (10 - rank), member=m)
    await refresh(session)
    entries = dict(
        (await session.execute(select(PortfolioEntry.member_id, PortfolioEntry.staff_id))).all()
    )
    manager, cashier = org.staff["store_manager"], org.staff["cashier"]
    assert list(entries.values()).count(manager.id) == 4  # fills in staff id order, 15 each

    members[0].home_store_id = org.fuel_a.id  # moved away
    manager.active = False  # left
    await session.commit()
    await refresh(session)
    entries = dict(
        (await session.execute(select(PortfolioEntry.member_id, PortfolioEntry.staff_id))).all()
    )
    assert entries == {m.id: cashier.id for m in members[1:]}

    await client.put(
        "/v1/insights/settings", json={"portfolio_size": 2}, headers=org.headers["admin"]
    )
    await refresh(session)
    kept = (await session.execute(select(PortfolioEntry.member_id))).scalars().all()
    assert len(kept) == 2
