"""Receipts paid without the card, claimed later by the member in the app with the claim code
printed on the receipt: within the claim window, once, and only for what was not returned in
the meantime.

Every claim attempt is counted before anything is compared, per member and per receipt, in a
transaction of its own (`api.core.throttle` with `run_apart`), so parallel guesses cannot
outrun the count; a right claim gives its attempt back. Unknown receipts, wrong totals, wrong
codes and receipts already claimed all answer the same 404 ReceiptNotClaimable."""

import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock, security, throttle
from api.core.config import Settings
from api.core.db import end_reads, run_apart
from api.core.errors import DomainError
from api.core.idempotency import Once
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.schemas import BalanceRead
from api.loyalty.program import service as program_service
from api.loyalty.till import earning, purchases, returns
from api.loyalty.till import texts as t
from api.loyalty.till.exceptions import ClaimsLocked, ReceiptNotClaimable
from api.loyalty.till.models import Purchase, PurchaseLine
from api.loyalty.till.schemas import ClaimReceiptIn, PurchaseIn, PurchaseResult
from api.members.models import Member
from api.org import service as org_service

MEMBER_SCOPE = "claim_member"
RECEIPT_SCOPE = "claim_receipt"
# 5 failed claims lock the member out for 15 minutes, 5 on one receipt lock that receipt for
# an hour; each further lockout doubles, up to a day. A quiet day forgets the failures.
MEMBER_FAILURES = 5
RECEIPT_FAILURES = 5
MEMBER_LOCKOUT = throttle.Lockout(
    seconds=15 * 60, max_seconds=24 * 3600, forget_after=timedelta(hours=24)
)
RECEIPT_LOCKOUT = throttle.Lockout(
    seconds=60 * 60, max_seconds=24 * 3600, forget_after=timedelta(hours=24)
)

Reserved = tuple[throttle.Reservation, throttle.Reservation]


def _receipt_key(settings: Settings, store_code: str, receipt_no: str) -> str:
    # as typed, whether or not such a receipt exists: the throttle tells nothing about receipts
    return security.keyed_digest(settings.secret_key, f"claim:{store_code}:{receipt_no}")


def not_claimable() -> ReceiptNotClaimable:
    return ReceiptNotClaimable(t.text("receipt_not_claimable"))


async def count_attempt(
    session: AsyncSession, *, settings: Settings, member: Member, body: ClaimReceiptIn
) -> Reserved:
    """Count this claim against the member and the receipt, committed at once; 429
    ClaimsLocked (counting nothing) while either is locked out."""
    by_member = [throttle.Limit(MEMBER_SCOPE, str(member.id), MEMBER_FAILURES)]
    by_receipt = [
        throttle.Limit(
            RECEIPT_SCOPE,
            _receipt_key(settings, body.store_code, body.receipt_no),
            RECEIPT_FAILURES,
        )
    ]

    async def work(fresh: AsyncSession) -> Reserved:
        return (
            await throttle.reserve(fresh, by_member, MEMBER_LOCKOUT),
            await throttle.reserve(fresh, by_receipt, RECEIPT_LOCKOUT),
        )

    await end_reads(session)  # only the sign-in was read: the count runs in its own transaction
    try:
        return await run_apart(session, work)
    except throttle.Locked as locked:
        wait = t.wait_text(locked.retry_after)
        raise ClaimsLocked(
            t.text("claims_locked", wait=wait), retry_after=locked.retry_after
        ) from None


async def claim_counted(
    session: AsyncSession, *, settings: Settings, member: Member, body: ClaimReceiptIn, once: Once
) -> PurchaseResult:
    """Count the attempt, then claim (once per Idempotency-Key); a right claim, or the replay
    of one, gives its attempt back."""
    reserved = await count_attempt(session, settings=settings, member=member, body=body)

    async def work() -> PurchaseResult:
        return await claim(
            session,
            settings=settings,
            member=member,
            store_code=body.store_code,
            receipt_no=body.receipt_no,
            total=body.total,
            claim_code=body.claim_code,
        )

    result = await once(work, body=body)
    for reservation in reserved:
        await throttle.succeeded(session, reservation)
    return result


async def claim(
    session: AsyncSession,
    *,
    settings: Settings,
    member: Member,
    store_code: str,
    receipt_no: str,
    total: int,
    claim_code: str,
) -> PurchaseResult:
    """A member claims a receipt posted without a card with its claim code, within the claim
    window, once. Every refusal is the same 404 (count attempts with `count_attempt` first)."""
    program = await program_service.get_program(session)
    try:
        store = await org_service.get_store_by_code(session, store_code)
    except DomainError as e:
        raise not_claimable() from e
    presented = purchases.claim_code_digest(settings, store.id, receipt_no, claim_code)
    account = await ledger.lock_account(session, member.id)
    stmt = (
        select(Purchase)
        .where(Purchase.store_id == store.id, Purchase.receipt_no == receipt_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    purchase = (await session.execute(stmt)).scalar_one_or_none()
    stored = purchase.claim_code_hash if purchase is not None else None
    right_code = secrets.compare_digest(stored or "", presented)
    if purchase is None or not right_code or purchase.total != total:
        raise not_claimable()
    if purchase.member_id is not None:
        raise not_claimable()
    if purchase.occurred_at < clock.now() - timedelta(days=program.claim_window_days):
        raise ReceiptNotClaimable("the claim window for this receipt has closed")
    lines = list(
        (
            await session.execute(
                select(PurchaseLine)
                .where(PurchaseLine.purchase_id == purchase.id)
                .order_by(PurchaseLine.line_no)
            )
        ).scalars()
    )
    body = PurchaseIn(
        receipt_no=purchase.receipt_no,
        currency=purchase.currency,
        total=purchase.total,
        lines=[
            {
                "line_no": ln.line_no,
                "sku": ln.sku,
                "category": ln.category,
                "quantity": ln.quantity,
                "amount": ln.amount,
                "fuel_grade": ln.fuel_grade,
                "volume_ml": ln.volume_ml,
            }
            for ln in lines
        ],
    )
    evaluation = await earning.evaluate(
        session,
        program=program,
        store=store,
        member=member,
        account=account,
        body=body,
        occurred_at=purchase.occurred_at,
        lock_budgets=True,
    )
    purchase.member_id = member.id
    purchase.claimed_at = clock.now()
    purchases.price_lines(purchase, lines, evaluation)
    await session.flush()  # the tier's qualifying spend must count this receipt as the member's
    actor = f"member:{member.id}"
    await purchases.earn_purchase(
        session,
        account=account,
        purchase=purchase,
        evaluation=evaluation,
        program=program,
        actor=actor,
    )
    await returns.reverse_earlier_returns(session, account=account, purchase=purchase, actor=actor)
    return PurchaseResult(
        purchase_id=purchase.id,
        receipt_no=purchase.receipt_no,
        member_id=member.id,
        points=earning.points_block(evaluation),
        balance=BalanceRead(available=account.available, pending=account.pending),
        tier=account.tier,
    )
