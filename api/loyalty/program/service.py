"""Programme settings, earning rules (versioned) and tier definitions."""

import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrulestr
from pydantic import BaseModel, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.program import rules
from api.loyalty.program.exceptions import (
    CurrencyLocked,
    InvalidRule,
    RuleCodeTaken,
    RuleNotFound,
)
from api.loyalty.program.models import Program, Rule, RuleVersion, Tier
from api.loyalty.program.schemas import ProgramUpdate, RuleCreate, RuleUpdate, TierSet

PROGRAM_ID = 1


async def get_program(session: AsyncSession) -> Program:
    """The programme settings, created with the documented defaults on first use."""
    program = await session.get(Program, PROGRAM_ID)
    if program is None:
        try:
            async with session.begin_nested():
                session.add(Program(id=PROGRAM_ID, updated_at=clock.now()))
        except IntegrityError:
            pass
        program = await session.get(Program, PROGRAM_ID)
    assert program is not None
    return program


def _earning_changed(program: Program) -> None:
    program.earning_etag = secrets.token_hex(8)
    program.updated_at = clock.now()


def program_view(program: Program) -> dict[str, Any]:
    data = {c.name: getattr(program, c.name) for c in Program.__table__.columns}
    data["expiry_policy"] = "never" if program.expiry_months is None else "rolling"
    return data


# Whether the programme is live (has receipts, ledger entries): the layers above register a
# check each (ledger, till), since program/ sits below them and cannot import their tables.
InUseCheck = Callable[[AsyncSession], Awaitable[bool]]
_IN_USE_CHECKS: list[InUseCheck] = []


def register_in_use_check(check: InUseCheck) -> InUseCheck:
    """Add a check that says the programme is in use (a decorator; idempotent per function)."""
    if check not in _IN_USE_CHECKS:
        _IN_USE_CHECKS.append(check)
    return check


async def in_use(session: AsyncSession) -> bool:
    """Whether any receipt or ledger entry exists (a registered check says so)."""
    for check in _IN_USE_CHECKS:
        if await check(session):
            return True
    return False


async def update_program(session: AsyncSession, *, data: ProgramUpdate) -> Program:
    """Change programme settings; the version goes up with every change. The currency is
    fixed (409 CurrencyLocked) once any receipt or ledger entry exists."""
    program = await get_program(session)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("currency", program.currency) != program.currency and await in_use(session):
        raise CurrencyLocked(
            f"receipts and balances are in {program.currency}; the currency can no longer change"
        )
    if "timezone" in changes:
        try:
            ZoneInfo(changes["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise InvalidRule("unknown time zone") from e
    policy = changes.pop("expiry_policy", None)
    if policy == "never":
        changes["expiry_months"] = None
    elif (
        policy == "rolling"
        and changes.get("expiry_months") is None
        and program.expiry_months is None
    ):
        changes["expiry_months"] = 12
    for field, value in changes.items():
        setattr(program, field, value)
    program.version += 1
    _earning_changed(program)
    await session.flush()
    return program


def engine_program(program: Program) -> rules.Program:
    return rules.Program(
        earn_points=program.earn_points, earn_amount=program.earn_amount, rounding=program.rounding
    )


# ----------------------------------------------------------------------------- rules


class _Targets(BaseModel):
    categories: list[str] = Field(default_factory=list, max_length=500)
    skus: list[str] = Field(default_factory=list, max_length=5000)

    @model_validator(mode="after")
    def _some(self) -> "_Targets":
        if not self.categories and not self.skus:
            raise ValueError("give categories or skus")
        return self


class _Multiplier(_Targets):
    multiplier_percent: int = Field(gt=100, le=1000)


class _Fuel(BaseModel):
    grades: dict[str, int] = Field(min_length=1, description="hundredths of a point per litre")

    @model_validator(mode="after")
    def _positive(self) -> "_Fuel":
        if any(v < 0 or v > 100_000 for v in self.grades.values()):
            raise ValueError("points per litre (in hundredths) must be 0..100000")
        return self


class _Fixed(BaseModel):
    points: int = Field(ge=1, le=1_000_000)


class _Basket(_Fixed):
    min_total: int = Field(ge=1)


class _Promotion(BaseModel):
    multiplier_percent: int | None = Field(None, gt=100, le=1000)
    bonus_points: int | None = Field(None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _some(self) -> "_Promotion":
        if not self.multiplier_percent and not self.bonus_points:
            raise ValueError("give multiplier_percent or bonus_points")
        return self


class _MemberDay(_Promotion):
    rrule: str = Field(min_length=5, max_length=300)
    dtstart: date | None = None

    @model_validator(mode="after")
    def _parses(self) -> "_MemberDay":
        try:
            recurrence = rrulestr(self.rrule, dtstart=datetime(2000, 1, 1))
        except (ValueError, TypeError) as e:
            raise ValueError(f"not an RFC 5545 RRULE: {e}") from e
        if getattr(recurrence, "_freq", YEARLY) not in (YEARLY, MONTHLY, WEEKLY, DAILY):
            raise ValueError("a member day repeats daily, weekly, monthly or yearly")
        return self


class _Birthday(_Promotion):
    window: str = Field("day", pattern="^(day|week|month)$")


PARAMS: dict[rules.RuleKind, type[BaseModel]] = {
    rules.RuleKind.exclude: _Targets,
    rules.RuleKind.multiplier: _Multiplier,
    rules.RuleKind.fuel: _Fuel,
    rules.RuleKind.welcome: _Fixed,
    rules.RuleKind.basket: _Basket,
    rules.RuleKind.member_day: _MemberDay,
    rules.RuleKind.birthday: _Birthday,
}


def validate_params(kind: rules.RuleKind, params: dict[str, Any]) -> dict[str, Any]:
    """The params checked against the rule kind's shape (422 InvalidRule with the reasons)."""
    try:
        parsed = PARAMS[kind].model_validate(params)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}"
            for err in e.errors()
        )
        raise InvalidRule(f"params for a {kind} rule: {problems}") from e
    return parsed.model_dump(mode="json", exclude_none=True)


def _definition(rule: Rule) -> dict[str, Any]:
    return {
        "code": rule.code,
        "name": rule.name,
        "kind": rule.kind,
        "params": rule.params,
        "store_ids": rule.store_ids,
        "region_ids": rule.region_ids,
        "store_kind": rule.store_kind,
        "valid_from": rule.valid_from.isoformat() if rule.valid_from else None,
        "valid_until": rule.valid_until.isoformat() if rule.valid_until else None,
        "caps": rule.caps,
        "budget": rule.budget,
        "active": rule.active,
    }


def rule_definition(rule: Rule) -> dict[str, Any]:
    """What a rule says now, as its RuleVersion snapshot stores it."""
    return _definition(rule)


async def _snapshot(session: AsyncSession, rule: Rule) -> None:
    session.add(
        RuleVersion(
            rule_id=rule.id,
            version=rule.version,
            definition=_definition(rule),
            created_at=clock.now(),
        )
    )
    await session.flush()


def _utc(value: datetime | None) -> datetime | None:
    """Rule windows are stored in UTC; a time without an offset is taken as UTC."""
    return clock.as_utc(value) if value is not None else None


async def list_rules(session: AsyncSession, *, active_only: bool = False) -> list[Rule]:
    stmt = select(Rule).order_by(Rule.id)
    if active_only:
        stmt = stmt.where(Rule.active.is_(True))
    return list((await session.execute(stmt)).scalars())


async def get_rule(session: AsyncSession, rule_id: int) -> Rule:
    rule = await session.get(Rule, rule_id)
    if rule is None:
        raise RuleNotFound()
    return rule


async def create_rule(session: AsyncSession, *, data: RuleCreate) -> Rule:
    """Add an earning rule (version 1)."""
    now = clock.now()
    rule = Rule(
        code=data.code,
        name=data.name,
        kind=data.kind,
        params=validate_params(data.kind, data.params),
        store_ids=data.store_ids,
        region_ids=data.region_ids,
        store_kind=data.store_kind,
        valid_from=_utc(data.valid_from),
        valid_until=_utc(data.valid_until),
        caps=data.caps.model_dump(exclude_none=True) if data.caps else {},
        budget=data.budget,
        budget_used=0,
        active=True if data.active is None else data.active,
        version=1,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(rule)
    except IntegrityError as e:
        raise RuleCodeTaken() from e
    _earning_changed(await get_program(session))
    await _snapshot(session, rule)
    return rule


async def update_rule(session: AsyncSession, rule: Rule, *, data: RuleUpdate) -> Rule:
    """Change a rule; a real change bumps its version and keeps the old definition."""
    changes = data.model_dump(exclude_unset=True)
    if "params" in changes:
        changes["params"] = validate_params(rules.RuleKind(rule.kind), changes["params"] or {})
    if "caps" in changes:
        changes["caps"] = {k: v for k, v in (changes["caps"] or {}).items() if v is not None}
    for moment in ("valid_from", "valid_until"):
        if moment in changes:
            changes[moment] = _utc(changes[moment])
    before = _definition(rule)
    for field, value in changes.items():
        setattr(rule, field, value)
    if rule.valid_from and rule.valid_until and rule.valid_until <= rule.valid_from:
        raise InvalidRule("valid_until must be after valid_from")
    if _definition(rule) != before:
        rule.version += 1
        rule.updated_at = clock.now()
        _earning_changed(await get_program(session))
        await session.flush()
        await _snapshot(session, rule)
    return rule


async def replace_rules(session: AsyncSession, *, wanted: list[RuleCreate]) -> list[Rule]:
    """Make the rule set equal `wanted` by code: create, update, and deactivate the rest."""
    existing = {r.code: r for r in await list_rules(session)}
    if len({w.code for w in wanted}) != len(wanted):
        raise InvalidRule("rule codes must be unique")
    for want in wanted:
        rule = existing.pop(want.code, None)
        if rule is None:
            await create_rule(session, data=want)
        elif rule.kind != want.kind:
            raise InvalidRule(f"rule {want.code} cannot change kind; give it a new code")
        else:
            fields = want.model_dump(exclude={"code", "kind"})
            fields["active"] = True if want.active is None else want.active
            await update_rule(session, rule, data=RuleUpdate(**fields))
    for leftover in existing.values():
        if leftover.active:
            await update_rule(session, leftover, data=RuleUpdate(active=False))
    return await list_rules(session)


def engine_rule(rule: Rule) -> rules.Rule:
    return rules.Rule(
        id=rule.id,
        version=rule.version,
        code=rule.code,
        kind=rules.RuleKind(rule.kind),
        params=rule.params,
        store_ids=frozenset(rule.store_ids) if rule.store_ids is not None else None,
        region_ids=frozenset(rule.region_ids) if rule.region_ids is not None else None,
        store_kind=rule.store_kind,
        valid_from=rule.valid_from,
        valid_until=rule.valid_until,
        caps=rule.caps or {},
        budget_remaining=None if rule.budget is None else rule.budget - rule.budget_used,
    )


# ----------------------------------------------------------------------------- tiers


async def list_tiers(session: AsyncSession) -> list[Tier]:
    return list((await session.execute(select(Tier).order_by(Tier.rank))).scalars())


async def replace_tiers(session: AsyncSession, *, data: TierSet) -> list[Tier]:
    """Make the tier ladder equal the given list (lowest first)."""
    existing = {t.code: t for t in await list_tiers(session)}
    for tier in existing.values():
        tier.rank = -tier.id  # free the unique ranks while reordering
    await session.flush()
    for rank, want in enumerate(data.tiers):
        tier = existing.pop(want.code, None)
        if tier is None:
            tier = Tier(code=want.code)
            session.add(tier)
        tier.name, tier.rank = want.name, rank
        tier.min_spend, tier.multiplier_percent = want.min_spend, want.multiplier_percent
    for leftover in existing.values():
        await session.delete(leftover)
    _earning_changed(await get_program(session))
    await session.flush()
    return await list_tiers(session)


# ----------------------------------------------------------------------------- earning snapshot


@dataclass(frozen=True)
class TierLevel:
    code: str
    name: str
    rank: int
    min_spend: int
    multiplier_percent: int


@dataclass(frozen=True)
class Earning:
    """The active rules and the tier ladder as of one `earning_etag` (immutable, no session)."""

    etag: str
    rules: tuple[rules.Rule, ...]
    tiers: tuple[TierLevel, ...]
    budgeted: tuple[int, ...]  # ids of rules with a budget: their usage is always re-read


# Derived data keyed by a value written in the same transaction as any change to it: a process
# never earns by rules another has replaced, and a rolled-back change leaves an etag nobody sees.
_EARNING: "OrderedDict[str, Earning]" = OrderedDict()
_EARNING_KEEP = 8


async def earning(session: AsyncSession, program: Program) -> Earning:
    """Active rules and tiers for this programme state: read once per etag per process."""
    cached = _EARNING.get(program.earning_etag)
    if cached is not None:
        return cached
    active = await list_rules(session, active_only=True)
    ladder = await list_tiers(session)
    snapshot = Earning(
        etag=program.earning_etag,
        rules=tuple(engine_rule(r) for r in active),
        tiers=tuple(
            TierLevel(t.code, t.name, t.rank, t.min_spend, t.multiplier_percent) for t in ladder
        ),
        budgeted=tuple(r.id for r in active if r.budget is not None),
    )
    _EARNING[snapshot.etag] = snapshot
    while len(_EARNING) > _EARNING_KEEP:
        _EARNING.popitem(last=False)
    return snapshot
