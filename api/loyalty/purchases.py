"""Receipts from the till: quote, post, offline batches and later claims by the member."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.core.errors import DomainError
from api.loyalty import ledger, rules, tiers
from api.loyalty import program as program_service
from api.loyalty.exceptions import CurrencyMismatch, DuplicateReceipt, InvalidPurchase
from api.loyalty.models import Account, Program, Purchase, PurchaseLine, Rule, RuleAward
from api.loyalty.schemas import (
    AwardRead,
    BalanceRead,
    BatchItem,
    PointsBlock,
    PurchaseIn,
    PurchaseResult,
    QuoteResult,
)
from api.members import identity
from api.members import service as members_service
from api.members.models import Member
from api.org.models import Store

CLOCK_SKEW = timedelta(minutes=5)
OLDEST_RECEIPT = timedelta(days=90)


@dataclass(frozen=True)
class Till:
    """Where a receipt comes from: a terminal of a store, or a staff member at the console."""

    store: Store
    terminal_id: int | None
    actor: str

    @classmethod
    def at_terminal(cls, store: Store, terminal_id: int) -> "Till":
        return cls(store=store, terminal_id=terminal_id, actor=f"terminal:{terminal_id}")


@dataclass
class Evaluation:
    quote: rules.Quote
    occurred_at: datetime
    available_at: datetime | None
    expires_at: datetime | None
    rule_versions: dict[str, int]


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


def _lines(body: PurchaseIn) -> list[rules.Line]:
    return [
        rules.Line(
            line_no=ln.line_no,
            sku=ln.sku,
            category=ln.category,
            quantity=ln.quantity,
            amount=ln.amount,
            fuel_grade=ln.fuel_grade,
            volume_ml=ln.volume_ml,
        )
        for ln in body.lines
    ]


async def _usage(
    session: AsyncSession, member_id: int, capped: list[Rule], local: datetime
) -> dict[tuple[int, str], int]:
    usage: dict[tuple[int, str], int] = {}
    for rule in capped:
        for period in rule.caps:
            start, end = rules.period_bounds(local, period)
            stmt = select(func.coalesce(func.sum(RuleAward.points), 0)).where(
                RuleAward.member_id == member_id,
                RuleAward.rule_id == rule.id,
                RuleAward.occurred_at >= start,
                RuleAward.occurred_at < end,
            )
            usage[(rule.id, period)] = int((await session.execute(stmt)).scalar_one())
    return usage


async def _active_rules(session: AsyncSession, *, lock_budgets: bool) -> list[Rule]:
    active = await program_service.list_rules(session, active_only=True)
    budgeted = [r.id for r in active if r.budget is not None]
    if lock_budgets and budgeted:
        stmt = select(Rule).where(Rule.id.in_(budgeted)).order_by(Rule.id).with_for_update()
        locked = {
            r.id: r
            for r in (
                await session.execute(stmt.execution_options(populate_existing=True))
            ).scalars()
        }
        active = [locked.get(r.id, r) for r in active]
    return active


async def evaluate(
    session: AsyncSession,
    *,
    program: Program,
    store: Store,
    member: Member | None,
    account: Account | None,
    body: PurchaseIn,
    occurred_at: datetime,
    lock_budgets: bool = False,
) -> Evaluation:
    """Everything the rules need, gathered from the database, then the pure computation."""
    active = await _active_rules(session, lock_budgets=lock_budgets)
    tier_list = await program_service.list_tiers(session)
    tier = account.tier if account else None
    ctx = rules.Context(
        occurred_at=occurred_at,
        store_id=store.id,
        region_id=store.region_id,
        store_kind=store.kind,
        timezone=store.timezone,
        total=body.total,
        birthday=member.birthday if member else None,
        tier=tier,
        tier_multiplier_percent=tiers.multiplier_percent(tier_list, tier),
        is_first_purchase=member is not None and (account is None or account.purchases == 0),
    )
    if member is None:
        return Evaluation(rules.Quote(0, []), occurred_at, None, None, {})
    capped = [r for r in active if r.caps]
    usage = await _usage(session, member.id, capped, ctx.local) if capped else {}
    quote = rules.compute(
        _lines(body),
        ctx,
        program_service.engine_program(program),
        [program_service.engine_rule(r) for r in active],
        usage,
    )
    available_at = (
        occurred_at + timedelta(days=program.pending_days) if program.pending_days else None
    )
    if available_at is not None and available_at <= clock.now():
        available_at = None
    return Evaluation(
        quote,
        occurred_at,
        available_at,
        ledger.expiry_for(occurred_at, program.expiry_months, program.timezone),
        {r.code: r.version for r in active},
    )


def points_block(evaluation: Evaluation) -> PointsBlock:
    """The `points` block of a purchase or quote response."""
    earned = evaluation.quote.points
    return PointsBlock(
        earned=earned,
        pending=earned if evaluation.available_at else 0,
        available_at=evaluation.available_at if earned else None,
        expires_at=evaluation.expires_at if earned else None,
        breakdown=[AwardRead(**a.__dict__) for a in evaluation.quote.awards],
    )


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
        evaluation = await evaluate(
            session,
            program=program,
            store=till.store,
            member=member,
            account=account,
            body=body,
            occurred_at=occurred_at,
        )
        return QuoteResult(member_id=member.id if member else None, points=points_block(evaluation))
    finally:
        await savepoint.rollback()


async def find_receipt(session: AsyncSession, store_id: int, receipt_no: str) -> Purchase | None:
    stmt = select(Purchase).where(Purchase.store_id == store_id, Purchase.receipt_no == receipt_no)
    return (await session.execute(stmt)).scalar_one_or_none()


async def earn_purchase(
    session: AsyncSession,
    *,
    account: Account,
    purchase: Purchase,
    evaluation: Evaluation,
    program: Program,
    actor: str,
) -> None:
    """Credit a member's purchase: line points, rule awards and budgets, the lot, the tier."""
    quote_ = evaluation.quote
    per_line = quote_.points_by_line()
    lines = (
        await session.execute(select(PurchaseLine).where(PurchaseLine.purchase_id == purchase.id))
    ).scalars()
    for line in lines:
        line.points = per_line.get(line.line_no, 0)
    breakdown = [AwardRead(**a.__dict__).model_dump() for a in quote_.awards]
    purchase.points, purchase.bonus_points, purchase.breakdown = (
        quote_.points,
        quote_.bonus_points,
        breakdown,
    )
    awarded: dict[int, int] = {}
    for award in quote_.awards:
        if award.rule_id is not None and award.points:
            awarded[award.rule_id] = awarded.get(award.rule_id, 0) + award.points
    for rule_id, points in awarded.items():
        session.add(
            RuleAward(
                member_id=account.member_id,
                rule_id=rule_id,
                purchase_id=purchase.id,
                points=points,
                occurred_at=evaluation.occurred_at,
            )
        )
        rule = await session.get(Rule, rule_id)
        if rule is not None and rule.budget is not None:
            rule.budget_used += points
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
                "breakdown": breakdown,
                "rules": evaluation.rule_versions,
                "program_version": program.version,
            },
        )
    account.purchases += 1
    if account.last_purchase_at is None or evaluation.occurred_at > account.last_purchase_at:
        account.last_purchase_at = evaluation.occurred_at
    await tiers.upgrade_after_purchase(session, account, program)
    await session.flush()


async def record(
    session: AsyncSession, *, settings: Settings, till: Till, body: PurchaseIn
) -> PurchaseResult:
    """Store a receipt and credit its points; the same (store, receipt_no) twice is refused."""
    program = await program_service.get_program(session)
    occurred_at = _check(body, program)
    existing = await find_receipt(session, till.store.id, body.receipt_no)
    if existing is not None:
        raise DuplicateReceipt(purchase_id=existing.id)
    member = await _member_for(session, settings, till, body)
    account = await ledger.lock_account(session, member.id) if member else None
    if member is not None:
        existing = await find_receipt(session, till.store.id, body.receipt_no)
        if existing is not None:  # a concurrent post won while we waited for the lock
            raise DuplicateReceipt(purchase_id=existing.id)
    evaluation = await evaluate(
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
        points=0,
        bonus_points=0,
        points_reversed=0,
        created_at=clock.now(),
    )
    try:
        async with session.begin_nested():
            session.add(purchase)
    except IntegrityError as e:
        existing = await find_receipt(session, till.store.id, body.receipt_no)
        raise DuplicateReceipt(purchase_id=existing.id if existing else None) from e
    session.add_all(
        PurchaseLine(
            purchase_id=purchase.id,
            line_no=ln.line_no,
            sku=ln.sku,
            category=ln.category,
            quantity=ln.quantity,
            amount=ln.amount,
            fuel_grade=ln.fuel_grade,
            volume_ml=ln.volume_ml,
            points=0,
            returned_amount=0,
            returned_quantity=0,
            points_reversed=0,
        )
        for ln in body.lines
    )
    await session.flush()
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
        points=points_block(evaluation),
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
