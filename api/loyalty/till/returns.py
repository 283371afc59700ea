"""Returns: a return reverses exactly what the returned lines earned: earned(receipt) −
earned(lines kept), the kept lines priced by the pure rules with the receipt's original inputs;
never more than the receipt earned over all its returns."""

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.ledger.schemas import BalanceRead
from api.loyalty.program import rules
from api.loyalty.till import earning
from api.loyalty.till.exceptions import InvalidPurchase, PurchaseNotFound, ReturnExceedsPurchase
from api.loyalty.till.models import Purchase, PurchaseLine, PurchaseReturn
from api.loyalty.till.schemas import ReturnIn, ReturnResult


class ReturnNoReused(InvalidPurchase):
    """This return_no was already used for different lines."""


def _amount_for(
    line: PurchaseLine, wanted_quantity: Decimal | None, wanted_amount: int | None
) -> int:
    left = line.amount - line.returned_amount
    quantity_left = Decimal(line.quantity) - Decimal(line.returned_quantity)
    if left <= 0 and (line.amount > 0 or quantity_left <= 0):  # a free line counts by quantity
        raise ReturnExceedsPurchase(f"line {line.line_no}: everything was already returned")
    if wanted_amount is not None:
        amount = wanted_amount
    elif wanted_quantity is not None:
        if wanted_quantity > quantity_left:
            raise ReturnExceedsPurchase(f"line {line.line_no}: more quantity than was bought")
        # the last units take what is left, so returning every unit returns the whole amount
        amount = (
            left
            if wanted_quantity == quantity_left
            else int(line.amount * wanted_quantity // Decimal(line.quantity))
        )
    else:
        amount = left
    if amount > left:
        raise ReturnExceedsPurchase(f"line {line.line_no}: {amount} returned but only {left} left")
    return amount


async def _result(
    session: AsyncSession, done: PurchaseReturn, member_id: int | None
) -> ReturnResult:
    account = await session.get(Account, member_id) if member_id else None
    return ReturnResult(
        return_id=done.id,
        return_no=done.return_no,
        amount=done.amount,
        points_reversed=done.points_reversed,
        balance=BalanceRead(
            available=account.available if account else 0, pending=account.pending if account else 0
        ),
    )


async def process(
    session: AsyncSession, *, purchase_id: int, body: ReturnIn, terminal_id: int | None, actor: str
) -> ReturnResult:
    """Take back points for returned lines; the same return_no again returns the first result."""
    purchase = await session.get(Purchase, purchase_id)
    if purchase is None:
        raise PurchaseNotFound()
    account = await ledger.lock_account(session, purchase.member_id) if purchase.member_id else None
    # Re-read under lock (account first, like every balance change): a concurrent return or
    # claim of this receipt may have committed while we waited.
    purchase = await _locked_purchase(session, purchase_id)
    if purchase.member_id is not None and account is None:  # claimed while we waited
        account = await ledger.lock_account(session, purchase.member_id)
    requested = [ln.model_dump(mode="json") for ln in body.lines]
    prior = (
        await session.execute(
            select(PurchaseReturn).where(
                PurchaseReturn.purchase_id == purchase.id,
                PurchaseReturn.return_no == body.return_no,
            )
        )
    ).scalar_one_or_none()
    if prior is not None:
        if prior.lines != requested:
            raise ReturnNoReused()
        return await _result(session, prior, purchase.member_id)
    stmt = (
        select(PurchaseLine)
        .where(PurchaseLine.purchase_id == purchase.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    lines = {ln.line_no: ln for ln in (await session.execute(stmt)).scalars()}
    if len({ln.line_no for ln in body.lines}) != len(body.lines):
        raise InvalidPurchase("each line_no once per return")
    total_amount = 0
    proportional: dict[int, int] = {}  # receipts priced before their inputs were stored
    for wanted in body.lines:
        line = lines.get(wanted.line_no)
        if line is None:
            raise InvalidPurchase(f"the receipt has no line {wanted.line_no}")
        amount = _amount_for(line, wanted.quantity, wanted.amount)
        proportional[line.line_no] = rules.reversal(
            line.points, line.amount, line.returned_amount, amount
        )
        if wanted.quantity is not None:
            quantity = wanted.quantity
        elif line.amount:
            quantity = (Decimal(line.quantity) * amount / line.amount).quantize(Decimal("0.001"))
        else:  # a whole free line: what is left of it, by quantity
            quantity = Decimal(line.quantity) - Decimal(line.returned_quantity)
        line.returned_amount += amount
        line.returned_quantity = Decimal(line.returned_quantity) + quantity
        total_amount += amount
    exact = await _reversal_due(session, purchase, list(lines.values()))
    if exact is not None:  # the receipt's inputs are stored: recompute the kept lines
        points = _settle(purchase, list(lines.values()), *exact)
    else:
        for line_no, reversed_now in proportional.items():
            lines[line_no].points_reversed += reversed_now
        points = sum(proportional.values()) + rules.reversal(
            purchase.bonus_points, purchase.total, purchase.returned_total, total_amount
        )
    purchase.returned_total += total_amount
    purchase.points_reversed += points
    done = PurchaseReturn(
        purchase_id=purchase.id,
        return_no=body.return_no,
        amount=total_amount,
        points_reversed=points,
        lines=requested,
        terminal_id=terminal_id,
        created_at=clock.now(),
    )
    try:
        async with session.begin_nested():
            session.add(done)
    except IntegrityError:
        raise ReturnNoReused("this return_no is being processed; retry") from None
    if account is not None and points > 0:
        await _take_back(
            session,
            account,
            purchase,
            points,
            ledger.Source(
                "return",
                done.id,
                actor,
                f"return {body.return_no} of receipt {purchase.receipt_no}",
                purchase.store_id,
            ),
        )
    await session.flush()
    return await _result(session, done, purchase.member_id)


def _engine_line(line: PurchaseLine) -> rules.Line:
    return rules.Line(
        line_no=line.line_no,
        sku=line.sku,
        category=line.category,
        quantity=Decimal(line.quantity),
        amount=line.amount,
        fuel_grade=line.fuel_grade,
        volume_ml=line.volume_ml,
    )


async def _reversal_due(
    session: AsyncSession, purchase: Purchase, lines: list[PurchaseLine]
) -> tuple[int, dict[int, int]] | None:
    """Points the returns so far must have reversed in all: earned(receipt) − earned(lines
    kept), the kept lines priced by the pure rules with the receipt's stored inputs (rule
    versions, context, budgets and cap usage as they were), never more than was earned; and
    per line what it no longer earns. None for a receipt priced before inputs were stored."""
    if purchase.earning_inputs is None:
        return None
    kept = [
        k
        for ln in lines
        if (k := rules.kept_line(_engine_line(ln), ln.returned_amount, ln.returned_quantity))
    ]
    quote = await earning.recompute(session, purchase.earning_inputs, kept)
    if quote is None:
        return None
    due = min(purchase.points, max(0, purchase.points - quote.points))
    still = quote.points_by_line()
    per_line = {
        ln.line_no: min(ln.points, max(0, ln.points - still.get(ln.line_no, 0))) for ln in lines
    }
    return due, per_line


def _settle(
    purchase: Purchase, lines: list[PurchaseLine], due: int, per_line: dict[int, int]
) -> int:
    """Record the lines' share of what is reversed; the points to reverse now (never negative:
    a reversal is never given back)."""
    for line in lines:
        line.points_reversed = max(line.points_reversed, per_line.get(line.line_no, 0))
    return max(0, due - purchase.points_reversed)


async def _locked_purchase(session: AsyncSession, purchase_id: int) -> Purchase:
    stmt = (
        select(Purchase)
        .where(Purchase.id == purchase_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def _take_back(
    session: AsyncSession, account: Account, purchase: Purchase, points: int, source: ledger.Source
) -> None:
    """Reverse points: this receipt's own lots first, then pending lots, then available ones;
    whatever was already spent leaves the balance negative."""
    lot_ids = list(
        (
            await session.execute(
                select(LedgerEntry.id).where(
                    LedgerEntry.source_type == "purchase",
                    LedgerEntry.source_id == purchase.id,
                    LedgerEntry.kind == "earn",
                )
            )
        ).scalars()
    )
    await ledger.debit(
        session,
        account,
        kind="reverse",
        points=points,
        source=source,
        prefer_lot_ids=lot_ids,
        pending_first=True,
        allow_negative=True,
    )


async def reverse_earlier_returns(
    session: AsyncSession, *, account: Account, purchase: Purchase, actor: str
) -> int:
    """A receipt claimed after some of it came back keeps points only for what was kept."""
    lines = list(
        (
            await session.execute(
                select(PurchaseLine).where(PurchaseLine.purchase_id == purchase.id)
            )
        ).scalars()
    )
    if not any(ln.returned_amount or ln.returned_quantity for ln in lines):
        return 0
    exact = await _reversal_due(session, purchase, lines)
    if exact is not None:  # the same definition as a return after the claim
        points = _settle(purchase, lines, *exact)
    else:
        points = 0
        for line in lines:
            if line.returned_amount:
                reversed_now = rules.reversal(line.points, line.amount, 0, line.returned_amount)
                line.points_reversed += reversed_now
                points += reversed_now
        points += rules.reversal(purchase.bonus_points, purchase.total, 0, purchase.returned_total)
    purchase.points_reversed += points
    if points > 0:
        await _take_back(
            session,
            account,
            purchase,
            points,
            ledger.Source(
                "purchase",
                purchase.id,
                actor,
                f"returned before receipt {purchase.receipt_no} was claimed",
                purchase.store_id,
            ),
        )
    await session.flush()
    return points
