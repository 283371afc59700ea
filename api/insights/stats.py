"""Per-member figures (insights_member_stats): spend, counts, recency, purchase cycle, lapse.

Each measure is one set-based statement over all members; nothing loops over members.
"""

from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.db import is_postgres
from api.insights.audience import MIN_PURCHASES_FOR_CYCLE, lapsed_predicate
from api.insights.models import MemberStats
from api.insights.periods import trailing_year_start
from api.insights.sql import as_days, epoch_seconds, utc, whole_days
from api.loyalty.till.models import Purchase
from api.members.models import Member


def net_amount() -> object:
    """A purchase's amount net of returns (minor units)."""
    return Purchase.total - Purchase.returned_total


async def rebuild_member_stats(session: AsyncSession, *, now: datetime, churn_days: int) -> int:
    """Replace every member's base figures (one INSERT … SELECT); returns the member count."""
    since = utc(trailing_year_start(now))
    at = utc(now)
    recent = Purchase.occurred_at >= since
    per_member = (
        select(
            Purchase.member_id.label("member_id"),
            func.sum(case((recent, net_amount()), else_=0)).label("spend"),
            func.sum(case((recent, 1), else_=0)).label("recent_count"),
            func.count().label("total_count"),
            func.min(Purchase.occurred_at).label("first_at"),
            func.max(Purchase.occurred_at).label("last_at"),
        )
        .where(Purchase.member_id.is_not(None), Purchase.occurred_at <= at)
        .group_by(Purchase.member_id)
        .subquery("per_member")
    )
    churn_before = utc(now - timedelta(days=churn_days))
    rows = select(
        Member.id,
        Member.home_store_id,
        func.coalesce(per_member.c.spend, 0),
        func.coalesce(per_member.c.recent_count, 0),
        func.coalesce(per_member.c.total_count, 0),
        per_member.c.first_at,
        per_member.c.last_at,
        whole_days(at, per_member.c.last_at),
        literal(False),
        case((per_member.c.last_at < churn_before, True), else_=False),
        at,
    ).outerjoin(per_member, per_member.c.member_id == Member.id)
    await session.execute(delete(MemberStats))
    columns = [
        "member_id",
        "home_store_id",
        "spend_12m",
        "purchases_12m",
        "purchases_total",
        "first_purchase_at",
        "last_purchase_at",
        "days_since_last",
        "lapsed",
        "churned",
        "computed_at",
    ]
    result = await session.execute(insert(MemberStats).from_select(columns, rows))
    if is_postgres(session):  # fresh statistics, or the planner takes the new rows for none
        await session.execute(text("ANALYZE insights_member_stats"))
    return int(result.rowcount or 0)


async def update_purchase_cycles(session: AsyncSession, *, now: datetime) -> None:
    """Median days between consecutive purchases over the trailing year (≥ 3 purchases):
    LAG gives each gap, ROW_NUMBER/COUNT pick the middle one or two, AVG of those."""
    since = utc(trailing_year_start(now))
    stamped = (
        select(
            Purchase.member_id.label("member_id"),
            Purchase.id.label("id"),
            epoch_seconds(Purchase.occurred_at).label("at"),
        )
        .where(
            Purchase.member_id.is_not(None),
            Purchase.occurred_at >= since,
            Purchase.occurred_at <= utc(now),
        )
        .subquery("stamped")
    )
    previous = func.lag(stamped.c.at).over(
        partition_by=stamped.c.member_id, order_by=(stamped.c.at, stamped.c.id)
    )
    gaps = select(stamped.c.member_id, (stamped.c.at - previous).label("seconds")).subquery("gaps")
    gap = as_days(gaps.c.seconds)
    ranked = (
        select(
            gaps.c.member_id,
            gap.label("gap"),
            func.row_number()
            .over(partition_by=gaps.c.member_id, order_by=gaps.c.seconds)
            .label("rn"),
            func.count().over(partition_by=gaps.c.member_id).label("n"),
        )
        .where(gaps.c.seconds.is_not(None))
        .subquery("ranked")
    )
    middle = (
        select(ranked.c.member_id, func.avg(ranked.c.gap).label("median"))
        .where(
            ranked.c.n >= MIN_PURCHASES_FOR_CYCLE - 1,
            ranked.c.rn.in_([(ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2]),
        )
        .group_by(ranked.c.member_id)
        .subquery("middle")
    )
    await session.execute(
        update(MemberStats)
        .values(usual_interval_days=func.round(middle.c.median, 2))
        .where(MemberStats.member_id == middle.c.member_id)
    )


async def update_lapsed(session: AsyncSession, *, grace_days: int) -> int:
    """Flag members past their usual interval plus grace days; returns how many are lapsed."""
    result = await session.execute(
        update(MemberStats)
        .values(lapsed=True)
        .where(and_(MemberStats.usual_interval_days.is_not(None), lapsed_predicate(grace_days)))
    )
    return int(result.rowcount or 0)
