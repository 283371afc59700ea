"""Worker jobs of the points ledger: pending lots mature, due lots expire, tiers are reviewed.

Each job claims accounts (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of workers
share the work) before it touches their lots: account first, then lots, the same lock order as
every request, so a job never deadlocks with the till. An account busy elsewhere is skipped and
picked up by the next pass.
"""

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger import tiers
from api.loyalty.ledger.models import Account, LedgerEntry

BATCH = 200


async def _claim_accounts(session: AsyncSession, due: Select[tuple[int]], limit: int) -> list[int]:
    """Lock up to `limit` accounts with due lots that no other worker holds; their member ids."""
    stmt = (
        select(Account.member_id)
        .where(Account.member_id.in_(due))
        .order_by(Account.member_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(stmt)).scalars())


async def _due_lots(
    session: AsyncSession, member_id: int, *conditions: ColumnElement[bool]
) -> list[LedgerEntry]:
    stmt = (
        select(LedgerEntry)
        .where(LedgerEntry.member_id == member_id, *conditions)
        .order_by(LedgerEntry.expires_at, LedgerEntry.id)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def mature_pending(session: AsyncSession, *, limit: int = BATCH) -> int:
    """Pending lots whose available_at has come become spendable; returns lots matured."""
    now = clock.now()
    due = (LedgerEntry.matured.is_(False), LedgerEntry.available_at <= now)
    members = await _claim_accounts(session, select(LedgerEntry.member_id).where(*due), limit)
    done = 0
    for member_id in members:
        account = await ledger.lock_account(session, member_id)
        for lot in await _due_lots(session, member_id, *due):
            await ledger.mature(session, account, lot)
            done += 1
    return done


async def expire_lots(session: AsyncSession, *, limit: int = BATCH) -> int:
    """Unspent points of lots past their expires_at leave the balance as `expire` entries."""
    now = clock.now()
    due = (LedgerEntry.remaining > 0, LedgerEntry.expires_at <= now)
    members = await _claim_accounts(session, select(LedgerEntry.member_id).where(*due), limit)
    done = 0
    for member_id in members:
        account = await ledger.lock_account(session, member_id)
        for lot in await _due_lots(session, member_id, *due):
            await ledger.debit(
                session,
                account,
                kind="expire",
                points=lot.remaining,
                source=ledger.Source("expiry", lot.id, "system", "points expired", lot.store_id),
                prefer_lot_ids=[lot.id],
                allow_negative=True,
                detail={"lot_id": lot.id},
            )
            done += 1
    return done


async def review_tiers(session: AsyncSession, *, limit: int = BATCH) -> int:
    """Periodic tier review of the accounts that are due (at most one level down each)."""
    return await tiers.review_due(session, limit=limit)
