"""Churn and retention.

- A member is churned when their last purchase is more than N days old (default 90,
  insights_settings.churn_days); members who never bought are neither active nor churned.
- Monthly churn rate, for each of the last 12 months (programme time zone; the current month
  counts up to now): of the members active at the month's start (a purchase in the N days
  before it), the share that are no longer active at its end (no purchase in the N days
  before the end).
- Retention by enrolment-month cohort: of the members who enrolled in a month, the share who
  purchased in each month +0 … +11 after it.

Both are stored per home store (insights_store_figure), so a manager's view sums their stores.
"""

from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Date, and_, case, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.db import UTCDateTime
from api.insights import figures
from api.insights.models import MemberStats
from api.insights.periods import Month
from api.insights.schemas import ChurnMonth, ChurnRead, Cohort, CohortMonth
from api.insights.scoping import in_scope
from api.insights.sql import month_index, months_cte, utc, values_cte
from api.loyalty.till.models import Purchase
from api.members.models import Member
from api.org.scope import Scope

CHURN_MEASURES = ("churn_base", "churn_churned")
COHORT_MEASURES = ("cohort_size", "cohort_active")


async def compute_monthly_churn(
    session: AsyncSession, *, now: datetime, months: list[Month], churn_days: int
) -> None:
    """Active-at-start and churned members per month and home store (one INSERT … SELECT).

    A member is active at a moment b when they bought in [b − N days, b); only their last
    purchase before b decides it. So each purchase (with the next one, by LEAD) is tested
    against the month boundaries it is the last purchase before: at most one row per member
    and boundary, folded into a bit mask per member, instead of a purchase × month join
    grouped by member and month (which spills at millions of purchases)."""
    window = timedelta(days=churn_days)
    ends = [min(m.ends_at, now) for m in months]
    points = sorted({m.starts_at for m in months} | set(ends))
    bit = {at: 1 << i for i, at in enumerate(points)}
    moments = values_cte(
        "moments",
        {"at": UTCDateTime(), "since": UTCDateTime(), "bit": BigInteger()},
        [(at, at - window, bit[at]) for at in points],
    )
    spans = values_cte(
        "spans",
        {"period": Date(), "start_bit": BigInteger(), "end_bit": BigInteger()},
        [(m.period, bit[m.starts_at], bit[end]) for m, end in zip(months, ends, strict=True)],
    )
    bought = (
        select(
            Purchase.member_id.label("member_id"),
            Purchase.occurred_at.label("at"),
            func.lead(Purchase.occurred_at)
            .over(partition_by=Purchase.member_id, order_by=(Purchase.occurred_at, Purchase.id))
            .label("next_at"),
        )
        .where(
            Purchase.member_id.is_not(None),
            Purchase.occurred_at >= utc(points[0] - window),
            Purchase.occurred_at <= utc(now),
        )
        .subquery("bought")
    )
    active = (
        select(bought.c.member_id, func.sum(moments.c.bit).cast(BigInteger).label("mask"))
        .join(
            moments,
            and_(
                bought.c.at < moments.c.at,
                bought.c.at >= moments.c.since,
                or_(bought.c.next_at.is_(None), bought.c.next_at >= moments.c.at),
            ),
        )
        .group_by(bought.c.member_id)
        .subquery("active")
    )
    was = active.c.mask.op("&")(spans.c.start_bit) != 0
    still = active.c.mask.op("&")(spans.c.end_bit) != 0
    per_store = (
        select(
            spans.c.period,
            Member.home_store_id.label("store_id"),
            func.sum(case((was, 1), else_=0)).label("base"),
            func.sum(case((was & ~still, 1), else_=0)).label("gone"),
        )
        .select_from(active)
        .join(Member, Member.id == active.c.member_id)
        .join(spans, true())
        .group_by(spans.c.period, Member.home_store_id)
        .cte("churn")
    )
    await figures.insert_from(
        session, per_store, {"churn_base": "base", "churn_churned": "gone"}, period="period"
    )


async def compute_cohorts(session: AsyncSession, *, now: datetime, months: list[Month]) -> None:
    """Cohort sizes and members buying in month +k, per enrolment month and home store."""
    cohort = (
        select(
            Member.id.label("member_id"),
            Member.home_store_id.label("store_id"),
            month_index(Member.created_at, months).label("idx"),
        )
        .where(Member.created_at >= utc(months[0].starts_at))
        .subquery("cohort")
    )
    sizes = (
        select(cohort.c.idx, cohort.c.store_id, func.count().label("members"))
        .where(cohort.c.idx.is_not(None))
        .group_by(cohort.c.idx, cohort.c.store_id)
        .subquery("sizes")
    )
    by_idx = months_cte(months, "cal")
    sized = (
        select(by_idx.c.period, sizes.c.store_id, sizes.c.members)
        .join(by_idx, by_idx.c.idx == sizes.c.idx)
        .cte("sized")
    )
    await figures.insert_from(session, sized, {"cohort_size": "members"}, period="period")
    bought = (
        select(
            Purchase.member_id,
            month_index(Purchase.occurred_at, months).label("idx"),
        )
        .where(
            Purchase.member_id.is_not(None),
            Purchase.occurred_at >= utc(months[0].starts_at),
            Purchase.occurred_at <= utc(now),
        )
        .distinct()
        .subquery("bought")
    )
    offset = (bought.c.idx - cohort.c.idx).label("month_offset")
    active = (
        select(cohort.c.idx, cohort.c.store_id, offset, func.count().label("members"))
        .join(cohort, cohort.c.member_id == bought.c.member_id)
        .where(cohort.c.idx.is_not(None), bought.c.idx >= cohort.c.idx)
        .group_by(cohort.c.idx, cohort.c.store_id, offset)
        .subquery("active")
    )
    labelled = (
        select(by_idx.c.period, active.c.store_id, active.c.month_offset, active.c.members)
        .join(by_idx, by_idx.c.idx == active.c.idx)
        .cte("labelled")
    )
    await figures.insert_from(
        session, labelled, {"cohort_active": "members"}, period="period", bucket="month_offset"
    )


async def report(
    session: AsyncSession, *, scope: Scope, months: list[Month], churn_days: int, now: datetime
) -> ChurnRead:
    """Churned and active members now, monthly churn and cohort retention within the scope."""
    counts = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((MemberStats.churned, 1), else_=0)), 0),
                func.coalesce(
                    func.sum(
                        case(
                            (
                                MemberStats.last_purchase_at.is_not(None) & ~MemberStats.churned,
                                1,
                            ),
                            else_=0,
                        )
                    ),
                    0,
                ),
            ).where(in_scope(MemberStats.home_store_id, scope))
        )
    ).one()
    got = await figures.totals(session, (*CHURN_MEASURES, *COHORT_MEASURES), scope)
    monthly = []
    for m in months:
        base = got.get(("churn_base", m.period, None), 0)
        gone = got.get(("churn_churned", m.period, None), 0)
        monthly.append(
            ChurnMonth(
                month=m.period,
                active_at_start=base,
                churned=gone,
                churn_rate=figures.ratio(gone, base),
                partial=m.ends_at > now,
            )
        )
    cohorts = []
    for m in months:
        size = got.get(("cohort_size", m.period, None), 0)
        horizon = len(months) - m.idx
        retention = [
            CohortMonth(
                month_offset=k,
                members=got.get(("cohort_active", m.period, k), 0),
                share=figures.ratio(got.get(("cohort_active", m.period, k), 0), size),
            )
            for k in range(horizon)
        ]
        cohorts.append(Cohort(cohort=m.period, members=size, retention=retention))
    return ChurnRead(
        churn_days=churn_days,
        churned_members=int(counts[0]),
        active_members=int(counts[1]),
        monthly=monthly,
        cohorts=cohorts,
    )
