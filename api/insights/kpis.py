"""Programme KPIs.

- active members: members whose last purchase is at most 30 / 90 days old;
- member share of sales: the amount of purchases with a member ÷ the amount of all purchases
  (net of returns, trailing 12 months, by the sale's store) — the fuel network's "card share";
- repeat rate: members with 2+ purchases ÷ members with 1+ purchases in the trailing 12 months;
- average basket: net amount ÷ receipts, for member and for anonymous purchases;
- member-day uplift: see api.insights.member_day;
- points issued (earn rows and positive adjustments) and redeemed (spend, reserve and release
  rows, net) per month for 12 months, by the member's home store.
"""

from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.insights import figures, member_day
from api.insights.models import MemberStats
from api.insights.periods import Month
from api.insights.schemas import KpisRead, PointsMonth
from api.insights.scoping import in_scope
from api.insights.sql import month_period, utc
from api.loyalty.ledger.models import LedgerEntry
from api.loyalty.till.models import Purchase
from api.members.models import Member
from api.org.scope import Scope

SALES = ("sales_amount", "sales_count", "member_sales_amount", "member_sales_count")
POINTS = ("points_issued", "points_redeemed")
REDEEM_KINDS = ("spend", "reserve", "release")


def _window(column: object, now: datetime, months: list[Month]) -> tuple[object, object]:
    return column >= utc(months[0].starts_at), column <= utc(min(now, months[-1].ends_at))


async def compute_sales(session: AsyncSession, *, now: datetime, months: list[Month]) -> None:
    """Sales and receipts per month and store, all and with a member (one INSERT … SELECT)."""
    rows = (
        select(
            month_period(Purchase.occurred_at, months).label("period"),
            Purchase.store_id,
            (Purchase.total - Purchase.returned_total).label("net"),
            case((Purchase.member_id.is_not(None), 1), else_=0).label("member"),
        )
        .where(*_window(Purchase.occurred_at, now, months))
        .subquery("rows")
    )
    per_store = (
        select(
            rows.c.period,
            rows.c.store_id,
            func.sum(rows.c.net).label("amount"),
            func.count().label("receipts"),
            func.sum(rows.c.net * rows.c.member).label("member_amount"),
            func.sum(rows.c.member).label("member_receipts"),
        )
        .where(rows.c.period.is_not(None))
        .group_by(rows.c.period, rows.c.store_id)
        .cte("sales")
    )
    await figures.insert_from(
        session,
        per_store,
        {
            "sales_amount": "amount",
            "sales_count": "receipts",
            "member_sales_amount": "member_amount",
            "member_sales_count": "member_receipts",
        },
        period="period",
    )


async def compute_points(session: AsyncSession, *, now: datetime, months: list[Month]) -> None:
    """Points issued and redeemed per month and home store (one INSERT … SELECT)."""
    issued = or_(
        LedgerEntry.kind == "earn", and_(LedgerEntry.kind == "adjust", LedgerEntry.points > 0)
    )
    redeemed = LedgerEntry.kind.in_(REDEEM_KINDS)
    rows = (
        select(
            month_period(LedgerEntry.created_at, months).label("period"),
            LedgerEntry.member_id,
            case((issued, LedgerEntry.points), else_=0).label("issued"),
            case((redeemed, -LedgerEntry.points), else_=0).label("redeemed"),
        )
        .where(*_window(LedgerEntry.created_at, now, months))
        .subquery("rows")
    )
    per_store = (
        select(
            rows.c.period,
            Member.home_store_id.label("store_id"),
            func.sum(rows.c.issued).label("issued"),
            func.sum(rows.c.redeemed).label("redeemed"),
        )
        .join(Member, Member.id == rows.c.member_id)
        .where(rows.c.period.is_not(None))
        .group_by(rows.c.period, Member.home_store_id)
        .cte("points")
    )
    await figures.insert_from(
        session,
        per_store,
        {"points_issued": "issued", "points_redeemed": "redeemed"},
        period="period",
    )


async def _member_counts(session: AsyncSession, scope: Scope) -> tuple[int, int, int, int, int]:
    s = MemberStats

    def count_if(condition: object) -> object:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = (
        await session.execute(
            select(
                func.count(),
                count_if(s.days_since_last <= 30),
                count_if(s.days_since_last <= 90),
                count_if(s.purchases_12m >= 1),
                count_if(s.purchases_12m >= 2),
            ).where(in_scope(s.home_store_id, scope))
        )
    ).one()
    return tuple(int(v) for v in row)  # type: ignore[return-value]


async def report(
    session: AsyncSession, *, scope: Scope, months: list[Month], now: datetime
) -> KpisRead:
    """The programme KPIs within the scope, from the stored figures."""
    members, active_30, active_90, buyers, repeaters = await _member_counts(session, scope)
    got = await figures.totals(session, (*SALES, *POINTS, *member_day.MEASURES), scope)

    def year(measure: str) -> int:
        return sum(got.get((measure, m.period, None), 0) for m in months)

    amount, receipts = year("sales_amount"), year("sales_count")
    member_amount, member_receipts = year("member_sales_amount"), year("member_sales_count")
    anon_amount, anon_receipts = amount - member_amount, receipts - member_receipts
    return KpisRead(
        members=members,
        active_30d=active_30,
        active_90d=active_90,
        sales=amount,
        member_sales=member_amount,
        member_share=figures.ratio(member_amount, amount),
        repeat_rate=figures.ratio(repeaters, buyers),
        average_basket_member=member_amount // member_receipts if member_receipts else None,
        average_basket_non_member=anon_amount // anon_receipts if anon_receipts else None,
        member_day=member_day.summary(got),
        points=[
            PointsMonth(
                month=m.period,
                issued=got.get(("points_issued", m.period, None), 0),
                redeemed=got.get(("points_redeemed", m.period, None), 0),
            )
            for m in months
        ],
    )
