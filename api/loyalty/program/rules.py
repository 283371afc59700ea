"""Earning rules: pure functions, no database. Purchase lines + context + rules in, points out.

Stacking policy (one policy, applied in this order):

1. Exclusions win: a line matched by an ``exclude`` rule (category or SKU) earns nothing at all.
2. Each remaining line earns its *base*: the programme rate on its amount
   (``earn_points`` per ``earn_amount`` minor units) or, for a fuel line whose grade a ``fuel``
   rule prices, that rule's points per litre on ``volume_ml`` *instead of* the amount rate.
3. Multipliers add to the base, they do not compound: the line earns
   ``base × (category factor + Σ(promotion factor − 100 %))``. The category factor is the
   highest matching ``multiplier`` rule (100 % when none); promotion factors are the member day,
   the birthday and the member's tier. E.g. base 10, fresh food ×3, member day ×2, Gold ×1.5
   → 10 × (300 % + 100 % + 50 %) = 45.
4. Fixed bonuses are added per receipt: ``welcome`` (first purchase), ``basket`` (the single
   best basket rule whose ``min_total`` the eligible lines reach), and the bonus points of a
   member day or birthday rule. Excluded lines count towards no threshold, and a receipt of
   excluded lines only earns no bonus at all (no gift-card loophole).
5. Caps and budgets apply per rule after that: a rule's points are cut to what its caps per
   member (day / week / month / year, in store-local time) and its total budget still allow;
   a rule cut to nothing is recorded as a zero-point award with the reason.
6. Rounding is per receipt (``floor`` by default): exact (fractional) points are summed and
   rounded once; the breakdown is apportioned by largest remainder, first across rules (base,
   each rule, the tier) and then across that rule's lines, so it always adds up to the total and
   no rule ends up more than a rounding step from its exact share (a capped rule never above
   its cap).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from api.loyalty.program.calendars import (
    RRULE_ANCHOR,
    birthday_in_year,
    is_birthday,
    occurs_on,
    period_bounds,
)

__all__ = [
    "PERIODS",
    "RRULE_ANCHOR",
    "Award",
    "Context",
    "Line",
    "Program",
    "Quote",
    "Rule",
    "RuleKind",
    "applies",
    "birthday_in_year",
    "compute",
    "is_birthday",
    "kept_line",
    "occurs_on",
    "period_bounds",
    "reversal",
    "round_points",
]

MILLI = 1000


class RuleKind(enum.StrEnum):
    exclude = "exclude"
    multiplier = "multiplier"
    fuel = "fuel"
    welcome = "welcome"
    basket = "basket"
    member_day = "member_day"
    birthday = "birthday"


PERIODS = ("day", "week", "month", "year")


@dataclass(frozen=True)
class Line:
    line_no: int
    sku: str
    category: str
    quantity: Decimal
    amount: int
    fuel_grade: str | None = None
    volume_ml: int | None = None


@dataclass(frozen=True)
class Program:
    earn_points: int = 1
    earn_amount: int = 100
    rounding: str = "floor"


@dataclass(frozen=True)
class Rule:
    id: int
    version: int
    code: str
    kind: RuleKind
    params: Mapping[str, Any]
    store_ids: frozenset[int] | None = None
    region_ids: frozenset[int] | None = None
    store_kind: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    caps: Mapping[str, int] = field(default_factory=dict)
    budget_remaining: int | None = None


@dataclass(frozen=True)
class Context:
    occurred_at: datetime
    store_id: int
    region_id: int
    store_kind: str
    timezone: str
    total: int
    birthday: date | None = None
    tier: str | None = None
    tier_multiplier_percent: int = 100
    is_first_purchase: bool = False

    @property
    def local(self) -> datetime:
        return self.occurred_at.astimezone(ZoneInfo(self.timezone))


@dataclass
class Award:
    line_no: int | None
    rule: str
    points: int
    rule_id: int | None = None
    rule_version: int | None = None
    reason: str | None = None


@dataclass
class Quote:
    points: int
    awards: list[Award]

    def points_by_line(self) -> dict[int, int]:
        per_line: dict[int, int] = defaultdict(int)
        for award in self.awards:
            if award.line_no is not None:
                per_line[award.line_no] += award.points
        return dict(per_line)

    @property
    def bonus_points(self) -> int:
        return sum(a.points for a in self.awards if a.line_no is None)


# Usage per (rule id, period) → points the member already earned from that rule in the
# store-local day / week / month / year of this purchase.
Usage = Mapping[tuple[int, str], int]


# ----------------------------------------------------------------------------- matching


def applies(rule: Rule, ctx: Context) -> bool:
    """Whether a rule is in force for this store at this moment."""
    if rule.valid_from is not None and ctx.occurred_at < rule.valid_from:
        return False
    if rule.valid_until is not None and ctx.occurred_at >= rule.valid_until:
        return False
    if rule.store_ids is not None and ctx.store_id not in rule.store_ids:
        return False
    if rule.region_ids is not None and ctx.region_id not in rule.region_ids:
        return False
    return rule.store_kind is None or rule.store_kind == ctx.store_kind


def _matches_line(rule: Rule, line: Line) -> bool:
    categories = rule.params.get("categories") or ()
    skus = rule.params.get("skus") or ()
    return line.category in categories or line.sku in skus


def _promotion_active(rule: Rule, ctx: Context) -> bool:
    local_day = ctx.local.date()
    if rule.kind == RuleKind.member_day:
        return occurs_on(rule.params["rrule"], local_day, rule.params.get("dtstart"))
    if rule.kind == RuleKind.birthday:
        return is_birthday(ctx.birthday, local_day, rule.params.get("window", "day"))
    return False


# ----------------------------------------------------------------------------- computation


@dataclass
class _Part:
    line_no: int | None
    rule: str
    milli: Fraction
    rule_id: int | None = None
    rule_version: int | None = None
    reason: str | None = None


def _base(line: Line, program: Program, fuel_rules: Sequence[Rule]) -> tuple[Fraction, Rule | None]:
    """Exact milli-points: truncating per line would break "rounded once per receipt"."""
    if line.fuel_grade and line.volume_ml:
        for rule in fuel_rules:
            per_litre = rule.params.get("grades", {}).get(line.fuel_grade)
            if per_litre is not None:
                # per_litre is in hundredths of a point per litre (150 = 1.5 pt/L)
                return Fraction(line.volume_ml * int(per_litre), 100), rule
    return Fraction(line.amount * program.earn_points * MILLI, program.earn_amount), None


def _extra(base: Fraction, percent: int) -> Fraction:
    """What a multiplier adds on top of the base (×1.5 → half the base)."""
    return base * (percent - 100) / 100


def _part(line_no: int | None, rule: Rule, milli: Fraction) -> _Part:
    return _Part(line_no, rule.code, milli, rule.id, rule.version)


def compute(
    lines: Iterable[Line],
    ctx: Context,
    program: Program,
    rules: Iterable[Rule],
    usage: Usage | None = None,
) -> Quote:
    """Points a purchase earns, with a per-line, per-rule breakdown (see the module docstring)."""
    usage = usage or {}
    active = [r for r in rules if applies(r, ctx)]
    by_kind: dict[RuleKind, list[Rule]] = defaultdict(list)
    for rule in sorted(active, key=lambda r: r.id):
        by_kind[rule.kind].append(rule)
    promotions = [
        r
        for r in by_kind[RuleKind.member_day] + by_kind[RuleKind.birthday]
        if _promotion_active(r, ctx)
    ]

    parts: list[_Part] = []
    eligible_total = 0
    for line in sorted(lines, key=lambda ln: ln.line_no):
        excluded = next((r for r in by_kind[RuleKind.exclude] if _matches_line(r, line)), None)
        if excluded is not None:
            parts.append(
                _Part(
                    line.line_no,
                    excluded.code,
                    Fraction(0),
                    excluded.id,
                    excluded.version,
                    "excluded",
                )
            )
            continue
        eligible_total += line.amount
        base, fuel_rule = _base(line, program, by_kind[RuleKind.fuel])
        if fuel_rule is None:
            parts.append(_Part(line.line_no, "base", base))
        else:
            parts.append(_part(line.line_no, fuel_rule, base))
        category = max(
            (r for r in by_kind[RuleKind.multiplier] if _matches_line(r, line)),
            key=lambda r: int(r.params["multiplier_percent"]),
            default=None,
        )
        if category is not None:
            parts.append(
                _part(
                    line.line_no,
                    category,
                    _extra(base, int(category.params["multiplier_percent"])),
                )
            )
        for promo in promotions:
            factor = int(promo.params.get("multiplier_percent") or 100)
            if factor != 100:
                parts.append(_part(line.line_no, promo, _extra(base, factor)))
        if ctx.tier_multiplier_percent != 100:
            parts.append(
                _Part(
                    line.line_no,
                    f"tier:{ctx.tier}",
                    _extra(base, ctx.tier_multiplier_percent),
                )
            )

    if eligible_total > 0:
        parts.extend(_receipt_bonuses(by_kind, promotions, ctx, eligible_total))

    parts = _apply_caps(parts, {r.id: r for r in active}, usage)
    return _round(parts, program.rounding)


def _receipt_bonuses(
    by_kind: Mapping[RuleKind, list[Rule]],
    promotions: list[Rule],
    ctx: Context,
    eligible_total: int,
) -> list[_Part]:
    """Welcome, the best basket bonus reached, and promotion bonuses — on eligible lines only."""
    bonuses = []
    if ctx.is_first_purchase:
        bonuses += [_fixed(rule, int(rule.params["points"])) for rule in by_kind[RuleKind.welcome]]
    reached = [r for r in by_kind[RuleKind.basket] if eligible_total >= int(r.params["min_total"])]
    if reached:
        best = max(reached, key=lambda r: (int(r.params["points"]), -r.id))
        bonuses.append(_fixed(best, int(best.params["points"])))
    for promo in promotions:
        bonus = int(promo.params.get("bonus_points") or 0)
        if bonus:
            bonuses.append(_fixed(promo, bonus))
    return bonuses


def _fixed(rule: Rule, points: int) -> _Part:
    return _part(None, rule, Fraction(points * MILLI))


def _allowance(rule: Rule, usage: Usage) -> tuple[int | None, str | None]:
    """Points the rule may still award and, when limited, which limit binds."""
    best: tuple[int | None, str | None] = (None, None)
    for period in PERIODS:
        cap = rule.caps.get(period)
        if cap is None:
            continue
        left = max(0, int(cap) - usage.get((rule.id, period), 0))
        if best[0] is None or left < best[0]:
            best = (left, f"cap_{period}")
    if rule.budget_remaining is not None and (best[0] is None or rule.budget_remaining < best[0]):
        best = (max(0, rule.budget_remaining), "budget")
    return best


def _apply_caps(parts: list[_Part], rules: Mapping[int, Rule], usage: Usage) -> list[_Part]:
    totals: dict[int, Fraction] = defaultdict(Fraction)
    for part in parts:
        if part.rule_id is not None:
            totals[part.rule_id] += part.milli
    for rule_id, milli in totals.items():
        allowed, reason = _allowance(rules[rule_id], usage)
        if allowed is None or milli <= allowed * MILLI:
            continue
        mine = [p for p in parts if p.rule_id == rule_id]
        _scale(mine, allowed * MILLI)
        for part in mine:
            part.reason = reason
    return parts


def _scale(parts: list[_Part], target: int) -> None:
    """Cut parts proportionally so they add up to `target` milli-points exactly."""
    total = sum((p.milli for p in parts), Fraction(0))
    for part in parts:
        part.milli = part.milli * target / total if total else Fraction(0)


def round_points(milli: int | Fraction, rounding: str) -> int:
    """Whole points from (possibly fractional) milli-points."""
    if rounding == "floor":
        return milli // MILLI
    if rounding == "ceil":
        return -(-milli // MILLI)
    if rounding == "round":
        return (milli + MILLI // 2) // MILLI
    raise ValueError(f"unknown rounding {rounding!r}")


def _round(parts: list[_Part], rounding: str) -> Quote:
    total = round_points(sum((p.milli for p in parts), Fraction(0)), rounding)
    groups: dict[tuple[int | None, str], list[int]] = defaultdict(list)
    for i, part in enumerate(parts):
        groups[(part.rule_id, part.rule)].append(i)
    members = list(groups.values())
    group_points = _apportion(
        [sum((parts[i].milli for i in g), Fraction(0)) for g in members], total
    )
    points = [0] * len(parts)
    for group, target in zip(members, group_points, strict=True):
        for i, share in zip(
            group, _apportion([parts[i].milli for i in group], target), strict=True
        ):
            points[i] = share
    awards = [
        Award(p.line_no, p.rule, share, p.rule_id, p.rule_version, p.reason)
        for p, share in zip(parts, points, strict=True)
    ]
    return Quote(points=total, awards=awards)


def _apportion(millis: Sequence[Fraction], total: int) -> list[int]:
    """Whole points adding up to `total`, each the floor of its share or one more (largest
    remainder first, earlier first on ties)."""
    floors = [int(m // MILLI) for m in millis]
    leftover = total - sum(floors)
    order = sorted(range(len(millis)), key=lambda i: (-(millis[i] % MILLI), i))
    for i in order[: max(0, leftover)]:
        floors[i] += 1
    return floors


# ----------------------------------------------------------------------------- returns


def reversal(earned: int, bought: int, returned_before: int, returned_now: int) -> int:
    """Points to take back when `returned_now` more of `bought` comes back.

    Cumulative, so partial returns add up to exactly `earned` once everything is returned and
    never reverse more than was earned.
    """
    if bought <= 0 or earned <= 0 or returned_now <= 0:
        return 0
    before = min(bought, max(0, returned_before))
    after = min(bought, before + returned_now)
    return earned * after // bought - earned * before // bought


def kept_line(line: Line, returned_amount: int, returned_quantity: Decimal) -> Line | None:
    """What the shopper still has of a line after returns, or None when all came back.

    A line with an amount keeps the amount not returned; a zero-amount line is counted by
    quantity. Fuel keeps the litres of the amount kept (rounded down). Returns reverse
    ``compute(all lines) − compute(kept lines)`` with the receipt's original context."""
    quantity = Decimal(line.quantity) - Decimal(returned_quantity)
    if line.amount > 0:
        amount = line.amount - returned_amount
        if amount <= 0:
            return None
        volume = line.volume_ml * amount // line.amount if line.volume_ml else line.volume_ml
    else:
        if quantity <= 0:
            return None
        amount = 0
        volume = (
            int(line.volume_ml * quantity // Decimal(line.quantity))
            if line.volume_ml
            else line.volume_ml
        )
    return replace(line, amount=amount, quantity=max(quantity, Decimal(0)), volume_ml=volume)
