"""RFM: recency, frequency and monetary quintile scores (1–5) and named segments.

Population: members with at least one purchase in the trailing 12 months. Each score is
NTILE(5) over the population (5 = most recent / most purchases / most spend); members tied on
a value share the lowest tile any of them reached, so equal behaviour gets an equal score.

Segments (first match wins; FM = F + M, 2–10):

| segment      | rule                 | meaning                                  |
|--------------|----------------------|------------------------------------------|
| champions    | R ≥ 4 and FM ≥ 8     | bought lately, often and a lot           |
| new          | R ≥ 4 and F = 1      | bought lately, for the first times       |
| loyal        | R ≥ 3 and FM ≥ 6     | steady, valuable customers               |
| potential    | R ≥ 3                | recent, could buy more                   |
| cant_lose    | R ≤ 2 and FM ≥ 8     | were among the best, now gone quiet      |
| at_risk      | R ≤ 2 and FM ≥ 5     | good customers drifting away             |
| hibernating  | R = 2                | low value and quiet                      |
| lost         | otherwise (R = 1)    | low value, longest gone                  |
"""

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.insights.figures import ratio
from api.insights.models import MemberStats
from api.insights.schemas import RfmRead, ScoreRead, SegmentRead
from api.insights.scoping import in_scope
from api.org.scope import Scope

SEGMENTS = (
    "champions",
    "new",
    "loyal",
    "potential",
    "cant_lose",
    "at_risk",
    "hibernating",
    "lost",
)


def segment_of(r: int, f: int, m: int) -> str:
    """The segment for a score triple (the same mapping the SQL applies)."""
    fm = f + m
    if r >= 4 and fm >= 8:
        return "champions"
    if r >= 4 and f == 1:
        return "new"
    if r >= 3 and fm >= 6:
        return "loyal"
    if r >= 3:
        return "potential"
    if fm >= 8:
        return "cant_lose"
    if fm >= 5:
        return "at_risk"
    if r == 2:
        return "hibernating"
    return "lost"


async def score(session: AsyncSession) -> None:
    """Score and segment every buyer of the last 12 months in one UPDATE … FROM."""
    s = MemberStats
    tiles = (
        select(
            s.member_id,
            s.days_since_last.label("days"),
            s.purchases_12m.label("freq"),
            s.spend_12m.label("spend"),
            func.ntile(5).over(order_by=(s.days_since_last.desc(), s.member_id)).label("r"),
            func.ntile(5).over(order_by=(s.purchases_12m, s.member_id)).label("f"),
            func.ntile(5).over(order_by=(s.spend_12m, s.member_id)).label("m"),
        )
        .where(s.purchases_12m > 0)
        .subquery("tiles")
    )
    scores = select(
        tiles.c.member_id,
        func.min(tiles.c.r).over(partition_by=tiles.c.days).label("r"),
        func.min(tiles.c.f).over(partition_by=tiles.c.freq).label("f"),
        func.min(tiles.c.m).over(partition_by=tiles.c.spend).label("m"),
    ).subquery("scores")
    r, f, m = scores.c.r, scores.c.f, scores.c.m
    segment = case(
        ((r >= 4) & (f + m >= 8), "champions"),
        ((r >= 4) & (f == 1), "new"),
        ((r >= 3) & (f + m >= 6), "loyal"),
        (r >= 3, "potential"),
        (f + m >= 8, "cant_lose"),
        (f + m >= 5, "at_risk"),
        (r == 2, "hibernating"),
        else_="lost",
    )
    await session.execute(
        update(MemberStats)
        .values(r_score=r, f_score=f, m_score=m, rfm_segment=segment)
        .where(MemberStats.member_id == scores.c.member_id)
    )


async def report(session: AsyncSession, *, scope: Scope) -> RfmRead:
    """Members and spend per segment, and how many members hold each score, within the scope."""
    where = (MemberStats.rfm_segment.is_not(None), in_scope(MemberStats.home_store_id, scope))
    seg_rows = (
        await session.execute(
            select(MemberStats.rfm_segment, func.count(), func.sum(MemberStats.spend_12m))
            .where(*where)
            .group_by(MemberStats.rfm_segment)
        )
    ).all()
    found = {seg: (int(n), int(spend or 0)) for seg, n, spend in seg_rows}
    members = sum(n for n, _ in found.values())
    segments = [
        SegmentRead(
            segment=seg,
            members=found.get(seg, (0, 0))[0],
            member_share=ratio(found.get(seg, (0, 0))[0], members) or 0.0,
            spend=found.get(seg, (0, 0))[1],
        )
        for seg in SEGMENTS
    ]
    counts = {(axis, n): 0 for axis in "rfm" for n in range(1, 6)}
    axes = {"r": MemberStats.r_score, "f": MemberStats.f_score, "m": MemberStats.m_score}
    for axis, column in axes.items():  # three small GROUP BYs, one per axis
        rows = await session.execute(select(column, func.count()).where(*where).group_by(column))
        for value, n in rows.all():
            counts[(axis, int(value))] = int(n)
    scores = [
        ScoreRead(
            score=n, recency=counts[("r", n)], frequency=counts[("f", n)], monetary=counts[("m", n)]
        )
        for n in range(1, 6)
    ]
    return RfmRead(members=members, segments=segments, scores=scores)
