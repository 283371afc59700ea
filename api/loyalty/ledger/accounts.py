"""A member's points account as the member and staff see it, and manual adjustments."""

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger import tiers
from api.loyalty.ledger.exceptions import InsufficientPoints
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.ledger.schemas import ExpiringRead, PointsRead, TierProgress
from api.loyalty.program import service as program_service

_ACCOUNT_AND_SPEND = select(Account, tiers.QUALIFYING_SPEND.scalar_subquery()).where(
    Account.member_id == bindparam("member_id")
)


@dataclass(frozen=True)
class Balance:
    available: int
    pending: int
    tier: str | None


async def balance_of(session: AsyncSession, member_id: int) -> Balance:
    account = await session.get(Account, member_id)
    if account is None:
        return Balance(0, 0, None)
    return Balance(account.available, account.pending, account.tier)


async def points_view(session: AsyncSession, member_id: int) -> PointsRead:
    """Balance, its money value, what expires when, and progress to the next tier."""
    program = await program_service.get_program(session)
    window = tiers.spend_window(member_id, window_months=program.tier_window_months)
    row = (await session.execute(_ACCOUNT_AND_SPEND, {"member_id": member_id, **window})).first()
    account, qualifying = (row[0], int(row[1])) if row else (None, 0)
    available = account.available if account else 0
    ladder = (await program_service.earning(session, program)).tiers
    progress = tiers.progress(ladder, account.tier if account else None, qualifying)
    return PointsRead(
        available=available,
        pending=account.pending if account else 0,
        value=max(available, 0) * program.redeem_value // program.redeem_points,
        currency=program.currency,
        expiring=[
            ExpiringRead(points=p, expires_at=at)
            for p, at in await ledger.expiring(session, member_id)
        ],
        tier=TierProgress(
            name=progress.tier.name if progress.tier else None,
            code=progress.tier.code if progress.tier else None,
            next=progress.next.name if progress.next else None,
            next_code=progress.next.code if progress.next else None,
            qualifying_spend=progress.spend,
            next_min_spend=progress.next.min_spend if progress.next else None,
            progress=round(progress.fraction, 4),
            manual_until=account.tier_manual_until if account else None,
        ),
    )


async def adjust(
    session: AsyncSession, *, member_id: int, points: int, reason: str, actor: str
) -> LedgerEntry:
    """A manual correction with a reason; additions expire like earned points."""
    program = await program_service.get_program(session)
    account = await ledger.lock_account(session, member_id)
    source = ledger.Source("adjustment", None, actor, reason)
    if points > 0:
        return await ledger.credit(
            session,
            account,
            kind="adjust",
            points=points,
            source=source,
            expires_at=ledger.expiry_for(clock.now(), program.expiry_months, program.timezone),
        )
    if account.available < -points:
        raise InsufficientPoints(f"only {account.available} points available to take back")
    return await ledger.debit(session, account, kind="adjust", points=-points, source=source)
