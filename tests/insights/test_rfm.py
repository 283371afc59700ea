"""RFM: quintile scores on a population with distinct values, the segment map, scope."""

import pytest
from sqlalchemy import select

from api.insights import audience
from api.insights.models import MemberStats
from api.insights.rfm import SEGMENTS, segment_of
from tests.insights.conftest import add_members, buy, days_ago, refresh


@pytest.mark.parametrize(
    ("r", "f", "m", "segment"),
    [
        (5, 5, 5, "champions"),
        (4, 4, 4, "champions"),
        (5, 1, 5, "new"),
        (4, 1, 1, "new"),
        (3, 3, 3, "loyal"),
        (4, 2, 4, "loyal"),
        (3, 1, 1, "potential"),
        (4, 2, 2, "potential"),
        (2, 4, 4, "cant_lose"),
        (1, 5, 5, "cant_lose"),
        (2, 3, 2, "at_risk"),
        (1, 2, 3, "at_risk"),
        (2, 1, 2, "hibernating"),
        (1, 2, 2, "lost"),
        (1, 1, 1, "lost"),
    ],
)
def test_segment_map(r, f, m, segment):
    assert segment_of(r, f, m) == segment


def test_every_score_triple_has_a_known_segment():
    found = {segment_of(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert found == set(SEGMENTS)


# (days since last purchase, purchases in 12 months, spend) → expected (R, F, M, segment)
PEOPLE = {
    "a": ((2, 10, 10_000), (5, 5, 5, "champions")),
    "b": ((5, 1, 600), (4, 1, 3, "new")),
    "c": ((60, 6, 5_000), (3, 4, 4, "loyal")),
    "d": ((100, 2, 300), (2, 2, 2, "hibernating")),
    "e": ((300, 3, 100), (1, 3, 1, "lost")),
}


async def build(session, store):
    members = dict(zip(PEOPLE, await add_members(session, store, len(PEOPLE)), strict=True))
    for key, ((last, count, spend), _) in PEOPLE.items():
        for i in range(count):
            amount = spend - (count - 1) * (spend // count) if i == 0 else spend // count
            await buy(session, store, days_ago(last + 5 * i), amount, member=members[key])
    return members


async def test_scores_and_segments_are_stored(client, session, org):
    members = await build(session, org.supermarket)
    never = (await add_members(session, org.supermarket))[0]
    await refresh(session)
    for key, (_, (r, f, m, segment)) in PEOPLE.items():
        stats = await session.get(MemberStats, members[key].id, populate_existing=True)
        assert (stats.r_score, stats.f_score, stats.m_score, stats.rfm_segment) == (
            r,
            f,
            m,
            segment,
        ), key
    assert (await session.get(MemberStats, never.id)).rfm_segment is None
    champions = (await session.execute(audience.members_in_rfm_segments(["champions"]))).scalars()
    assert list(champions) == [members["a"].id]

    body = (await client.get("/v1/insights/rfm", headers=org.headers["marketer"])).json()
    assert body["members"] == 5
    segments = {s["segment"]: s for s in body["segments"]}
    assert segments["champions"]["members"] == 1 and segments["champions"]["spend"] == 10_000
    assert segments["at_risk"]["members"] == 0
    assert [s["recency"] for s in body["scores"]] == [1, 1, 1, 1, 1]
    assert body["computed_at"]


async def test_ties_share_a_score(session, org):
    members = await add_members(session, org.supermarket, 10)
    for m in members:
        await buy(session, org.supermarket, days_ago(3), 1_000, member=m)
    await refresh(session)
    scores = (
        await session.execute(select(MemberStats.r_score, MemberStats.f_score, MemberStats.m_score))
    ).all()
    assert set(scores) == {(1, 1, 1)}


async def test_scoped_segments(client, session, org):
    await build(session, org.fuel_b)
    await refresh(session)
    r = await client.get("/v1/insights/rfm", headers=org.headers["store_manager"])
    assert r.status_code == 200 and r.json()["members"] == 0
    everyone = await client.get("/v1/insights/rfm", headers=org.headers["admin"])
    assert everyone.json()["members"] == 5
