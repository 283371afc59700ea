"""The points ledger: append-only entries, earn lots, burns that record the lots they used,
and the cached balance on the account, changed in the same transaction under a row lock.

Invariants (proved by `loyalty ledger-check` and the tests):
- account.available + account.pending == SUM(entry.points) for the member;
- account.pending == SUM(remaining) of the member's lots that have not matured;
- max(account.available, 0) == SUM(remaining) of matured lots (a negative balance, left by a
  return of points already spent, owns no lots and is repaid first by the next points).
"""

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.pagination import PageParams, Slice, make_page
from api.loyalty.ledger.exceptions import InsufficientPoints
from api.loyalty.ledger.models import Account, LedgerEntry, LotUse
from api.loyalty.program import service as program_service


@dataclass(frozen=True)
class Source:
    """What caused a movement, who did it and why."""

    type: str
    id: int | None = None
    actor: str = "system"
    reason: str | None = None
    store_id: int | None = None


_LOCK_ACCOUNT = (  # built once: every balance change takes this lock
    select(Account)
    .where(Account.member_id == bindparam("member_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def lock_account(session: AsyncSession, member_id: int) -> Account:
    """The member's account, created if missing, locked FOR UPDATE until the transaction ends.

    On SQLite the write transaction (BEGIN IMMEDIATE) already serialises writers. The row is
    re-read even if this session loaded it before the lock, so no stale balance is written back.
    """
    account = (await session.execute(_LOCK_ACCOUNT, {"member_id": member_id})).scalar_one_or_none()
    if account is not None:
        return account
    try:
        async with session.begin_nested():
            session.add(
                Account(member_id=member_id, available=0, pending=0, updated_at=clock.now())
            )
    except IntegrityError:
        pass
    return (await session.execute(_LOCK_ACCOUNT, {"member_id": member_id})).scalar_one()


def expiry_for(earned_at: datetime, months: int | None, timezone: str) -> datetime | None:
    """`months` after earning, at the end of that month in the programme's time zone."""
    if months is None:
        return None
    local = earned_at.astimezone(ZoneInfo(timezone))
    month_index = local.month - 1 + months
    year, month = local.year + month_index // 12, month_index % 12 + 1
    last_day = calendar.monthrange(year, month)[1]
    end = datetime.combine(
        local.date().replace(year=year, month=month, day=last_day) + timedelta(days=1),
        time.min,
        tzinfo=local.tzinfo,
    )
    return end.astimezone(clock.now().tzinfo)


def _entry(member_id: int, kind: str, points: int, source: Source, **extra: Any) -> LedgerEntry:
    return LedgerEntry(
        member_id=member_id,
        kind=kind,
        points=points,
        remaining=extra.pop("remaining", 0),
        matured=extra.pop("matured", True),
        source_type=source.type,
        source_id=source.id,
        store_id=source.store_id,
        actor=source.actor,
        reason=source.reason,
        created_at=clock.now(),
        **extra,
    )


def _repay_debt(account: Account, lot: LedgerEntry) -> None:
    """Points landing in `available` first cover a negative balance."""
    if account.available < 0 and lot.remaining > 0:
        repaid = min(lot.remaining, -account.available)
        lot.remaining -= repaid
        detail = lot.detail or {}
        lot.detail = {**detail, "repaid_debt": detail.get("repaid_debt", 0) + repaid}


async def credit(
    session: AsyncSession,
    account: Account,
    *,
    kind: str,
    points: int,
    source: Source,
    available_at: datetime | None = None,
    expires_at: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> LedgerEntry:
    """Add a lot of `points` (earn or a positive adjust), pending until `available_at`."""
    now = clock.now()
    matured = available_at is None or available_at <= now
    lot = _entry(
        account.member_id,
        kind,
        points,
        source,
        remaining=points,
        matured=matured,
        available_at=available_at,
        expires_at=expires_at,
        detail=detail,
    )
    if matured:
        _repay_debt(account, lot)
        account.available += points
    else:
        account.pending += points
    account.updated_at = now
    session.add(lot)
    await session.flush()
    return lot


async def _lots(
    session: AsyncSession, member_id: int, *, matured: bool | None, exclude: Sequence[int] = ()
) -> list[LedgerEntry]:
    stmt = select(LedgerEntry).where(LedgerEntry.member_id == member_id, LedgerEntry.remaining > 0)
    if matured is not None:
        stmt = stmt.where(LedgerEntry.matured.is_(matured))
    if exclude:
        stmt = stmt.where(LedgerEntry.id.not_in(exclude))
    stmt = stmt.order_by(
        case((LedgerEntry.expires_at.is_(None), 1), else_=0), LedgerEntry.expires_at, LedgerEntry.id
    ).execution_options(populate_existing=True)
    return list((await session.execute(stmt)).scalars())


async def debit(
    session: AsyncSession,
    account: Account,
    *,
    kind: str,
    points: int,
    source: Source,
    prefer_lot_ids: Sequence[int] = (),
    pending_first: bool = False,
    allow_negative: bool = False,
    detail: dict[str, Any] | None = None,
) -> LedgerEntry:
    """Take `points` from lots: preferred lots, then (pending lots first when asked) the
    soonest-expiring available lots, never-expiring last. Any shortfall makes the balance
    negative when allowed, else raises InsufficientPoints."""
    if points <= 0:
        raise ValueError("debit needs a positive amount")
    if not allow_negative and account.available < points:
        raise InsufficientPoints()
    preferred = []
    if prefer_lot_ids:
        stmt = select(LedgerEntry).where(
            LedgerEntry.id.in_(prefer_lot_ids),
            LedgerEntry.member_id == account.member_id,
            LedgerEntry.remaining > 0,
        )
        preferred = list(
            (await session.execute(stmt.execution_options(populate_existing=True))).scalars()
        )
    seen = [lot.id for lot in preferred]
    pending = (
        await _lots(session, account.member_id, matured=False, exclude=seen)
        if pending_first
        else []
    )
    available = await _lots(session, account.member_id, matured=True, exclude=seen)
    entry = _entry(account.member_id, kind, -points, source, detail=detail)
    session.add(entry)
    await session.flush()
    left = points
    for lot in [*preferred, *pending, *available]:
        if left == 0:
            break
        take = min(left, lot.remaining)
        lot.remaining -= take
        left -= take
        if lot.matured:
            account.available -= take
        else:
            account.pending -= take
        session.add(LotUse(entry_id=entry.id, lot_id=lot.id, points=take))
    if left:
        account.available -= left  # only reached with allow_negative
        entry.detail = {**(entry.detail or {}), "unbacked": left}
    account.updated_at = clock.now()
    await session.flush()
    return entry


async def restore(
    session: AsyncSession, account: Account, *, burn: LedgerEntry, source: Source
) -> LedgerEntry:
    """Undo a burn (cancelled reservation, refunded coupon): its lots get their points back."""
    uses = list((await session.execute(select(LotUse).where(LotUse.entry_id == burn.id))).scalars())
    entry = _entry(account.member_id, "release", -burn.points, source, detail={"restores": burn.id})
    session.add(entry)
    for use in uses:
        lot = await session.get(LedgerEntry, use.lot_id, populate_existing=True)
        assert lot is not None
        lot.remaining += use.points
        if lot.matured:
            _repay_debt(account, lot)
            account.available += use.points
        else:
            account.pending += use.points
    account.available += (burn.detail or {}).get("unbacked", 0)
    account.updated_at = clock.now()
    await session.flush()
    return entry


async def mature(session: AsyncSession, account: Account, lot: LedgerEntry) -> None:
    """A pending lot becomes spendable."""
    if lot.matured:
        return
    points = lot.remaining
    lot.matured = True
    account.pending -= points
    _repay_debt(account, lot)
    account.available += points
    account.updated_at = clock.now()
    await session.flush()


async def history(session: AsyncSession, member_id: int, *, page: PageParams) -> Slice[LedgerEntry]:
    """The member's ledger, newest first."""
    stmt = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
    if page.before_id is not None:
        stmt = stmt.where(LedgerEntry.id < page.before_id)
    rows = list(
        (
            await session.execute(stmt.order_by(LedgerEntry.id.desc()).limit(page.limit + 1))
        ).scalars()
    )
    return make_page(rows, page.limit, lambda e: e.id)


async def expiring(
    session: AsyncSession, member_id: int, *, limit: int = 12
) -> list[tuple[int, datetime]]:
    """Unspent points per expiry date, soonest first."""
    stmt = (
        select(func.sum(LedgerEntry.remaining), LedgerEntry.expires_at)
        .where(
            LedgerEntry.member_id == member_id,
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at.is_not(None),
        )
        .group_by(LedgerEntry.expires_at)
        .order_by(LedgerEntry.expires_at)
        .limit(limit)
    )
    return [(int(points), at) for points, at in (await session.execute(stmt)).all()]


@program_service.register_in_use_check
async def has_entries(session: AsyncSession) -> bool:
    """Whether any ledger entry exists (the programme's currency is then fixed)."""
    return (await session.execute(select(LedgerEntry.id).limit(1))).first() is not None
