"""Tiers: qualifying spend over a rolling window (apart from the spendable balance), upgrade
right after the qualifying purchase, at most one level down at the periodic review, and
manual tiers with an end date."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from dateutil.relativedelta import relativedelta
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.ledger.models import Account
from api.loyalty.program import service as program_service
from api.loyalty.program.exceptions import TierNotFound
from api.loyalty.program.models import Program, Tier
from api.loyalty.till.models import Purchase

REVIEW_EVERY = timedelta(days=30)

TierLike = Tier | program_service.TierLevel
T = TypeVar("T", Tier, program_service.TierLevel)


# Built once (the till sums it after most receipts); bound per call by `spend_window`.
QUALIFYING_SPEND = select(
    func.coalesce(func.sum(Purchase.total - Purchase.returned_total), 0)
).where(
    Purchase.member_id == bindparam("spend_member_id"),
    Purchase.occurred_at > bindparam("spend_after", type_=Purchase.occurred_at.type),
    Purchase.occurred_at <= bindparam("spend_until", type_=Purchase.occurred_at.type),
)


def spend_window(
    member_id: int, *, window_months: int, at: datetime | None = None
) -> dict[str, object]:
    """The parameters of QUALIFYING_SPEND: the rolling window ending at `at`."""
    at = at or clock.now()
    return {
        "spend_member_id": member_id,
        "spend_after": at - relativedelta(months=window_months),
        "spend_until": at,
    }


async def qualifying_spend(
    session: AsyncSession, member_id: int, *, window_months: int, at: datetime | None = None
) -> int:
    """Spend net of returns in the rolling window ending at `at` (minor units)."""
    params = spend_window(member_id, window_months=window_months, at=at)
    return int((await session.execute(QUALIFYING_SPEND, params)).scalar_one())


def earned_tier(tiers: Sequence[T], spend: int) -> T | None:
    reached = [t for t in tiers if t.min_spend <= spend]
    return reached[-1] if reached else None


def _rank(tiers: Sequence[TierLike], code: str | None) -> int:
    return next((t.rank for t in tiers if t.code == code), -1)


def tier_by_code(tiers: Sequence[T], code: str | None) -> T | None:
    return next((t for t in tiers if t.code == code), None)


def multiplier_percent(tiers: Sequence[TierLike], code: str | None) -> int:
    tier = tier_by_code(tiers, code)
    return tier.multiplier_percent if tier else 100


async def upgrade_after_purchase(session: AsyncSession, account: Account, program: Program) -> None:
    """Move the member up as soon as their qualifying spend reaches a higher tier."""
    tiers = (await program_service.earning(session, program)).tiers
    if not tiers or _rank(tiers, account.tier) == tiers[-1].rank:
        return  # no ladder, or already at the top: no spend to add up
    spend = await qualifying_spend(
        session, account.member_id, window_months=program.tier_window_months
    )
    reached = earned_tier(tiers, spend)
    if reached is not None and reached.rank > _rank(tiers, account.tier):
        account.tier = reached.code


async def review(
    session: AsyncSession, account: Account, program: Program, tiers: list[Tier]
) -> None:
    """Periodic review: up to the earned tier, or down one level at most; manual tiers hold."""
    now = clock.now()
    account.tier_reviewed_at = now
    if account.tier_manual_until is not None:
        if account.tier_manual_until > now:
            return
        account.tier_manual_until = None
    if not tiers:
        return
    spend = await qualifying_spend(
        session, account.member_id, window_months=program.tier_window_months
    )
    reached = earned_tier(tiers, spend)
    reached_rank = reached.rank if reached else -1
    current = _rank(tiers, account.tier)
    if reached_rank > current:
        account.tier = reached.code if reached else None
    elif reached_rank < current:
        account.tier = (
            next(t.code for t in tiers if t.rank == max(current - 1, 0))
            if current > 0
            else tiers[0].code
        )


async def review_due(session: AsyncSession, *, limit: int = 500) -> int:
    """Review the accounts whose last review is older than REVIEW_EVERY or whose manual tier
    has ended (worker job)."""
    now = clock.now()
    stmt = (
        select(Account)
        .where(
            or_(
                Account.tier_reviewed_at.is_(None),
                Account.tier_reviewed_at < now - REVIEW_EVERY,
                Account.tier_manual_until <= now,  # a lapsed manual tier is reviewed at once
            )
        )
        # a manual tier must lapse even for a member who never bought anything
        .where(or_(Account.purchases > 0, Account.tier.is_not(None)))
        .order_by(Account.member_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    accounts = list((await session.execute(stmt)).scalars())
    if not accounts:
        return 0
    program = await program_service.get_program(session)
    tiers = await program_service.list_tiers(session)
    for account in accounts:
        await review(session, account, program, tiers)
    await session.flush()
    return len(accounts)


async def set_manual(
    session: AsyncSession, account: Account, *, tier_code: str, until: datetime
) -> Account:
    """Give a member a tier by hand until a date; reviews leave it alone until then."""
    tiers = await program_service.list_tiers(session)
    if tier_by_code(tiers, tier_code) is None:
        raise TierNotFound()
    account.tier = tier_code
    account.tier_manual_until = clock.as_utc(until)
    await session.flush()
    return account


@dataclass(frozen=True)
class Progress:
    tier: program_service.TierLevel | None
    next: program_service.TierLevel | None
    spend: int

    @property
    def fraction(self) -> float:
        if self.next is None:
            return 1.0
        return min(1.0, self.spend / self.next.min_spend) if self.next.min_spend else 1.0


def progress(
    tiers: Sequence[program_service.TierLevel], account_tier: str | None, spend: int
) -> Progress:
    """Where a member stands on the ladder, given their qualifying spend."""
    current = tier_by_code(tiers, account_tier)
    rank = current.rank if current else -1
    upcoming = next((t for t in tiers if t.rank > rank), None)
    return Progress(current, upcoming, spend)
