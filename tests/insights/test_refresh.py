"""Refresh on demand and by the worker; the API answers from the stored figures."""

from datetime import timedelta

from sqlalchemy import func, select

from api import worker
from api.insights import service as insights_service
from api.insights.models import MemberStats, Refresh
from tests.insights.conftest import add_members, buy, days_ago


async def test_refresh_on_demand_changes_the_stored_figures(client, session, org):
    member = (await add_members(session, org.supermarket))[0]
    await session.commit()
    before = (await client.get("/v1/insights/abc", headers=org.headers["admin"])).json()
    assert before["members"] == 0 and before["computed_at"] is None
    assert (await client.get("/v1/insights/refresh", headers=org.headers["admin"])).json() is None

    await buy(session, org.supermarket, days_ago(2), 4_200, member=member)
    await session.commit()
    stale = (await client.get("/v1/insights/abc", headers=org.headers["admin"])).json()
    assert stale["members"] == 0  # answered from stored figures, not live purchases

    r = await client.post("/v1/insights/refresh", headers=org.headers["marketer"])
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["trigger"] == "api" and run["counts"]["members"] == 1
    assert run["duration_ms"] >= 0 and run["finished_at"]
    after = (await client.get("/v1/insights/abc", headers=org.headers["admin"])).json()
    assert after["members"] == 1 and after["spend"] == 4_200 and after["computed_at"]
    last = (await client.get("/v1/insights/refresh", headers=org.headers["store_manager"])).json()
    assert last["id"] == run["id"]
    stats = await session.get(MemberStats, member.id, populate_existing=True)
    assert stats.spend_12m == 4_200 and stats.abc_class == "A"


async def test_worker_job_refreshes_only_when_stale(session, org, frozen):
    assert ("insights_refresh", insights_service.refresh_if_stale) in worker.JOBS
    member = (await add_members(session, org.supermarket))[0]
    await buy(session, org.supermarket, days_ago(1), 1_000, member=member)
    await session.flush()
    assert await insights_service.refresh_if_stale(session) == 1  # never refreshed
    assert await insights_service.refresh_if_stale(session) == 0
    frozen.tick(23 * 3600)
    assert await insights_service.refresh_if_stale(session) == 0
    frozen.tick(2 * 3600)
    assert await insights_service.refresh_if_stale(session) == 1
    runs = (await session.execute(select(Refresh).order_by(Refresh.id))).scalars().all()
    assert [r.trigger for r in runs] == ["worker", "worker"]
    assert runs[1].started_at - runs[0].started_at == timedelta(hours=25)
    assert await session.scalar(select(func.count()).select_from(MemberStats)) == 1


async def test_worker_pass_runs_the_job(maker, session, org):
    await add_members(session, org.supermarket)
    await session.commit()
    done = await worker.run_once(maker)
    assert done["insights_refresh"] == 1
    again = await worker.run_once(maker)
    assert again["insights_refresh"] == 0
