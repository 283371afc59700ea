"""Receipts from the till: quote, post, offline batches and later claims by the member."""

import secrets
from collections.abc import Iterable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock, security
from api.core.config import Settings
from api.core.db import failure_hooks_mark, forget_failure_hooks, insert_unless_exists
from api.core.errors import DomainError
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger import tiers
from api.loyalty.ledger.models import Account
from api.loyalty.ledger.schemas import BalanceRead
from api.loyalty.program import rules
from api.loyalty.program import service as program_service
from api.loyalty.program.models import Program
from api.loyalty.till import earning
from api.loyalty.till import texts as t
from api.loyalty.till.context import Till
from api.loyalty.till.exceptions import (
    CurrencyMismatch,
    DuplicateReceipt,
    ImplausibleFuelLine,
    InvalidPurchase,
    PurchaseNotFound,
    UnknownFuelGrade,
)
from api.loyalty.till.models import Purchase, PurchaseLine, RuleAward
from api.loyalty.till.schemas import (
    AwardRead,
    BatchItem,
    PurchaseIn,
    PurchaseLineRead,
    PurchaseRead,
    PurchaseResult,
    QuoteResult,
)
from api.members import identity
from api.members import service as members_service
from api.members.exceptions import CodeExpired, CodeReplayed, InvalidPlate, PlateTaken
from api.members.models import Member
from api.org.models import Store

CLOCK_SKEW = timedelta(minutes=5)
OLDEST_RECEIPT = timedelta(days=90)
# Claim codes: 8 characters of an alphabet without 0/O/1/I (32 symbols, 40 bits), printed on a
# receipt posted without a member; only their keyed digest is stored.
CLAIM_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CLAIM_CODE_LENGTH = 8
DEFAULT_FUEL_BOUNDS = {"min_price": 400, "max_price": 1500}


def new_claim_code() -> str:
    return "".join(secrets.choice(CLAIM_ALPHABET) for _ in range(CLAIM_CODE_LENGTH))


def normalise_claim_code(code: str) -> str:
    """As the shopper types it: case, spaces and dashes do not matter."""
    return "".join(ch for ch in code.upper() if ch not in " -")


def claim_code_digest(settings: Settings, store_id: int, receipt_no: str, code: str) -> str:
    key = f"receipt-claim:{store_id}:{receipt_no}:{normalise_claim_code(code)}"
    return security.keyed_digest(settings.secret_key, key)


async def known_fuel_grades(session: AsyncSession, program: Program, store: Store) -> set[str]:
    """The grades a fuel line may name at this store: the programme's list and the grades the
    active fuel rules covering this store price."""
    known = set(program.fuel_grades or {})
    snapshot = await program_service.earning(session, program)
    for rule in snapshot.rules:
        if rule.kind != rules.RuleKind.fuel:
            continue
        if rule.store_ids is not None and store.id not in rule.store_ids:
            continue
        if rule.region_ids is not None and store.region_id not in rule.region_ids:
            continue
        if rule.store_kind is not None and rule.store_kind != store.kind:
            continue
        known |= set(rule.params.get("grades") or {})
    return known


async def check_fuel_lines(
    session: AsyncSession, *, program: Program, store: Store, body: PurchaseIn
) -> None:
    """Fuel points come only from plausible lines: a known grade, an amount above 0, a price
    per litre within the grade's bounds and a volume within the programme's maximum."""
    fuel = [ln for ln in body.lines if ln.fuel_grade or ln.volume_ml is not None]
    if not fuel:
        return
    known = await known_fuel_grades(session, program, store)
    for ln in fuel:
        grade, volume = ln.fuel_grade, ln.volume_ml
        if not grade:
            raise ImplausibleFuelLine(t.text("fuel_needs_grade", line_no=ln.line_no))
        if volume is None:
            raise ImplausibleFuelLine(t.text("fuel_needs_volume", line_no=ln.line_no, grade=grade))
        if grade not in known:
            names = ", ".join(sorted(known)) or "none"
            raise UnknownFuelGrade(
                t.text("unknown_fuel_grade", line_no=ln.line_no, grade=grade, known=names),
                known_grades=sorted(known),
            )
        if ln.amount <= 0:
            raise ImplausibleFuelLine(t.text("fuel_amount_zero", line_no=ln.line_no))
        if volume > program.max_fuel_ml_per_line:
            raise ImplausibleFuelLine(
                t.text(
                    "fuel_too_many_litres",
                    line_no=ln.line_no,
                    volume_ml=volume,
                    max_ml=program.max_fuel_ml_per_line,
                )
            )
        bounds = (program.fuel_grades or {}).get(grade) or DEFAULT_FUEL_BOUNDS
        low, high = int(bounds["min_price"]), int(bounds["max_price"])
        # fen per litre = amount × 1000 / volume_ml, compared without dividing
        if not low * volume <= ln.amount * 1000 <= high * volume:
            raise ImplausibleFuelLine(
                t.text(
                    "fuel_price_out_of_bounds",
                    line_no=ln.line_no,
                    price=round(ln.amount * 1000 / volume),
                    grade=grade,
                    min_price=low,
                    max_price=high,
                )
            )


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


async def _identified(
    session: AsyncSession, settings: Settings, till: Till, body: PurchaseIn, occurred_at: datetime
) -> identity.Identified | None:
    """The member of the receipt; a rotating code is checked against occurred_at too (a
    receipt recorded while the till was offline carries the code scanned then)."""
    if body.member_code:
        if till.terminal_id is None:
            raise InvalidPurchase("member_code needs a terminal; give member_id")
        return await identity.resolve_member_code(
            session,
            settings=settings,
            terminal_id=till.terminal_id,
            code=body.member_code,
            scanned_at=occurred_at,
        )
    if body.member_id is not None:
        member = await members_service.get_member(session, body.member_id)
        return identity.Identified(member, False, "member_id")
    return None


async def _member_for(
    session: AsyncSession, settings: Settings, till: Till, body: PurchaseIn, occurred_at: datetime
) -> Member | None:
    found = await _identified(session, settings, till, body, occurred_at)
    return found.member if found else None


async def quote(
    session: AsyncSession, *, settings: Settings, till: Till, body: PurchaseIn
) -> QuoteResult:
    """Exactly what posting this receipt would earn; nothing is stored (not even a used code)."""
    savepoint = await session.begin_nested()
    try:
        program = await program_service.get_program(session)
        occurred_at = _check(body, program)
        await check_fuel_lines(session, program=program, store=till.store, body=body)
        member = await _member_for(session, settings, till, body, occurred_at)
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
    purchase.earning_inputs = evaluation.inputs


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
    await check_fuel_lines(session, program=program, store=till.store, body=body)
    mark = failure_hooks_mark(session)
    try:
        found = await _identified(session, settings, till, body, occurred_at)
    except DomainError as error:
        # A retried post of a stored receipt (its rotating code now spent) must still hear
        # DuplicateReceipt with the first purchase id; the lookup is paid on this path only.
        existing = await find_receipt(session, till.store.id, body.receipt_no)
        if existing is None:
            raise
        if isinstance(error, CodeReplayed | CodeExpired):
            forget_failure_hooks(session, mark)  # a till's retry, not a guess: no lock-out
        raise DuplicateReceipt(purchase_id=existing.id) from None
    member = found.member if found else None
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
    claim_code = None
    if member is None:  # the shopper may claim it in the app with the code printed on it
        claim_code = new_claim_code()
        purchase.claim_code_hash = claim_code_digest(
            settings, till.store.id, body.receipt_no, claim_code
        )
    purchase = await _insert(session, purchase, lines)
    if body.plate and found is not None and found.can_redeem:
        # the car at the pump, with the member's fresh QR code: their claim on it is verified
        with suppress(PlateTaken, InvalidPlate):  # a plate is no reason to refuse a receipt
            await members_service.verify_plate(
                session, found.member, plate=body.plate, by=till.actor, claimed_only=True
            )
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
        claim_code=claim_code,
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
                    claim_code=done.claim_code,
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


@program_service.register_in_use_check
async def has_receipts(session: AsyncSession) -> bool:
    """Whether any receipt was posted (the programme's currency is then fixed)."""
    return (await session.execute(select(Purchase.id).limit(1))).first() is not None


async def get_at_store(session: AsyncSession, *, store_id: int, purchase_id: int) -> Purchase:
    """A receipt of this store (404 PurchaseNotFound for another store's, like a missing one)."""
    purchase = await session.get(Purchase, purchase_id)
    if purchase is None or purchase.store_id != store_id:
        raise PurchaseNotFound()
    return purchase


async def read_back(session: AsyncSession, *, till: Till, purchase_id: int) -> PurchaseRead:
    """A receipt as stored, with its lines, returns so far and points, for a reprint; the
    claim code is not in it (only its digest is stored)."""
    purchase = await get_at_store(session, store_id=till.store.id, purchase_id=purchase_id)
    lines = (
        await session.execute(
            select(PurchaseLine)
            .where(PurchaseLine.purchase_id == purchase.id)
            .order_by(PurchaseLine.line_no)
        )
    ).scalars()
    return PurchaseRead(
        purchase_id=purchase.id,
        receipt_no=purchase.receipt_no,
        member_id=purchase.member_id,
        occurred_at=purchase.occurred_at,
        currency=purchase.currency,
        total=purchase.total,
        returned_total=purchase.returned_total,
        points=purchase.points,
        bonus_points=purchase.bonus_points,
        points_reversed=purchase.points_reversed,
        breakdown=[AwardRead(**a) for a in purchase.breakdown or []],
        lines=[PurchaseLineRead.model_validate(ln) for ln in lines],
        claimable=purchase.member_id is None and purchase.claim_code_hash is not None,
        claimed_at=purchase.claimed_at,
        created_at=purchase.created_at,
    )
