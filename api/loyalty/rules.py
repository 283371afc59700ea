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
4. Fixed bonuses are added per receipt: ``welcome`` (first purchase), ``basket`` (total at least
   ``min_total``), and the bonus points of a member day or birthday rule.
5. Caps and budgets apply per rule after that: a rule's points are cut to what its caps per
   member (day / week / month / year, in store-local time) and its total budget still allow;
   a rule cut to nothing is recorded as a zero-point award with the reason.
6. Rounding is per receipt (``floor`` by default): exact milli-points are summed and rounded
   once; the breakdown is apportioned by largest remainder so it always adds up to the total.
"""

from __future__ import annotations

import calendar
import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

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


# ----------------------------------------------------------------------------- calendars


def birthday_in_year(birthday: date, year: int) -> date:
    """The birthday's date in `year`; 29 February counts on 28 February in common years."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def is_birthday(birthday: date | None, local_day: date, window: str) -> bool:
    if birthday is None:
        return False
    this_year = birthday_in_year(birthday, local_day.year)
    if window == "day":
        return local_day == this_year
    if window == "week":
        return local_day.isocalendar()[:2] == this_year.isocalendar()[:2]
    if window == "month":
        return local_day.month == this_year.month
    raise ValueError(f"unknown birthday window {window!r}")


def occurs_on(rrule_text: str, local_day: date, dtstart: date | None = None) -> bool:
    """Whether an RFC 5545 RRULE has an occurrence on this local calendar day."""
    start = datetime.combine(dtstart or date(2000, 1, 1), time.min)
    recurrence = rrulestr(rrule_text, dtstart=start)
    day_start = datetime.combine(local_day, time.min)
    upcoming = recurrence.after(day_start, inc=True)
    return upcoming is not None and upcoming < day_start + timedelta(days=1)


def period_bounds(local: datetime, period: str) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of the local day/week/month/year, as aware times."""
    day = datetime.combine(local.date(), time.min, tzinfo=local.tzinfo)
    if period == "day":
        return day, _add_days(day, 1)
    if period == "week":
        start = _add_days(day, -day.weekday())
        return start, _add_days(start, 7)
    if period == "month":
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start, end
    if period == "year":
        start = day.replace(month=1, day=1)
        return start, start.replace(year=start.year + 1)
    raise ValueError(period)


def _add_days(moment: datetime, days: int) -> datetime:
    """Calendar days in local time (DST-safe: wall clock stays at midnight)."""
    return datetime.combine(moment.date() + timedelta(days=days), time.min, tzinfo=moment.tzinfo)


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
        start = rule.params.get("dtstart")
        return occurs_on(
            rule.params["rrule"], local_day, date.fromisoformat(start) if start else None
        )
    if rule.kind == RuleKind.birthday:
        return is_birthday(ctx.birthday, local_day, rule.params.get("window", "day"))
    return False


# ----------------------------------------------------------------------------- computation


@dataclass
class _Part:
    line_no: int | None
    rule: str
    milli: int
    rule_id: int | None = None
    rule_version: int | None = None
    reason: str | None = None


def _base(line: Line, program: Program, fuel_rules: Sequence[Rule]) -> tuple[int, Rule | None]:
    if line.fuel_grade and line.volume_ml:
        for rule in fuel_rules:
            per_litre = rule.params.get("grades", {}).get(line.fuel_grade)
            if per_litre is not None:
                # per_litre is in hundredths of a point per litre (150 = 1.5 pt/L)
                return line.volume_ml * int(per_litre) // 100, rule
    return line.amount * program.earn_points * MILLI // program.earn_amount, None


def _part(line_no: int | None, rule: Rule, milli: int) -> _Part:
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
    for line in sorted(lines, key=lambda ln: ln.line_no):
        excluded = next((r for r in by_kind[RuleKind.exclude] if _matches_line(r, line)), None)
        if excluded is not None:
            parts.append(
                _Part(line.line_no, excluded.code, 0, excluded.id, excluded.version, "excluded")
            )
            continue
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
                    base * (int(category.params["multiplier_percent"]) - 100) // 100,
                )
            )
        for promo in promotions:
            factor = int(promo.params.get("multiplier_percent") or 100)
            if factor != 100:
                parts.append(_part(line.line_no, promo, base * (factor - 100) // 100))
        if ctx.tier_multiplier_percent != 100:
            parts.append(
                _Part(
                    line.line_no,
                    f"tier:{ctx.tier}",
                    base * (ctx.tier_multiplier_percent - 100) // 100,
                )
            )

    if ctx.is_first_purchase:
        for rule in by_kind[RuleKind.welcome]:
            parts.append(_part(None, rule, int(rule.params["points"]) * MILLI))
    for rule in by_kind[RuleKind.basket]:
        if ctx.total >= int(rule.params["min_total"]):
            parts.append(_part(None, rule, int(rule.params["points"]) * MILLI))
    for promo in promotions:
        bonus = int(promo.params.get("bonus_points") or 0)
        if bonus:
            parts.append(_part(None, promo, bonus * MILLI))

    parts = _apply_caps(parts, {r.id: r for r in active}, usage)
    return _round(parts, program.rounding)


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
    totals: dict[int, int] = defaultdict(int)
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
    total = sum(p.milli for p in parts)
    scaled = [p.milli * target // total if total else 0 for p in parts]
    shortfall = target - sum(scaled)
    order = sorted(range(len(parts)), key=lambda i: -(parts[i].milli * target % max(total, 1)))
    for i in order[:shortfall]:
        scaled[i] += 1
    for part, milli in zip(parts, scaled, strict=True):
        part.milli = milli


def round_points(milli: int, rounding: str) -> int:
    if rounding == "floor":
        return milli // MILLI
    if rounding == "ceil":
        return -(-milli // MILLI)
    if rounding == "round":
        return (milli + MILLI // 2) // MILLI
    raise ValueError(f"unknown rounding {rounding!r}")


def _round(parts: list[_Part], rounding: str) -> Quote:
    total = round_points(sum(p.milli for p in parts), rounding)
    floors = [p.milli // MILLI for p in parts]
    leftover = total - sum(floors)
    order = sorted(range(len(parts)), key=lambda i: (-(parts[i].milli % MILLI), i))
    for i in order[: max(0, leftover)]:
        floors[i] += 1
    awards = [
        Award(p.line_no, p.rule, points, p.rule_id, p.rule_version, p.reason)
        for p, points in zip(parts, floors, strict=True)
    ]
    return Quote(points=total, awards=awards)


# ----------------------------------------------------------------------------- returns


def reversal(earned: int, bought: int, returned_before: int, returned_now: int) -> int:
    """Points to take back when `returned_now` more of `bought` comes back.

    Cumulative, so partial returns add up to exactly `earned` once everything is returned and
    never reverse more than was earned.
    """
    if bought <= 0:
        return 0
    after = min(bought, returned_before + returned_now)
    target_after = earned * after // bought
    target_before = earned * min(bought, returned_before) // bought
    return target_after - target_before
