"""Receipts paid without the card, claimed later by the member in the app: within the claim
window, once, and only for what was not returned in the meantime."""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.errors import DomainError
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.schemas import BalanceRead
from api.loyalty.program import service as program_service
from api.loyalty.till import earning, purchases, returns
from api.loyalty.till.exceptions import ReceiptAlreadyClaimed, ReceiptNotClaimable
from api.loyalty.till.models import Purchase, PurchaseLine
from api.loyalty.till.schemas import PurchaseIn, PurchaseResult
from api.members.models import Member
from api.org import service as org_service


async def claim(
    session: AsyncSession, *, member: Member, store_code: str, receipt_no: str, total: int
) -> PurchaseResult:
    """A member claims a receipt posted without a card, within the claim window, once."""
    program = await program_service.get_program(session)
    try:
        store = await org_service.get_store_by_code(session, store_code)
    except DomainError as e:
        raise ReceiptNotClaimable() from e
    account = await ledger.lock_account(session, member.id)
    stmt = (
        select(Purchase)
        .where(Purchase.store_id == store.id, Purchase.receipt_no == receipt_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    purchase = (await session.execute(stmt)).scalar_one_or_none()
    if purchase is None or purchase.total != total:
        raise ReceiptNotClaimable()
    if purchase.member_id is not None:
        raise ReceiptAlreadyClaimed()
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
