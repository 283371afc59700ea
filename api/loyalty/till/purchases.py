"""Receipts from the till: quote, post, offline batches and later claims by the member."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.core.db import failure_hooks_mark, forget_failure_hooks, insert_unless_exists
from api.core.errors import DomainError
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger import tiers
from api.loyalty.ledger.models import Account
from api.loyalty.ledger.schemas import BalanceRead
from api.loyalty.program import service as program_service
from api.loyalty.program.models import Program
from api.loyalty.till import earning
from api.loyalty.till.context import Till
from api.loyalty.till.exceptions import CurrencyMismatch, DuplicateReceipt, InvalidPurchase
from api.loyalty.till.models import Purchase, PurchaseLine, RuleAward
from api.loyalty.till.schemas import AwardRead, BatchItem, PurchaseIn, PurchaseResult, QuoteResult
from api.members import identity
from api.members import service as members_service
from api.members.exceptions import CodeExpired, CodeReplayed
from api.members.models import Member

CLOCK_SKEW = timedelta(minutes=5)
OLDEST_RECEIPT = timedelta(days=90)


def _check(body: PurchaseIn, program: Program) -> datetime:
    now = clock.now()
    if body.currency != program.currency:
        raise CurrencyMismatch(f"this programme runs in {program.currency}, not {body.currency}")
    if body.total > program.max_receipt_total:
        raise InvalidPurchase(f"a receipt total above {program.max_receipt_total} is not plausible")
    occurred_at = clock.as_utc(body.occurred_at) if body.occurred_at else now
    if occurred_at > now + CLOCK_SKEW:
        raise InvalidPurchase("occurred_at is in the future")
    if occurred_at < now - OLDEST_RECEIPT:
        raise InvalidPurchase("receipts older than 90 days cannot be posted")
    return occurred_at


async def _member_for(
    session: AsyncSession, settings: Settings, till: Till, body: PurchaseIn
) -> Member | None:
    if body.member_code:
        if till.terminal_id is None:
            raise InvalidPurchase("member_code needs a terminal; give member_id")
        found = await identity.resolve_member_code(
            session, settings=settings, terminal_id=till.terminal_id, code=body.member_code
        )
        return found.member
    if body.member_id is not None:
        return await members_service.get_member(session, body.member_id)
    return None


async def quote(
    session: AsyncSession, *, settings: Settings, till: Till, body: PurchaseIn
) -> QuoteResult:
    """Exactly what posting this receipt would earn; nothing is stored (not even a used code)."""
    savepoint = await session.begin_nested()
    try:
        program = await program_service.get_program(session)
        occurred_at = _check(body, program)
        member = await _member_for(session, settings, till, body)
        account = await session.get(Account, member.id) if member else None
        evaluation = await earning.evaluate(
            session,
            program=program,
            store=till.store,
            member=member,
            account=account,
            body=body,
            occurred_at=occurred_at,
        )
        return QuoteResult(
            member_id=member.id if member else None, points=earning.points_block(evaluation)
        )
    finally:
        await savepoint.rollback()


async def find_receipt(session: AsyncSession, store_id: int, receipt_no: str) -> Purchase | None:
    stmt = select(Purchase).where(Purchase.store_id == store_id, Purchase.receipt_no == receipt_no)
    return (await session.execute(stmt)).scalar_one_or_none()


def price_lines(
    purchase: Purchase, lines: Iterable[PurchaseLine], evaluation: earning.Evaluation
) -> None:
    """Write the evaluation's points onto the receipt and its lines."""
    quote_ = evaluation.quote
    per_line = quote_.points_by_line()
    for line in lines:
        line.points = per_line.get(line.line_no, 0)
    purchase.points, purchase.bonus_points = quote_.points, quote_.bonus_points
    purchase.breakdown = [AwardRead(**a.__dict__).model_dump() for a in quote_.awards]


async def earn_purchase(
    session: AsyncSession,
    *,
    account: Account,
    purchase: Purchase,
    evaluation: earning.Evaluation,
    program: Program,
    actor: str,
) -> None:
    """Credit a priced purchase (`price_lines`): rule awards and budgets, the lot, the tier."""
    quote_ = evaluation.quote
    awarded: dict[int, int] = {}
    for award in quote_.awards:
        if award.rule_id is not None and award.points:
            awarded[award.rule_id] = awarded.get(award.rule_id, 0) + award.points
    session.add_all(
        RuleAward(
            member_id=account.member_id,
            rule_id=rule_id,
            purchase_id=purchase.id,
            points=points,
            occurred_at=evaluation.occurred_at,
        )
        for rule_id, points in awarded.items()
    )
    for rule_id, points in awarded.items():
        budgeted = evaluation.budget_rules.get(rule_id)
        if budgeted is not None and budgeted.budget is not None:
            budgeted.budget_used += points
    account.purchases += 1
    if account.last_purchase_at is None or evaluation.occurred_at > account.last_purchase_at:
        account.last_purchase_at = evaluation.occurred_at
    await tiers.upgrade_after_purchase(session, account, program)
    if quote_.points > 0:
        await ledger.credit(
            session,
            account,
            kind="earn",
            points=quote_.points,
            source=ledger.Source(
                "purchase", purchase.id, actor, f"receipt {purchase.receipt_no}", purchase.store_id
            ),
            available_at=evaluation.available_at,
            expires_at=evaluation.expires_at,
            detail={
                "receipt_no": purchase.receipt_no,
                "breakdown": purchase.breakdown,
                "rules": evaluation.rule_versions,
                "program_version": program.version,
            },
        )
    await session.flush()


def _row(obj: Any) -> dict[str, Any]:
    """A new ORM object's set columns, for a Core INSERT."""
    return {
        column.key: value
        for column in obj.__table__.columns
        if (value := getattr(obj, column.key)) is not None
    }


async def _insert(session: AsyncSession, purchase: Purchase, lines: list[PurchaseLine]) -> Purchase:
    """The receipt and its lines in two statements, or DuplicateReceipt if (store, receipt_no)
    exists or was just committed by a concurrent post."""
    stmt = insert_unless_exists(session, Purchase, "store_id", "receipt_no").returning(Purchase)
    inserted = (await session.execute(stmt, [_row(purchase)])).scalar_one_or_none()
    if inserted is None:
        existing = await find_receipt(session, purchase.store_id, purchase.receipt_no)
        raise DuplicateReceipt(purchase_id=existing.id if existing else None)
    for line in lines:
        line.purchase_id = inserted.id
    await session.execute(insert(PurchaseLine), [_row(line) for line in lines])
    return inserted


async def record(
    session: AsyncSession, *, settings: Settings, till: Till, body: PurchaseIn
) -> PurchaseResult:
    """Store a receipt and credit its points; the same (store, receipt_no) twice is refused."""
    program = await program_service.get_program(session)
    occurred_at = _check(body, program)
    mark = failure_hooks_mark(session)
    try:
        member = await _member_for(session, settings, till, body)
    except DomainError as error:
        # A retried post of a stored receipt (its rotating code now spent) must still hear
        # DuplicateReceipt with the first purchase id; the lookup is paid on this path only.
        existing = await find_receipt(session, till.store.id, body.receipt_no)
        if existing is None:
            raise
        if isinstance(error, CodeReplayed | CodeExpired):
            forget_failure_hooks(session, mark)  # a till's retry, not a guess: no lock-out
        raise DuplicateReceipt(purchase_id=existing.id) from None
    account = await ledger.lock_account(session, member.id) if member else None
    evaluation = await earning.evaluate(
        session,
        program=program,
        store=till.store,
        member=member,
        account=account,
        body=body,
        occurred_at=occurred_at,
        lock_budgets=True,
    )
    purchase = Purchase(
        store_id=till.store.id,
        terminal_id=till.terminal_id,
        receipt_no=body.receipt_no,
        member_id=member.id if member else None,
        occurred_at=occurred_at,
        currency=body.currency,
        total=body.total,
        returned_total=0,
        points_reversed=0,
        created_at=clock.now(),
    )
    lines = [
        PurchaseLine(
            **ln.model_dump(),
            returned_amount=0,
            returned_quantity=0,
            points_reversed=0,
        )
        for ln in body.lines
    ]
    price_lines(purchase, lines, evaluation)
    purchase = await _insert(session, purchase, lines)
    if account is not None:
        await earn_purchase(
            session,
            account=account,
            purchase=purchase,
            evaluation=evaluation,
            program=program,
            actor=till.actor,
        )
    return PurchaseResult(
        purchase_id=purchase.id,
        receipt_no=purchase.receipt_no,
        member_id=purchase.member_id,
        points=earning.points_block(evaluation),
        balance=BalanceRead(available=account.available, pending=account.pending)
        if account
        else None,
        tier=account.tier if account else None,
    )


async def record_batch(
    session: AsyncSession, *, settings: Settings, till: Till, purchases: list[dict[str, Any]]
) -> list[BatchItem]:
    """Offline upload: each receipt on its own, idempotent by (store, receipt_no)."""
    results = []
    for raw in purchases:
        receipt_no = raw.get("receipt_no") if isinstance(raw, dict) else None
        try:
            body = PurchaseIn.model_validate(raw)
        except ValidationError as e:
            detail = [{"loc": list(err["loc"]), "msg": err["msg"]} for err in e.errors()]
            results.append(
                BatchItem(
                    receipt_no=str(receipt_no) if receipt_no else None,
                    status="rejected",
                    error="ValidationError",
                    detail=detail,
                )
            )
            continue
        try:
            async with session.begin_nested():
                done = await record(session, settings=settings, till=till, body=body)
            results.append(
                BatchItem(
                    receipt_no=body.receipt_no,
                    status="created",
                    purchase_id=done.purchase_id,
                    points=done.points.earned,
                )
            )
        except DuplicateReceipt as dup:
            results.append(
                BatchItem(
                    receipt_no=body.receipt_no,
                    status="duplicate",
                    purchase_id=dup.extra.get("purchase_id"),
                )
            )
        except DomainError as err:
            results.append(
                BatchItem(
                    receipt_no=body.receipt_no, status="rejected", error=err.code, detail=err.detail
                )
            )
    return results


async def member_purchases(
    session: AsyncSession, member_id: int, *, limit: int = 50
) -> list[Purchase]:
    """The member's latest receipts, newest first."""
    stmt = (
        select(Purchase)
        .where(Purchase.member_id == member_id)
        .order_by(Purchase.occurred_at.desc(), Purchase.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())
