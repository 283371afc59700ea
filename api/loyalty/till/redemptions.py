"""Points spent at the till: reserve, then confirm or cancel; lapsed reservations are released.

Lock order (PostgreSQL): the redemption row, then the member's account.
"""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.core.db import failure_hooks_mark, forget_failure_hooks
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.exceptions import InsufficientPoints
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.ledger.schemas import BalanceRead
from api.loyalty.program import service as program_service
from api.loyalty.till import texts as t
from api.loyalty.till.context import Till
from api.loyalty.till.exceptions import (
    BelowMinimumRedemption,
    RedemptionNotFound,
    RedemptionSettled,
    ReservationExpired,
    ReservationOpen,
    RotatingCodeRequired,
    SpendingBlocked,
)
from api.loyalty.till.models import Redemption
from api.loyalty.till.schemas import RedemptionIn, RedemptionRead, RedemptionSettledRead
from api.members import cards, identity
from api.members import service as members_service
from api.members.exceptions import CodeReplayed
from api.members.models import Member

RELEASE_BATCH = 200


def check_spendable(account: Account, points: int) -> None:
    """Refuse a spend from a negative balance (left by a return) or beyond what is available."""
    if account.available < 0:
        raise SpendingBlocked(f"the balance is {account.available}; spending is blocked")
    if account.available < points:
        raise InsufficientPoints(f"{points} points asked, {account.available} available")


async def reserve(
    session: AsyncSession, *, settings: Settings, till: Till, body: RedemptionIn
) -> RedemptionRead:
    """Hold points for the till until it confirms or cancels, or the reservation lapses."""
    assert till.terminal_id is not None
    program = await program_service.get_program(session)
    mark = failure_hooks_mark(session)
    try:
        found = await identity.resolve_member_code(
            session, settings=settings, terminal_id=till.terminal_id, code=body.member_code
        )
    except CodeReplayed:
        # The till retrying a reservation whose answer it lost, with the code it scanned.
        member = await _member_of_payload(session, body.member_code) if body.receipt_no else None
        if member is None:
            raise
        await ledger.lock_account(session, member.id)
        held = await _open_hold(session, till=till, body=body, member_id=member.id)
        if held is None:
            raise
        forget_failure_hooks(session, mark)  # a retry, not a guess
        return held
    if not (found.can_redeem or program.static_card_can_spend):
        raise RotatingCodeRequired()
    if body.points < program.min_redemption:
        raise BelowMinimumRedemption(f"at least {program.min_redemption} points per redemption")
    account = await ledger.lock_account(session, found.member.id)
    if body.receipt_no:  # one open hold per receipt, member and store, without any key
        held = await _open_hold(session, till=till, body=body, member_id=found.member.id)
        if held is not None:
            return held
    check_spendable(account, body.points)
    now = clock.now()
    redemption = Redemption(
        member_id=account.member_id,
        store_id=till.store.id,
        terminal_id=till.terminal_id,
        points=body.points,
        value=body.points * program.redeem_value // program.redeem_points,
        receipt_no=body.receipt_no,
        status="reserved",
        reserve_entry_id=0,  # set below, once the reserve entry exists
        expires_at=now + timedelta(minutes=program.reservation_minutes),
        created_at=now,
    )
    session.add(redemption)
    await session.flush()
    entry = await ledger.debit(
        session,
        account,
        kind="reserve",
        points=body.points,
        source=ledger.Source(
            "redemption", redemption.id, till.actor, "points redeemed at the till", till.store.id
        ),
        detail={"receipt_no": body.receipt_no} if body.receipt_no else None,
    )
    redemption.reserve_entry_id = entry.id
    await session.flush()
    return RedemptionRead.model_validate(redemption)


async def _member_of_payload(session: AsyncSession, code: str) -> Member | None:
    parsed = cards.parse_payload(code.strip())
    return await members_service.find_by_card(session, parsed.card_number) if parsed else None


async def _open_hold(
    session: AsyncSession, *, till: Till, body: RedemptionIn, member_id: int
) -> RedemptionRead | None:
    """The open reservation of this receipt for this member at this store (call under the
    account lock): the same points → it again; other points → 409 ReservationOpen."""
    stmt = (
        select(Redemption)
        .where(
            Redemption.store_id == till.store.id,
            Redemption.receipt_no == body.receipt_no,
            Redemption.member_id == member_id,
            Redemption.status == "reserved",
            Redemption.expires_at > clock.now(),
        )
        .order_by(Redemption.id.desc())
        .limit(1)
    )
    held = (await session.execute(stmt)).scalar_one_or_none()
    if held is None:
        return None
    if held.points != body.points:
        raise ReservationOpen(
            t.text(
                "reservation_open",
                receipt_no=body.receipt_no,
                points=held.points,
                redemption_id=held.id,
            ),
            redemption_id=held.id,
        )
    return RedemptionRead.model_validate(held)


async def _locked(session: AsyncSession, redemption_id: int, store_id: int) -> Redemption:
    stmt = (
        select(Redemption)
        .where(Redemption.id == redemption_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    redemption = (await session.execute(stmt)).scalar_one_or_none()
    if redemption is None or redemption.store_id != store_id:
        raise RedemptionNotFound()
    return redemption


async def _settled(session: AsyncSession, redemption: Redemption) -> RedemptionSettledRead:
    account = await session.get(Account, redemption.member_id)
    assert account is not None
    return RedemptionSettledRead(
        id=redemption.id,
        status=redemption.status,
        points=redemption.points,
        value=redemption.value,
        balance=BalanceRead(available=account.available, pending=account.pending),
    )


async def _release(
    session: AsyncSession, account: Account, redemption: Redemption, *, actor: str, reason: str
) -> None:
    burn = await session.get(LedgerEntry, redemption.reserve_entry_id)
    assert burn is not None
    await ledger.restore(
        session,
        account,
        burn=burn,
        source=ledger.Source("redemption", redemption.id, actor, reason, redemption.store_id),
    )


async def confirm(
    session: AsyncSession, *, till: Till, redemption_id: int
) -> RedemptionSettledRead:
    """Spend the reserved points; confirming twice returns the confirmed redemption."""
    redemption = await _locked(session, redemption_id, till.store.id)
    if redemption.status == "confirmed":
        return await _settled(session, redemption)
    if redemption.status == "cancelled":
        raise RedemptionSettled("the redemption was cancelled")
    if redemption.status == "expired" or redemption.expires_at <= clock.now():
        raise ReservationExpired()
    redemption.status = "confirmed"
    redemption.settled_at = clock.now()
    await session.flush()
    return await _settled(session, redemption)


async def cancel(session: AsyncSession, *, till: Till, redemption_id: int) -> RedemptionSettledRead:
    """Give the reserved points back to the lots they came from; a confirmed one stays spent.

    Cancelling twice returns the cancelled redemption; one that already lapsed reports
    `expired` (its points are back either way).
    """
    redemption = await _locked(session, redemption_id, till.store.id)
    if redemption.status == "confirmed":
        raise RedemptionSettled("the redemption was confirmed; its points are spent")
    if redemption.status == "reserved":
        account = await ledger.lock_account(session, redemption.member_id)
        await _release(
            session, account, redemption, actor=till.actor, reason="cancelled at the till"
        )
        redemption.status = "cancelled"
        redemption.settled_at = clock.now()
        await session.flush()
    return await _settled(session, redemption)


async def release_lapsed(session: AsyncSession) -> int:
    """Worker: give back the points of reservations nobody confirmed or cancelled in time."""
    now = clock.now()
    stmt = (
        select(Redemption)
        .where(Redemption.status == "reserved", Redemption.expires_at <= now)
        .order_by(Redemption.id)
        .limit(RELEASE_BATCH)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    lapsed = list((await session.execute(stmt)).scalars())
    accounts = {}
    for member_id in sorted({r.member_id for r in lapsed}):
        accounts[member_id] = await ledger.lock_account(session, member_id)
    for redemption in lapsed:
        await _release(
            session,
            accounts[redemption.member_id],
            redemption,
            actor="system",
            reason="reservation lapsed",
        )
        redemption.status = "expired"
        redemption.settled_at = now
    await session.flush()
    return len(lapsed)


async def read_back(session: AsyncSession, *, till: Till, redemption_id: int) -> RedemptionRead:
    """A redemption of this store (404 RedemptionNotFound for another store's)."""
    redemption = await session.get(Redemption, redemption_id)
    if redemption is None or redemption.store_id != till.store.id:
        raise RedemptionNotFound()
    return RedemptionRead.model_validate(redemption)
