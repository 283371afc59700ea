"""ABC classes: Pareto on trailing-12-month spend (net of returns).

Members with spend are sorted by spend, highest first. A is every member whose running total
*before* them is under A% of all spend (so A holds the top A% plus the member crossing it),
B likewise up to A+B%, C the rest; members without spend have no class. Thresholds live in
insights_settings (PUT /v1/insights/settings, defaults 70 and 90).

Scoped views (region and store managers) report the programme-wide classes restricted to the
members whose home store is in scope: a manager's A members are the programme's A members who
shop with them, the same class a campaign audience sees; shares are within the scope.
"""

from datetime import date

from dateutil.relativedelta import relativedelta
from sqlalchemy import Date, and_, case, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.insights.figures import ratio
from api.insights.models import AbcHistory, MemberStats
from api.insights.schemas import AbcClassRead, AbcRead
from api.insights.scoping import in_scope
from api.org.scope import Scope

CLASSES = ("A", "B", "C")
HISTORY_MONTHS = 24


async def classify(session: AsyncSession, *, a_percent: int, b_percent: int) -> None:
    """Set every member's class in one UPDATE … FROM over a running-sum window."""
    spend = MemberStats.spend_12m
    running = func.sum(spend).over(order_by=(spend.desc(), MemberStats.member_id), rows=(None, 0))
    ranked = (
        select(
            MemberStats.member_id.label("member_id"),
            (running - spend).label("before"),
            func.sum(spend).over().label("total"),
        )
        .where(spend > 0)
        .subquery("ranked")
    )
    abc_class = case(
        (ranked.c.before * 100 < ranked.c.total * a_percent, "A"),
        (ranked.c.before * 100 < ranked.c.total * b_percent, "B"),
        else_="C",
    )
    await session.execute(
        update(MemberStats)
        .values(abc_class=abc_class)
        .where(MemberStats.member_id == ranked.c.member_id)
    )


async def record_month(session: AsyncSession, *, month: date) -> None:
    """Keep this month's classes (replacing an earlier refresh in the same month)."""
    await session.execute(delete(AbcHistory).where(AbcHistory.month == month))
    oldest = month - relativedelta(months=HISTORY_MONTHS)
    await session.execute(delete(AbcHistory).where(AbcHistory.month < oldest))
    rows = select(
        MemberStats.member_id, MemberStats.abc_class, MemberStats.spend_12m, literal(month, Date)
    ).where(MemberStats.abc_class.is_not(None))
    await session.execute(
        insert(AbcHistory).from_select(["member_id", "abc_class", "spend_12m", "month"], rows)
    )


async def _movement(session: AsyncSession, scope: Scope) -> tuple[date | None, dict[str, int]]:
    current = (await session.execute(select(func.max(AbcHistory.month)))).scalar_one_or_none()
    if current is None:
        return None, {}
    previous = (
        await session.execute(select(func.max(AbcHistory.month)).where(AbcHistory.month < current))
    ).scalar_one_or_none()
    if previous is None:
        return None, {}
    before = AbcHistory.__table__.alias("before")
    now = AbcHistory.__table__.alias("now")
    stmt = (
        select(before.c.abc_class, now.c.abc_class, func.count())
        .select_from(now)
        .join(before, before.c.member_id == now.c.member_id)
        .join(MemberStats, MemberStats.member_id == now.c.member_id)
        .where(
            now.c.month == current,
            before.c.month == previous,
            before.c.abc_class != now.c.abc_class,
            in_scope(MemberStats.home_store_id, scope),
        )
        .group_by(before.c.abc_class, now.c.abc_class)
    )
    moves = {f"{a}->{b}": 0 for a in CLASSES for b in CLASSES if a != b}
    for old, new, n in (await session.execute(stmt)).all():
        moves[f"{old}->{new}"] = int(n)
    return previous, moves


async def report(session: AsyncSession, *, scope: Scope) -> AbcRead:
    """Members and spend per class within the scope, and moves since the previous month.

    For a region or store manager these are the programme-wide classes of the members whose
    home store is in scope (not classes recomputed on the scoped population)."""
    stmt = (
        select(MemberStats.abc_class, func.count(), func.sum(MemberStats.spend_12m))
        .where(and_(MemberStats.abc_class.is_not(None), in_scope(MemberStats.home_store_id, scope)))
        .group_by(MemberStats.abc_class)
    )
    found = {cls: (int(n), int(s or 0)) for cls, n, s in (await session.execute(stmt)).all()}
    members = sum(n for n, _ in found.values())
    spend = sum(s for _, s in found.values())
    classes = [
        AbcClassRead(
            **{"class": cls},
            members=found.get(cls, (0, 0))[0],
            member_share=ratio(found.get(cls, (0, 0))[0], members) or 0.0,
            spend=found.get(cls, (0, 0))[1],
            spend_share=ratio(found.get(cls, (0, 0))[1], spend) or 0.0,
        )
        for cls in CLASSES
    ]
    previous, movement = await _movement(session, scope)
    return AbcRead(
        classes=classes,
        movement=movement,
        movement_since=previous,
        members=members,
        spend=spend,
    )
