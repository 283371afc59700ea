"""What a receipt earns: the database facts the pure rules need, gathered in as few reads as
possible, then `rules.compute`."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger import tiers
from api.loyalty.ledger.models import Account
from api.loyalty.program import rules
from api.loyalty.program import service as program_service
from api.loyalty.program.models import Program, Rule, RuleVersion
from api.loyalty.till import texts as t
from api.loyalty.till.exceptions import PointsCapExceeded
from api.loyalty.till.models import RuleAward
from api.loyalty.till.schemas import AwardRead, PointsBlock, PurchaseIn
from api.members.models import Member
from api.org.models import Store


@dataclass
class Evaluation:
    quote: rules.Quote
    occurred_at: datetime
    available_at: datetime | None
    expires_at: datetime | None
    rule_versions: dict[str, int]
    budget_rules: dict[int, Rule] = field(default_factory=dict)  # locked rows to charge
    inputs: dict[str, Any] | None = None  # what `recompute` needs to price part of the receipt


def lines_of(body: PurchaseIn) -> list[rules.Line]:
    return [rules.Line(**ln.model_dump()) for ln in body.lines]


async def _usage(
    session: AsyncSession, member_id: int, capped: list[rules.Rule], local: datetime
) -> rules.Usage:
    """Points each capped rule already gave this member in each cap period: one query."""
    wanted = [(rule.id, period) for rule in capped for period in rule.caps]
    columns, earliest = [], None
    for rule_id, period in wanted:
        start, end = rules.period_bounds(local, period)
        earliest = start if earliest is None else min(earliest, start)
        hit = (
            (RuleAward.rule_id == rule_id)
            & (RuleAward.occurred_at >= start)
            & (RuleAward.occurred_at < end)
        )
        columns.append(func.coalesce(func.sum(case((hit, RuleAward.points), else_=0)), 0))
    stmt = select(*columns).where(
        RuleAward.member_id == member_id,
        RuleAward.rule_id.in_({rule_id for rule_id, _ in wanted}),
        RuleAward.occurred_at >= earliest,
    )
    row = (await session.execute(stmt)).one()
    return {key: int(value) for key, value in zip(wanted, row, strict=True)}


async def _with_budgets(
    session: AsyncSession, snapshot: program_service.Earning, *, lock: bool
) -> tuple[list[rules.Rule], dict[int, Rule]]:
    """The snapshot's rules, budgets re-read (locked when posting): they move with each receipt."""
    if not snapshot.budgeted:
        return list(snapshot.rules), {}
    stmt = select(Rule).where(Rule.id.in_(snapshot.budgeted)).order_by(Rule.id)
    if lock:
        stmt = stmt.with_for_update()
    rows = (await session.execute(stmt.execution_options(populate_existing=True))).scalars()
    fresh = {rule.id: rule for rule in rows}
    current = [
        program_service.engine_rule(fresh[r.id]) if r.id in fresh else r for r in snapshot.rules
    ]
    return current, fresh


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
    if member is None:
        return Evaluation(rules.Quote(0, []), occurred_at, None, None, {})
    snapshot = await program_service.earning(session, program)
    active, budget_rules = await _with_budgets(session, snapshot, lock=lock_budgets)
    tier = account.tier if account else None
    ctx = rules.Context(
        occurred_at=occurred_at,
        store_id=store.id,
        region_id=store.region_id,
        store_kind=store.kind,
        timezone=store.timezone,
        total=body.total,
        birthday=member.birthday,
        tier=tier,
        tier_multiplier_percent=tiers.multiplier_percent(snapshot.tiers, tier),
        is_first_purchase=account is None or account.purchases == 0,
    )
    lines, engine_program = lines_of(body), program_service.engine_program(program)
    quote = rules.compute(lines, ctx, engine_program, active)
    # Caps only scale a rule's own parts, so usage is read only when a capped rule took part
    # (even with 0 points after rounding: its fraction still counts in the receipt's total).
    capped_ids = {a.rule_id for a in quote.awards if a.rule_id is not None}
    capped = [r for r in active if r.caps and r.id in capped_ids]
    if capped:
        usage = await _usage(session, member.id, capped, ctx.local)
        quote = rules.compute(lines, ctx, engine_program, active, usage)
    if quote.points > program.max_points_per_receipt:
        raise PointsCapExceeded(
            t.text("points_cap", points=quote.points, cap=program.max_points_per_receipt)
        )
    inputs = inputs_of(ctx, engine_program, active, usage if capped else {})
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
        budget_rules,
        inputs,
    )


# ----------------------------------------------------------------------------- recomputation


def inputs_of(
    ctx: rules.Context, program: rules.Program, active: Iterable[rules.Rule], usage: rules.Usage
) -> dict[str, Any]:
    """The engine's inputs for this receipt, as JSON: the context, the programme's rate, each
    rule that applied (id, version and the budget left then: the definition is its
    RuleVersion) and the cap usage. Stored on the purchase, so a return prices the kept lines
    exactly as the receipt was priced."""
    return {
        "context": {
            "occurred_at": ctx.occurred_at.isoformat(),
            "store_id": ctx.store_id,
            "region_id": ctx.region_id,
            "store_kind": ctx.store_kind,
            "timezone": ctx.timezone,
            "total": ctx.total,
            "birthday": ctx.birthday.isoformat() if ctx.birthday else None,
            "tier": ctx.tier,
            "tier_multiplier_percent": ctx.tier_multiplier_percent,
            "is_first_purchase": ctx.is_first_purchase,
        },
        "program": {
            "earn_points": program.earn_points,
            "earn_amount": program.earn_amount,
            "rounding": program.rounding,
        },
        "rules": [[r.id, r.version, r.budget_remaining] for r in active if rules.applies(r, ctx)],
        "usage": [[rule_id, period, points] for (rule_id, period), points in usage.items()],
    }


def _engine_rule(rule_id: int, version: int, budget: int | None, d: dict[str, Any]) -> rules.Rule:
    def moment(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return rules.Rule(
        id=rule_id,
        version=version,
        code=d["code"],
        kind=rules.RuleKind(d["kind"]),
        params=d.get("params") or {},
        store_ids=frozenset(d["store_ids"]) if d.get("store_ids") is not None else None,
        region_ids=frozenset(d["region_ids"]) if d.get("region_ids") is not None else None,
        store_kind=d.get("store_kind"),
        valid_from=moment(d.get("valid_from")),
        valid_until=moment(d.get("valid_until")),
        caps=d.get("caps") or {},
        budget_remaining=budget,
    )


async def recompute(
    session: AsyncSession, inputs: dict[str, Any], lines: list[rules.Line]
) -> rules.Quote | None:
    """What `lines` would have earned on this receipt: the stored inputs (the rules at their
    versions then, the member's context, budgets and cap usage as they were), the pure rules.
    None when a rule version it names is gone (the caller falls back to proportions)."""
    c = inputs["context"]
    ctx = rules.Context(
        occurred_at=datetime.fromisoformat(c["occurred_at"]),
        store_id=c["store_id"],
        region_id=c["region_id"],
        store_kind=c["store_kind"],
        timezone=c["timezone"],
        total=sum(line.amount for line in lines),
        birthday=date.fromisoformat(c["birthday"]) if c.get("birthday") else None,
        tier=c.get("tier"),
        tier_multiplier_percent=c["tier_multiplier_percent"],
        is_first_purchase=c["is_first_purchase"],
    )
    wanted = {(rule_id, version): budget for rule_id, version, budget in inputs["rules"]}
    engine_rules: list[rules.Rule] = []
    if wanted:
        stmt = select(RuleVersion).where(
            tuple_(RuleVersion.rule_id, RuleVersion.version).in_(list(wanted))
        )
        found = {
            (row.rule_id, row.version): row.definition
            for row in (await session.execute(stmt)).scalars()
        }
        missing = {rule_id for rule_id, version in wanted if (rule_id, version) not in found}
        if missing:  # a rule never snapshotted (written by hand): its row, if still that version
            for rule in (await session.execute(select(Rule).where(Rule.id.in_(missing)))).scalars():
                if (rule.id, rule.version) in wanted:
                    found[(rule.id, rule.version)] = program_service.rule_definition(rule)
        if len(found) != len(wanted):
            return None
        for (rule_id, version), budget in wanted.items():
            engine_rules.append(_engine_rule(rule_id, version, budget, found[(rule_id, version)]))
    usage = {(rule_id, period): points for rule_id, period, points in inputs["usage"]}
    return rules.compute(lines, ctx, rules.Program(**inputs["program"]), engine_rules, usage)


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
