"""Points liability, stored per member home store at each refresh.

- outstanding: spendable points, SUM(account.available) over accounts with a positive balance
  (equal to the unspent remainder of matured lots, by the ledger invariant); pending: points not
  yet spendable, SUM(account.pending). Money value = points × redeem_value ÷ redeem_points of
  the current programme, rounded down to a minor unit.
- expiring: unspent lot remainders expiring within the next 30 / 60 / 90 days (cumulative).
- breakage over the trailing 12 months: points expired ÷ points earned (earn rows).
"""

from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.insights import figures
from api.insights.periods import trailing_year_start
from api.insights.schemas import BreakageRead, ExpiringRead, LiabilityRead
from api.insights.sql import utc
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.program.models import Program
from api.members.models import Member
from api.org.scope import Scope

HORIZONS = (30, 60, 90)
MEASURES = (
    "points_outstanding",
    "points_pending",
    *(f"points_expiring_{d}" for d in HORIZONS),
    "points_expired_12m",
    "points_earned_12m",
)


async def compute(session: AsyncSession, *, now: datetime) -> None:
    """Three INSERT … SELECTs: balances, expiring lots, and expired vs earned points."""
    balances = (
        select(
            Member.home_store_id.label("store_id"),
            func.sum(case((Account.available > 0, Account.available), else_=0)).label("out"),
            func.sum(Account.pending).label("pending"),
        )
        .join(Member, Member.id == Account.member_id)
        .group_by(Member.home_store_id)
        .cte("balances")
    )
    await figures.insert_from(
        session, balances, {"points_outstanding": "out", "points_pending": "pending"}
    )
    at = utc(now)
    expiring = (
        select(
            Member.home_store_id.label("store_id"),
            *(
                func.sum(
                    case(
                        (
                            LedgerEntry.expires_at <= utc(now + timedelta(days=d)),
                            LedgerEntry.remaining,
                        ),
                        else_=0,
                    )
                ).label(f"d{d}")
                for d in HORIZONS
            ),
        )
        .join(Member, Member.id == LedgerEntry.member_id)
        .where(
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at > at,
            LedgerEntry.expires_at <= utc(now + timedelta(days=max(HORIZONS))),
        )
        .group_by(Member.home_store_id)
        .cte("expiring")
    )
    await figures.insert_from(
        session, expiring, {f"points_expiring_{d}": f"d{d}" for d in HORIZONS}
    )
    flows = (
        select(
            Member.home_store_id.label("store_id"),
            func.sum(case((LedgerEntry.kind == "expire", -LedgerEntry.points), else_=0)).label(
                "expired"
            ),
            func.sum(case((LedgerEntry.kind == "earn", LedgerEntry.points), else_=0)).label(
                "earned"
            ),
        )
        .join(Member, Member.id == LedgerEntry.member_id)
        .where(
            and_(
                LedgerEntry.created_at >= utc(trailing_year_start(now)),
                LedgerEntry.created_at <= at,
                LedgerEntry.kind.in_(["expire", "earn"]),
            )
        )
        .group_by(Member.home_store_id)
        .cte("flows")
    )
    await figures.insert_from(
        session, flows, {"points_expired_12m": "expired", "points_earned_12m": "earned"}
    )


def points_value(points: int, program: Program) -> int:
    """Money value of points in minor units, rounded down."""
    return points * program.redeem_value // program.redeem_points if program.redeem_points else 0


async def report(session: AsyncSession, *, scope: Scope, program: Program) -> LiabilityRead:
    """Outstanding, pending and expiring points with their value, and breakage, in scope."""
    got = await figures.totals(session, MEASURES, scope)

    def total(measure: str) -> int:
        return got.get((measure, None, None), 0)

    outstanding, pending = total("points_outstanding"), total("points_pending")
    expired, earned = total("points_expired_12m"), total("points_earned_12m")
    return LiabilityRead(
        currency=program.currency,
        outstanding_points=outstanding,
        outstanding_value=points_value(outstanding, program),
        pending_points=pending,
        pending_value=points_value(pending, program),
        expiring=[
            ExpiringRead(
                within_days=d,
                points=total(f"points_expiring_{d}"),
                value=points_value(total(f"points_expiring_{d}"), program),
            )
            for d in HORIZONS
        ],
        breakage=BreakageRead(
            expired_points=expired, earned_points=earned, rate=figures.ratio(expired, earned)
        ),
    )
