"""Earning rules (api/loyalty/rules.py): every behaviour as a table, plus breakdown properties.

Pure functions only: no database, no clock. Amounts are minor units, volumes millilitres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.loyalty.program.rules import (
    Context,
    Line,
    Program,
    Quote,
    Rule,
    RuleKind,
    applies,
    birthday_in_year,
    compute,
    is_birthday,
    occurs_on,
    period_bounds,
    reversal,
    round_points,
)

SHANGHAI = "Asia/Shanghai"
BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"

# Monday 16 November 2026, 12:00 in Shanghai: no member day, nobody's birthday below.
PLAIN_AT = datetime(2026, 11, 16, 4, 0, tzinfo=UTC)
# Wednesday 18 November 2026, 12:00 in Shanghai: the weekly and the monthly member day.
WEDNESDAY_AT = datetime(2026, 11, 18, 4, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def item(
    no: int = 1, amount: int = 1000, category: str = "grocery", sku: str | None = None
) -> Line:
    return Line(no, sku or f"SKU-{no}", category, Decimal(1), amount)


def fuel(no: int, grade: str, volume_ml: int | None, amount: int = 30000) -> Line:
    litres = Decimal(volume_ml or 0) / 1000
    return Line(no, f"FUEL-{grade}", "fuel", litres, amount, grade, volume_ml)


def rule(kind: RuleKind, params: Mapping[str, Any], rule_id: int, **extra: Any) -> Rule:
    extra.setdefault("code", f"{kind.value}-{rule_id}")
    extra.setdefault("version", 1)
    return Rule(id=rule_id, kind=kind, params=params, **extra)


def context(**overrides: Any) -> Context:
    values: dict[str, Any] = {
        "occurred_at": PLAIN_AT,
        "store_id": 1,
        "region_id": 10,
        "store_kind": "supermarket",
        "timezone": SHANGHAI,
        "total": 0,
    }
    values.update(overrides)
    return Context(**values)


def quote(
    lines: Sequence[Line],
    rules: Sequence[Rule] = (),
    program: Program | None = None,
    usage: Mapping[tuple[int, str], int] | None = None,
    **ctx: Any,
) -> Quote:
    ctx.setdefault("total", sum(line.amount for line in lines))
    return compute(lines, context(**ctx), program or Program(), rules, usage)


def points_of(q: Quote, code: str) -> int:
    return sum(a.points for a in q.awards if a.rule == code)


# ----------------------------------------------------------------------------- rule set

NO_TOBACCO = rule(RuleKind.exclude, {"categories": ["tobacco"]}, 1, code="no-tobacco")
NO_LOTTERY = rule(RuleKind.exclude, {"skus": ["LOTTO-649", "LOTTO-SCRATCH"]}, 2, code="no-lotto")
NO_GIFT_CARDS = rule(RuleKind.exclude, {"skus": ["GIFT-100", "GIFT-500"]}, 3, code="no-gift")
EXCLUSIONS = (NO_TOBACCO, NO_LOTTERY, NO_GIFT_CARDS)

FRESH_X3 = rule(
    RuleKind.multiplier, {"categories": ["fresh"], "multiplier_percent": 300}, 20, code="fresh-x3"
)
FRESH_X2 = rule(
    RuleKind.multiplier, {"categories": ["fresh"], "multiplier_percent": 200}, 21, code="fresh-x2"
)
APPLE_X4 = rule(
    RuleKind.multiplier, {"skus": ["APPLE"], "multiplier_percent": 400}, 22, code="apple-x4"
)
APPLE_X2 = rule(
    RuleKind.multiplier, {"skus": ["APPLE"], "multiplier_percent": 200}, 23, code="apple-x2"
)
TOBACCO_X5 = rule(
    RuleKind.multiplier, {"categories": ["tobacco"], "multiplier_percent": 500}, 24, code="tob-x5"
)
LOTTO_X5 = rule(
    RuleKind.multiplier, {"skus": ["LOTTO-649"], "multiplier_percent": 500}, 25, code="lotto-x5"
)

GRADES = {"92#": 100, "95#": 150, "98#": 200}
FUEL = rule(RuleKind.fuel, {"grades": GRADES}, 30, code="fuel-grades")

WEDNESDAY_X2 = rule(
    RuleKind.member_day,
    {"rrule": "FREQ=WEEKLY;BYDAY=WE", "multiplier_percent": 200},
    40,
    code="wednesday",
)
BIRTHDAY_X2 = rule(
    RuleKind.birthday, {"window": "day", "multiplier_percent": 200}, 45, code="birthday"
)

WELCOME = rule(RuleKind.welcome, {"points": 50}, 50, code="welcome")
BASKET = rule(RuleKind.basket, {"min_total": 5000, "points": 20}, 51, code="basket-50")


# ----------------------------------------------------------------------------- base rate


@pytest.mark.parametrize(
    ("amounts", "program", "expected"),
    [
        pytest.param([100], Program(), 1, id="1.00 at 1pt per 1.00 earns 1"),
        pytest.param([1000], Program(), 10, id="10.00 earns 10"),
        pytest.param([999], Program(), 9, id="9.99 floors to 9"),
        pytest.param([99], Program(), 0, id="0.99 floors to 0"),
        pytest.param([0], Program(), 0, id="0.00 earns 0"),
        pytest.param([], Program(), 0, id="empty receipt earns 0"),
        pytest.param([60, 60], Program(), 1, id="two lines of 0.60 floor per receipt to 1"),
        pytest.param([40, 40, 40], Program(), 1, id="three lines of 0.40 floor to 1"),
        pytest.param([150], Program(rounding="round"), 2, id="round 1.50 up to 2"),
        pytest.param([149], Program(rounding="round"), 1, id="round 1.49 down to 1"),
        pytest.param([70, 80], Program(rounding="round"), 2, id="round per receipt 0.70+0.80"),
        pytest.param([60, 60], Program(rounding="round"), 1, id="round per receipt 0.60+0.60"),
        pytest.param([101], Program(rounding="ceil"), 2, id="ceil 1.01 to 2"),
        pytest.param([100], Program(rounding="ceil"), 1, id="ceil exact 1.00 stays 1"),
        pytest.param([1], Program(rounding="ceil"), 1, id="ceil 0.01 to 1"),
        pytest.param([30, 30], Program(rounding="ceil"), 1, id="ceil per receipt 0.30+0.30"),
        pytest.param([0], Program(rounding="ceil"), 0, id="ceil 0.00 stays 0"),
        pytest.param([1050], Program(earn_points=2), 21, id="2 pts per 1.00 on 10.50"),
        pytest.param([175], Program(earn_points=2), 3, id="2 pts per 1.00 on 1.75 floors"),
        pytest.param([499], Program(earn_amount=500), 0, id="1 pt per 5.00 on 4.99"),
        pytest.param([500], Program(earn_amount=500), 1, id="1 pt per 5.00 on 5.00"),
        pytest.param([2499], Program(earn_amount=500), 4, id="1 pt per 5.00 on 24.99"),
        pytest.param([250, 250], Program(earn_amount=500), 1, id="1 pt per 5.00 on 2.50+2.50"),
        pytest.param([100, 100, 100], Program(earn_amount=300), 1, id="1 pt per 3.00 on 3x1.00"),
        pytest.param([100, 200], Program(earn_amount=300), 1, id="1 pt per 3.00 on 1.00+2.00"),
        pytest.param(
            [100] * 7, Program(earn_points=1, earn_amount=700), 1, id="1 pt per 7.00 on 7x1.00"
        ),
        pytest.param([101, 101], Program(3, 200, "round"), 3, id="3 pts per 2.00 round"),
        pytest.param([1000], Program(earn_points=0), 0, id="rate 0 earns nothing"),
    ],
)
def test_base_rate(amounts: list[int], program: Program, expected: int) -> None:
    q = quote([item(no, amount) for no, amount in enumerate(amounts, 1)], program=program)
    assert q.points == expected
    assert sum(a.points for a in q.awards) == expected
    assert all(a.rule == "base" and a.rule_id is None for a in q.awards)
    assert sorted(a.line_no for a in q.awards) == list(range(1, len(amounts) + 1))


@pytest.mark.parametrize(
    ("milli", "rounding", "expected"),
    [
        pytest.param(1999, "floor", 1, id="floor 1.999"),
        pytest.param(1000, "floor", 1, id="floor 1.000"),
        pytest.param(1499, "round", 1, id="round 1.499"),
        pytest.param(1500, "round", 2, id="round half up 1.500"),
        pytest.param(1000, "ceil", 1, id="ceil 1.000"),
        pytest.param(1001, "ceil", 2, id="ceil 1.001"),
        pytest.param(0, "ceil", 0, id="ceil 0"),
    ],
)
def test_round_points(milli: int, rounding: str, expected: int) -> None:
    assert round_points(milli, rounding) == expected


def test_round_points_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="rounding"):
        round_points(1000, "bankers")


# ----------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize(
    ("lines", "rules", "ctx", "expected", "excluded"),
    [
        pytest.param(
            [item(1, 2000, "tobacco")], EXCLUSIONS, {}, 0, {1: "no-tobacco"}, id="tobacco category"
        ),
        pytest.param(
            [item(1, 1000, "lottery", "LOTTO-649")],
            EXCLUSIONS,
            {},
            0,
            {1: "no-lotto"},
            id="lottery by SKU",
        ),
        pytest.param(
            [item(1, 10000, "services", "GIFT-100")],
            EXCLUSIONS,
            {},
            0,
            {1: "no-gift"},
            id="gift card by SKU",
        ),
        pytest.param(
            [item(1, 2000, "tobacco"), item(2, 550, "grocery")],
            EXCLUSIONS,
            {},
            5,
            {1: "no-tobacco"},
            id="mixed basket: only the rest earns",
        ),
        pytest.param(
            [item(1, 2000, "tobacco"), item(2, 1000, "grocery", "GIFT-500"), item(3, 300)],
            EXCLUSIONS,
            {},
            3,
            {1: "no-tobacco", 2: "no-gift"},
            id="two excluded lines of three",
        ),
        pytest.param(
            [item(1, 2000, "tobacco")],
            (NO_TOBACCO, TOBACCO_X5),
            {},
            0,
            {1: "no-tobacco"},
            id="exclusion beats category multiplier",
        ),
        pytest.param(
            [item(1, 2000, "lottery", "LOTTO-649")],
            (NO_LOTTERY, LOTTO_X5),
            {},
            0,
            {1: "no-lotto"},
            id="exclusion beats SKU multiplier",
        ),
        pytest.param(
            [item(1, 2000, "tobacco"), item(2, 1000)],
            (NO_TOBACCO, WEDNESDAY_X2),
            {"occurred_at": WEDNESDAY_AT},
            20,
            {1: "no-tobacco"},
            id="exclusion beats member day",
        ),
        pytest.param(
            [item(1, 2000, "tobacco")],
            (NO_TOBACCO, BIRTHDAY_X2),
            {"birthday": date(1990, 11, 16)},
            0,
            {1: "no-tobacco"},
            id="exclusion beats birthday",
        ),
        pytest.param(
            [item(1, 2000, "tobacco")],
            (NO_TOBACCO,),
            {"tier": "GOLD", "tier_multiplier_percent": 200},
            0,
            {1: "no-tobacco"},
            id="exclusion beats tier",
        ),
        pytest.param(
            [fuel(1, "98#", 40000)],
            (rule(RuleKind.exclude, {"skus": ["FUEL-98#"]}, 4, code="no-98"), FUEL),
            {"store_kind": "fuel_station"},
            0,
            {1: "no-98"},
            id="exclusion beats fuel points",
        ),
        pytest.param(
            [item(1, 2000, "tobacco")],
            (rule(RuleKind.exclude, {"categories": ["tobacco"]}, 5, store_ids=frozenset({2})),),
            {},
            20,
            {},
            id="exclusion scoped to another store does not apply",
        ),
        pytest.param(
            [item(1, 2000, "tobacco-free")],
            EXCLUSIONS,
            {},
            20,
            {},
            id="category must match exactly",
        ),
    ],
)
def test_exclusions(
    lines: list[Line],
    rules: Sequence[Rule],
    ctx: dict[str, Any],
    expected: int,
    excluded: dict[int, str],
) -> None:
    q = quote(lines, rules, **ctx)
    assert q.points == expected
    for line_no, code in excluded.items():
        mine = [a for a in q.awards if a.line_no == line_no]
        assert [a.points for a in mine] == [0]
        assert (mine[0].reason, mine[0].rule) == ("excluded", code)
        assert mine[0].rule_id is not None and mine[0].rule_version is not None
    assert not [a for a in q.awards if a.reason == "excluded" and a.line_no not in excluded]


# ----------------------------------------------------------------------------- multipliers


@pytest.mark.parametrize(
    ("lines", "rules", "expected", "winners"),
    [
        pytest.param([item(1, 1000, "fresh")], [FRESH_X3], 30, {1: "fresh-x3"}, id="category x3"),
        pytest.param(
            [item(1, 1000, "fruit", "APPLE")], [APPLE_X4], 40, {1: "apple-x4"}, id="SKU x4"
        ),
        pytest.param(
            [item(1, 1000, "fresh")],
            [FRESH_X2, FRESH_X3],
            30,
            {1: "fresh-x3"},
            id="highest of two category rules wins",
        ),
        pytest.param(
            [item(1, 1000, "fresh", "APPLE")],
            [FRESH_X3, APPLE_X4],
            40,
            {1: "apple-x4"},
            id="SKU x4 beats category x3, not compounded",
        ),
        pytest.param(
            [item(1, 1000, "fresh", "APPLE")],
            [FRESH_X3, APPLE_X2],
            30,
            {1: "fresh-x3"},
            id="category x3 beats SKU x2",
        ),
        pytest.param([item(1, 1000, "grocery")], [FRESH_X3], 10, {}, id="other category x1"),
        pytest.param(
            [item(1, 1000, "fresh"), item(2, 500, "grocery"), item(3, 200, "fruit", "APPLE")],
            [FRESH_X3, APPLE_X4],
            43,
            {1: "fresh-x3", 3: "apple-x4"},
            id="per line in a mixed basket",
        ),
        pytest.param(
            [item(1, 50, "fresh"), item(2, 50)],
            [FRESH_X3],
            2,
            {1: "fresh-x3"},
            id="fractions summed before the receipt floor",
        ),
        pytest.param(
            [item(no, 33, "fresh") for no in range(1, 11)],
            [rule(RuleKind.multiplier, {"categories": ["fresh"], "multiplier_percent": 150}, 26)],
            4,
            {},
            id="x1.5 on ten lines of 0.33 is 4.95",
        ),
    ],
)
def test_multipliers(
    lines: list[Line], rules: list[Rule], expected: int, winners: dict[int, str]
) -> None:
    q = quote(lines, rules)
    assert q.points == expected
    for line_no, code in winners.items():
        codes = [a.rule for a in q.awards if a.line_no == line_no and a.rule != "base"]
        assert codes == [code]


# ----------------------------------------------------------------------------- fuel


@pytest.mark.parametrize(
    ("lines", "rules", "ctx", "expected", "fuel_points"),
    [
        pytest.param([fuel(1, "95#", 40000)], [FUEL], {}, 60, 60, id="40 L of 95# earn 60"),
        pytest.param([fuel(1, "92#", 40000)], [FUEL], {}, 40, 40, id="40 L of 92# earn 40"),
        pytest.param([fuel(1, "98#", 40000)], [FUEL], {}, 80, 80, id="40 L of 98# earn 80"),
        pytest.param(
            [fuel(1, "95#", 33333)], [FUEL], {}, 49, 49, id="33.333 L of 95# floor 49.9995"
        ),
        pytest.param(
            [fuel(1, "95#", 40000, amount=99999)],
            [FUEL],
            {},
            60,
            60,
            id="fuel points instead of the amount rate",
        ),
        pytest.param(
            [fuel(1, "0#", 40000, amount=25000)],
            [FUEL],
            {},
            250,
            0,
            id="grade not priced falls back to amount rate",
        ),
        pytest.param(
            [fuel(1, "95#", None, amount=25000)],
            [FUEL],
            {},
            250,
            0,
            id="no volume falls back to amount rate",
        ),
        pytest.param([fuel(1, "95#", 40000)], [], {}, 300, 0, id="no fuel rule: amount rate"),
        pytest.param(
            [fuel(1, "95#", 40000)],
            [rule(RuleKind.fuel, {"grades": GRADES}, 31, store_kind="fuel_station")],
            {"store_kind": "supermarket"},
            300,
            0,
            id="fuel rule for stations only, at a supermarket",
        ),
        pytest.param(
            [fuel(1, "95#", 40000)],
            [rule(RuleKind.fuel, {"grades": GRADES}, 31, store_kind="fuel_station")],
            {"store_kind": "fuel_station"},
            60,
            60,
            id="fuel rule for stations only, at a station",
        ),
        pytest.param(
            [fuel(1, "95#", 40000), item(2, 1050, "snacks")],
            [FUEL],
            {},
            70,
            60,
            id="fuel line plus shop line",
        ),
        pytest.param(
            [fuel(1, "92#", 500), fuel(2, "92#", 500)],
            [FUEL],
            {},
            1,
            1,
            id="two half litres floor per receipt",
        ),
        pytest.param(
            [fuel(1, "95#", 40000)],
            [FUEL],
            {"tier": "GOLD", "tier_multiplier_percent": 150},
            90,
            60,
            id="Gold multiplies fuel points",
        ),
        pytest.param(
            [fuel(1, "95#", 40000)],
            [FUEL, WEDNESDAY_X2],
            {"occurred_at": WEDNESDAY_AT},
            120,
            60,
            id="member day multiplies fuel points",
        ),
    ],
)
def test_fuel_points_per_litre(
    lines: list[Line], rules: list[Rule], ctx: dict[str, Any], expected: int, fuel_points: int
) -> None:
    q = quote(lines, rules, **ctx)
    assert q.points == expected
    fuel_awards = [a for a in q.awards if a.rule.startswith("fuel")]
    assert sum(a.points for a in fuel_awards) == fuel_points
    if fuel_points:
        assert "base" not in {a.rule for a in q.awards if a.line_no == 1}
        assert all(a.rule_id in (30, 31) and a.rule_version == 1 for a in fuel_awards)


# ----------------------------------------------------------------------------- tier


@pytest.mark.parametrize(
    ("tier", "percent", "amounts", "expected", "tier_points"),
    [
        pytest.param(None, 100, [1000], 10, None, id="no tier"),
        pytest.param("SILVER", 100, [1000], 10, None, id="Silver x1 adds no award"),
        pytest.param("GOLD", 150, [1000], 15, 5, id="Gold x1.5"),
        pytest.param("PLATINUM", 200, [1000], 20, 10, id="Platinum x2"),
        pytest.param("GOLD", 150, [150], 2, 1, id="Gold on 1.50 is 2.25, tier has the larger rest"),
        pytest.param("GOLD", 150, [60, 60], 1, 0, id="Gold on 0.60+0.60 is 1.8"),
        pytest.param("GOLD", 150, [100, 100], 3, 1, id="Gold on 1.00+1.00 is 3"),
    ],
)
def test_tier_multiplier(
    tier: str | None, percent: int, amounts: list[int], expected: int, tier_points: int | None
) -> None:
    lines = [item(no, amount) for no, amount in enumerate(amounts, 1)]
    q = quote(lines, tier=tier, tier_multiplier_percent=percent)
    assert q.points == expected
    tier_awards = [a for a in q.awards if a.rule.startswith("tier:")]
    if tier_points is None:
        assert tier_awards == []
    else:
        assert {a.rule for a in tier_awards} == {f"tier:{tier}"}
        assert sum(a.points for a in tier_awards) == tier_points
        assert all(a.rule_id is None for a in tier_awards)


# ----------------------------------------------------------------------------- bonuses


@pytest.mark.parametrize(
    ("amounts", "ctx", "expected", "bonuses"),
    [
        pytest.param([1000], {"is_first_purchase": True}, 60, {"welcome": 50}, id="welcome"),
        pytest.param([1000], {}, 10, {}, id="no welcome after the first purchase"),
        pytest.param([4999], {}, 49, {}, id="basket below min_total"),
        pytest.param([5000], {}, 70, {"basket-50": 20}, id="basket at min_total"),
        pytest.param([8000], {}, 100, {"basket-50": 20}, id="basket above min_total"),
        pytest.param([2500, 2500], {}, 70, {"basket-50": 20}, id="basket counts the receipt total"),
        pytest.param(
            [5000],
            {"is_first_purchase": True},
            120,
            {"welcome": 50, "basket-50": 20},
            id="welcome and basket together",
        ),
        pytest.param(
            [1000] * 5,
            {"is_first_purchase": True},
            120,
            {"welcome": 50, "basket-50": 20},
            id="bonuses once per receipt, not per line",
        ),
        pytest.param(
            [1000],
            {"is_first_purchase": True, "tier": "GOLD", "tier_multiplier_percent": 150},
            65,
            {"welcome": 50},
            id="bonus not multiplied by tier",
        ),
    ],
)
def test_welcome_and_basket_bonus(
    amounts: list[int], ctx: dict[str, Any], expected: int, bonuses: dict[str, int]
) -> None:
    lines = [item(no, amount) for no, amount in enumerate(amounts, 1)]
    q = quote(lines, [WELCOME, BASKET], **ctx)
    assert q.points == expected
    receipt_awards = [a for a in q.awards if a.line_no is None]
    assert {a.rule: a.points for a in receipt_awards} == bonuses
    assert q.bonus_points == sum(bonuses.values())
    assert all(a.rule_id in (50, 51) and a.rule_version == 1 for a in receipt_awards)


# ----------------------------------------------------------------------------- scope


@pytest.mark.parametrize(
    ("scope", "ctx", "in_force"),
    [
        pytest.param({}, {}, True, id="unscoped"),
        pytest.param({"store_ids": frozenset({1, 2})}, {}, True, id="store in store_ids"),
        pytest.param({"store_ids": frozenset({2, 3})}, {}, False, id="store not in store_ids"),
        pytest.param({"region_ids": frozenset({10})}, {}, True, id="region in region_ids"),
        pytest.param({"region_ids": frozenset({11})}, {}, False, id="region not in region_ids"),
        pytest.param({"store_kind": "supermarket"}, {}, True, id="store kind matches"),
        pytest.param({"store_kind": "fuel_station"}, {}, False, id="store kind differs"),
        pytest.param({"valid_from": PLAIN_AT}, {}, True, id="valid_from is inclusive"),
        pytest.param(
            {"valid_from": at("2026-11-16T12:00+08:00")},
            {},
            True,
            id="valid_from inclusive in another offset",
        ),
        pytest.param(
            {"valid_from": PLAIN_AT + timedelta(microseconds=1)},
            {},
            False,
            id="before valid_from",
        ),
        pytest.param({"valid_until": PLAIN_AT}, {}, False, id="valid_until is exclusive"),
        pytest.param(
            {"valid_until": PLAIN_AT + timedelta(microseconds=1)},
            {},
            True,
            id="just before valid_until",
        ),
        pytest.param(
            {
                "valid_from": PLAIN_AT - timedelta(days=7),
                "valid_until": PLAIN_AT + timedelta(days=7),
                "store_ids": frozenset({1}),
                "region_ids": frozenset({10}),
                "store_kind": "supermarket",
            },
            {},
            True,
            id="every scope matches",
        ),
        pytest.param(
            {"store_ids": frozenset({1}), "region_ids": frozenset({10})},
            {"region_id": 11},
            False,
            id="store matches but region does not",
        ),
    ],
)
def test_rule_scope_and_validity(
    scope: dict[str, Any], ctx: dict[str, Any], in_force: bool
) -> None:
    scoped = rule(
        RuleKind.multiplier, {"categories": ["fresh"], "multiplier_percent": 300}, 27, **scope
    )
    assert applies(scoped, context(**ctx)) is in_force
    assert quote([item(1, 1000, "fresh")], [scoped], **ctx).points == (30 if in_force else 10)


# ----------------------------------------------------------------------------- member day

WEEKLY_WE = "FREQ=WEEKLY;BYDAY=WE"
MONTHLY_18 = "FREQ=MONTHLY;BYMONTHDAY=18"
WEEKLY_SU = "FREQ=WEEKLY;BYDAY=SU"


@pytest.mark.parametrize(
    ("rrule", "timezone", "occurred_at", "member_day"),
    [
        pytest.param(WEEKLY_WE, SHANGHAI, "2026-11-17T16:30Z", True, id="WE Shanghai Wed 00:30"),
        pytest.param(WEEKLY_WE, BERLIN, "2026-11-17T16:30Z", False, id="WE Berlin Tue 17:30"),
        pytest.param(
            WEEKLY_WE, SHANGHAI, "2026-11-17T15:59:59Z", False, id="WE Shanghai Tue 23:59"
        ),
        pytest.param(WEEKLY_WE, SHANGHAI, "2026-11-18T15:59Z", True, id="WE Shanghai Wed 23:59"),
        pytest.param(WEEKLY_WE, SHANGHAI, "2026-11-18T16:00Z", False, id="WE Shanghai Thu 00:00"),
        pytest.param(WEEKLY_WE, BERLIN, "2026-11-18T22:59Z", True, id="WE Berlin Wed 23:59"),
        pytest.param(WEEKLY_WE, BERLIN, "2026-11-18T23:00Z", False, id="WE Berlin Thu 00:00"),
        pytest.param(WEEKLY_WE, NEW_YORK, "2026-11-19T04:59Z", True, id="WE New York Wed 23:59"),
        pytest.param(WEEKLY_WE, NEW_YORK, "2026-11-18T04:59Z", False, id="WE New York Tue 23:59"),
        pytest.param(
            "RRULE:FREQ=WEEKLY;BYDAY=WE", SHANGHAI, "2026-11-18T04:00Z", True, id="RRULE: prefix"
        ),
        pytest.param(MONTHLY_18, SHANGHAI, "2026-11-17T16:00Z", True, id="18th Shanghai 00:00"),
        pytest.param(MONTHLY_18, BERLIN, "2026-11-17T16:00Z", False, id="18th Berlin still 17th"),
        pytest.param(MONTHLY_18, SHANGHAI, "2026-11-18T16:00Z", False, id="18th Shanghai now 19th"),
        pytest.param(MONTHLY_18, BERLIN, "2026-11-18T16:00Z", True, id="18th Berlin 17:00"),
        pytest.param(MONTHLY_18, SHANGHAI, "2026-02-18T04:00Z", True, id="18th in February"),
        pytest.param(MONTHLY_18, SHANGHAI, "2026-02-17T04:00Z", False, id="17th is not the 18th"),
        pytest.param(
            "FREQ=MONTHLY;BYMONTHDAY=-1", SHANGHAI, "2028-02-29T04:00Z", True, id="last day leap"
        ),
        pytest.param(
            "FREQ=MONTHLY;BYMONTHDAY=-1", SHANGHAI, "2028-02-28T04:00Z", False, id="not last day"
        ),
        pytest.param(
            "FREQ=MONTHLY;BYMONTHDAY=31", SHANGHAI, "2026-11-30T04:00Z", False, id="no 31 Nov"
        ),
        # Berlin, last Sunday of March 2026: 02:00 CET jumps to 03:00 CEST (a 23-hour day).
        pytest.param(WEEKLY_SU, BERLIN, "2026-03-28T22:59Z", False, id="DST spring Sat 23:59 CET"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-03-28T23:00Z", True, id="DST spring Sun 00:00 CET"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-03-29T01:00Z", True, id="DST spring Sun 03:00 CEST"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-03-29T21:59Z", True, id="DST spring Sun 23:59 CEST"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-03-29T22:00Z", False, id="DST spring Mon 00:00 CEST"),
        # Berlin, last Sunday of October 2026: 03:00 CEST falls back to 02:00 CET (25 hours).
        pytest.param(WEEKLY_SU, BERLIN, "2026-10-24T21:59Z", False, id="DST autumn Sat 23:59"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-10-24T22:00Z", True, id="DST autumn Sun 00:00 CEST"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-10-25T00:30Z", True, id="DST autumn 02:30 CEST"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-10-25T01:30Z", True, id="DST autumn 02:30 CET"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-10-25T22:59Z", True, id="DST autumn Sun 23:59 CET"),
        pytest.param(WEEKLY_SU, BERLIN, "2026-10-25T23:00Z", False, id="DST autumn Mon 00:00 CET"),
    ],
)
def test_member_day_in_store_local_time(
    rrule: str, timezone: str, occurred_at: str, member_day: bool
) -> None:
    day_rule = rule(RuleKind.member_day, {"rrule": rrule, "multiplier_percent": 200}, 41)
    q = quote([item(1, 1000)], [day_rule], occurred_at=at(occurred_at), timezone=timezone)
    assert q.points == (20 if member_day else 10)
    local_day = context(occurred_at=at(occurred_at), timezone=timezone).local.date()
    assert occurs_on(rrule, local_day) is member_day


@pytest.mark.parametrize(
    ("params", "occurred_at", "expected", "bonus"),
    [
        pytest.param({"multiplier_percent": 200}, WEDNESDAY_AT, 20, 0, id="multiplier x2"),
        pytest.param({"multiplier_percent": 300}, WEDNESDAY_AT, 30, 0, id="multiplier x3"),
        pytest.param({"bonus_points": 100}, WEDNESDAY_AT, 110, 100, id="bonus 100"),
        pytest.param(
            {"multiplier_percent": 200, "bonus_points": 100},
            WEDNESDAY_AT,
            120,
            100,
            id="multiplier and bonus",
        ),
        pytest.param(
            {"multiplier_percent": 200, "bonus_points": 100},
            PLAIN_AT,
            10,
            0,
            id="neither on a Monday",
        ),
        pytest.param(
            {"multiplier_percent": 200},
            at("2024-11-20T04:00Z"),
            20,
            0,
            id="receipt from a 2024 Wednesday computed today still earns",
        ),
        pytest.param(
            {"multiplier_percent": 200, "dtstart": "2026-12-01"},
            WEDNESDAY_AT,
            10,
            0,
            id="not before dtstart",
        ),
        pytest.param(
            {"multiplier_percent": 200, "dtstart": date(2026, 11, 18)},
            WEDNESDAY_AT,
            20,
            0,
            id="dtstart given as a date",
        ),
        pytest.param(
            {
                "rrule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE",
                "dtstart": "2026-11-04",
                "bonus_points": 5,
            },
            WEDNESDAY_AT,
            15,
            5,
            id="every other Wednesday, on",
        ),
        pytest.param(
            {
                "rrule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE",
                "dtstart": "2026-11-11",
                "bonus_points": 5,
            },
            WEDNESDAY_AT,
            10,
            0,
            id="every other Wednesday, off",
        ),
    ],
)
def test_member_day_variants(
    params: dict[str, Any], occurred_at: datetime, expected: int, bonus: int
) -> None:
    day_rule = rule(RuleKind.member_day, {"rrule": WEEKLY_WE, **params}, 42, code="member-day")
    q = quote([item(1, 600), item(2, 400)], [day_rule], occurred_at=occurred_at)
    assert q.points == expected
    assert [a.points for a in q.awards if a.line_no is None] == ([bonus] if bonus else [])
    assert all(a.rule_id == 42 for a in q.awards if a.rule == "member-day")


def test_member_day_bonus_is_once_per_receipt() -> None:
    day_rule = rule(RuleKind.member_day, {"rrule": WEEKLY_WE, "bonus_points": 30}, 43)
    q = quote([item(no, 100) for no in range(1, 6)], [day_rule], occurred_at=WEDNESDAY_AT)
    assert q.points == 35
    assert q.bonus_points == 30


RRULES = (
    "FREQ=DAILY",
    "FREQ=WEEKLY",
    "FREQ=WEEKLY;BYDAY=WE",
    "FREQ=WEEKLY;BYDAY=MO,FR;WKST=SU",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE",
    "FREQ=MONTHLY",
    "FREQ=MONTHLY;BYMONTHDAY=18",
    "FREQ=MONTHLY;BYMONTHDAY=-1",
    "FREQ=MONTHLY;BYMONTHDAY=29,30,31;BYSETPOS=1",
    "FREQ=MONTHLY;BYDAY=1SA",
    "FREQ=MONTHLY;BYDAY=WE;BYSETPOS=-1",
    "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=1",
    "FREQ=YEARLY",
    "FREQ=YEARLY;BYMONTH=11;BYMONTHDAY=11",
    "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
    "FREQ=YEARLY;BYYEARDAY=60",
    "FREQ=DAILY;COUNT=400",
    "FREQ=WEEKLY;BYDAY=TU;UNTIL=20271231T000000",
    "RRULE:FREQ=WEEKLY;BYDAY=SU",
)


@settings(max_examples=300, deadline=None)
@given(
    rrule=st.sampled_from(RRULES),
    dtstart=st.none() | st.dates(date(2000, 1, 1), date(2030, 12, 31)),
    local_day=st.dates(date(2000, 1, 1), date(2036, 12, 31)),
)
def test_occurs_on_matches_dateutil_from_dtstart(
    rrule: str, dtstart: date | None, local_day: date
) -> None:
    """occurs_on may start iterating later for speed; the answer must equal dateutil's own."""
    start = datetime.combine(dtstart or date(2000, 1, 1), datetime.min.time())
    day_start = datetime.combine(local_day, datetime.min.time())
    upcoming = rrulestr(rrule, dtstart=start).after(day_start, inc=True)
    expected = upcoming is not None and upcoming < day_start + timedelta(days=1)
    assert occurs_on(rrule, local_day, dtstart) is expected


# ----------------------------------------------------------------------------- birthday


@pytest.mark.parametrize(
    ("birthday", "year", "expected"),
    [
        pytest.param(date(1990, 7, 15), 2026, date(2026, 7, 15), id="ordinary"),
        pytest.param(date(2000, 2, 29), 2026, date(2026, 2, 28), id="29 Feb in a common year"),
        pytest.param(date(2000, 2, 29), 2028, date(2028, 2, 29), id="29 Feb in a leap year"),
        pytest.param(date(2000, 2, 29), 2100, date(2100, 2, 28), id="29 Feb in 2100 (not leap)"),
        pytest.param(date(2000, 2, 28), 2028, date(2028, 2, 28), id="28 Feb stays in leap year"),
    ],
)
def test_birthday_in_year(birthday: date, year: int, expected: date) -> None:
    assert birthday_in_year(birthday, year) == expected


@pytest.mark.parametrize(
    ("birthday", "local_day", "window", "expected"),
    [
        pytest.param(date(1990, 7, 15), date(2026, 7, 15), "day", True, id="day: on it"),
        pytest.param(date(1990, 7, 15), date(2026, 7, 14), "day", False, id="day: day before"),
        pytest.param(date(1990, 7, 15), date(2026, 7, 16), "day", False, id="day: day after"),
        pytest.param(date(2000, 2, 29), date(2026, 2, 28), "day", True, id="day: 29 Feb on 28th"),
        pytest.param(date(2000, 2, 29), date(2026, 3, 1), "day", False, id="day: 29 Feb not 1 Mar"),
        pytest.param(date(2000, 2, 29), date(2028, 2, 29), "day", True, id="day: 29 Feb in leap"),
        pytest.param(date(2000, 2, 29), date(2028, 2, 28), "day", False, id="day: 28 Feb in leap"),
        pytest.param(date(1990, 7, 15), date(2026, 7, 13), "week", True, id="week: Monday"),
        pytest.param(date(1990, 7, 15), date(2026, 7, 19), "week", True, id="week: Sunday"),
        pytest.param(date(1990, 7, 15), date(2026, 7, 12), "week", False, id="week: Sunday before"),
        pytest.param(date(1990, 7, 15), date(2026, 7, 20), "week", False, id="week: Monday after"),
        pytest.param(date(2000, 2, 29), date(2026, 2, 23), "week", True, id="week: 29 Feb common"),
        pytest.param(
            date(1990, 12, 31), date(2027, 1, 2), "week", True, id="week: 31 Dec, week spans year"
        ),
        pytest.param(
            date(1990, 1, 1), date(2026, 12, 30), "week", True, id="week: 1 Jan, in ISO 2026-W53"
        ),
        pytest.param(
            date(1990, 1, 1), date(2025, 12, 29), "week", True, id="week: 1 Jan, in ISO 2026-W01"
        ),
        pytest.param(
            date(1990, 1, 1), date(2025, 1, 6), "week", False, id="week: 1 Jan, week after"
        ),
        pytest.param(date(1990, 7, 15), date(2026, 7, 1), "month", True, id="month: first"),
        pytest.param(date(1990, 7, 15), date(2026, 7, 31), "month", True, id="month: last"),
        pytest.param(date(1990, 7, 15), date(2026, 8, 1), "month", False, id="month: next"),
        pytest.param(date(1990, 7, 15), date(2026, 6, 30), "month", False, id="month: previous"),
        pytest.param(date(2000, 2, 29), date(2026, 2, 1), "month", True, id="month: 29 Feb"),
        pytest.param(None, date(2026, 7, 15), "day", False, id="no birthday on file"),
    ],
)
def test_is_birthday(birthday: date | None, local_day: date, window: str, expected: bool) -> None:
    assert is_birthday(birthday, local_day, window) is expected


def test_is_birthday_rejects_unknown_window() -> None:
    with pytest.raises(ValueError, match="window"):
        is_birthday(date(1990, 7, 15), date(2026, 7, 15), "year")


@pytest.mark.parametrize(
    ("params", "birthday", "timezone", "occurred_at", "expected"),
    [
        pytest.param(
            {"multiplier_percent": 200},
            date(1990, 7, 15),
            SHANGHAI,
            "2026-07-14T16:30Z",
            20,
            id="day x2: 00:30 on the 15th in Shanghai",
        ),
        pytest.param(
            {"multiplier_percent": 200},
            date(1990, 7, 15),
            BERLIN,
            "2026-07-14T16:30Z",
            10,
            id="day x2: still the 14th in Berlin",
        ),
        pytest.param(
            {"multiplier_percent": 200},
            date(1990, 7, 15),
            BERLIN,
            "2026-07-15T21:59Z",
            20,
            id="day x2: 23:59 on the 15th in Berlin",
        ),
        pytest.param(
            {"bonus_points": 200},
            date(1990, 7, 15),
            SHANGHAI,
            "2026-07-15T04:00Z",
            210,
            id="day bonus 200",
        ),
        pytest.param(
            {"bonus_points": 200, "multiplier_percent": 300},
            date(1990, 7, 15),
            SHANGHAI,
            "2026-07-15T04:00Z",
            230,
            id="day bonus and multiplier",
        ),
        pytest.param(
            {"bonus_points": 200},
            date(2000, 2, 29),
            SHANGHAI,
            "2026-02-28T04:00Z",
            210,
            id="29 Feb born: bonus on 28 Feb 2026",
        ),
        pytest.param(
            {"bonus_points": 200},
            date(2000, 2, 29),
            SHANGHAI,
            "2028-02-28T04:00Z",
            10,
            id="29 Feb born: no bonus on 28 Feb 2028",
        ),
        pytest.param(
            {"bonus_points": 200},
            date(2000, 2, 29),
            SHANGHAI,
            "2028-02-29T04:00Z",
            210,
            id="29 Feb born: bonus on 29 Feb 2028",
        ),
        pytest.param(
            {"window": "week", "multiplier_percent": 200},
            date(1990, 7, 15),
            SHANGHAI,
            "2026-07-19T15:59Z",
            20,
            id="week x2: Sunday 23:59 local",
        ),
        pytest.param(
            {"window": "week", "multiplier_percent": 200},
            date(1990, 7, 15),
            SHANGHAI,
            "2026-07-19T16:00Z",
            10,
            id="week x2: Monday 00:00 local is out",
        ),
        pytest.param(
            {"window": "month", "bonus_points": 50},
            date(1990, 7, 15),
            BERLIN,
            "2026-07-31T21:59Z",
            60,
            id="month bonus: 31 Jul 23:59 Berlin",
        ),
        pytest.param(
            {"window": "month", "bonus_points": 50},
            date(1990, 7, 15),
            BERLIN,
            "2026-07-31T22:00Z",
            10,
            id="month bonus: 1 Aug 00:00 Berlin is out",
        ),
        pytest.param(
            {"bonus_points": 200}, None, SHANGHAI, "2026-07-15T04:00Z", 10, id="no birthday"
        ),
    ],
)
def test_birthday_rule(
    params: dict[str, Any],
    birthday: date | None,
    timezone: str,
    occurred_at: str,
    expected: int,
) -> None:
    bday = rule(RuleKind.birthday, params, 46, code="bday")
    q = quote(
        [item(1, 1000)], [bday], occurred_at=at(occurred_at), timezone=timezone, birthday=birthday
    )
    assert q.points == expected
    birthday_active = expected != 10
    assert q.bonus_points == (params.get("bonus_points", 0) if birthday_active else 0)


# ----------------------------------------------------------------------------- caps and budgets

CAPPED_ID = 28


@pytest.mark.parametrize(
    ("caps", "budget", "usage", "rule_points", "reason"),
    [
        pytest.param({}, None, {}, 20, None, id="uncapped"),
        pytest.param({"day": 50}, None, {}, 20, None, id="day cap not reached"),
        pytest.param({"day": 50}, None, {"day": 30}, 20, None, id="day cap exactly reached"),
        pytest.param({"day": 50}, None, {"day": 40}, 10, "cap_day", id="day cap cuts to 10"),
        pytest.param({"day": 50}, None, {"day": 50}, 0, "cap_day", id="day cap exhausted"),
        pytest.param({"day": 50}, None, {"day": 80}, 0, "cap_day", id="day cap overdrawn"),
        pytest.param({"week": 100}, None, {"week": 95}, 5, "cap_week", id="week cap cuts to 5"),
        pytest.param({"week": 100}, None, {"week": 100}, 0, "cap_week", id="week cap exhausted"),
        pytest.param({"month": 300}, None, {"month": 299}, 1, "cap_month", id="month cap cuts"),
        pytest.param({"month": 300}, None, {"month": 300}, 0, "cap_month", id="month exhausted"),
        pytest.param({"year": 1000}, None, {"year": 1000}, 0, "cap_year", id="year exhausted"),
        pytest.param(
            {"day": 50, "week": 30}, None, {"week": 25}, 5, "cap_week", id="tightest cap binds"
        ),
        pytest.param(
            {"day": 50, "week": 300}, None, {"day": 45, "week": 10}, 5, "cap_day", id="day binds"
        ),
        pytest.param({}, 7, {}, 7, "budget", id="budget cuts to 7"),
        pytest.param({}, 0, {}, 0, "budget", id="budget exhausted"),
        pytest.param({}, -5, {}, 0, "budget", id="budget overdrawn"),
        pytest.param({}, 20, {}, 20, None, id="budget exactly enough"),
        pytest.param({"day": 50}, 3, {"day": 40}, 3, "budget", id="budget tighter than cap"),
        pytest.param({"day": 50}, 30, {"day": 50}, 0, "cap_day", id="cap tighter than budget"),
    ],
)
def test_caps_and_budget(
    caps: dict[str, int],
    budget: int | None,
    usage: dict[str, int],
    rule_points: int,
    reason: str | None,
) -> None:
    capped = rule(
        RuleKind.multiplier,
        {"categories": ["fresh"], "multiplier_percent": 300},
        CAPPED_ID,
        code="fresh-capped",
        caps=caps,
        budget_remaining=budget,
    )
    other_usage = {(999, "day"): 10_000}  # another rule's usage never counts
    full_usage = {(CAPPED_ID, period): used for period, used in usage.items()} | other_usage
    q = quote([item(1, 600, "fresh"), item(2, 400, "fresh")], [capped], usage=full_usage)
    assert points_of(q, "base") == 10  # base points are never capped
    assert points_of(q, "fresh-capped") == rule_points
    assert q.points == 10 + rule_points
    mine = [a for a in q.awards if a.rule == "fresh-capped"]
    assert mine, "a capped rule still leaves its (zero-point) awards in the breakdown"
    assert {a.reason for a in mine} == {reason}
    assert all(a.rule_id == CAPPED_ID and a.points >= 0 for a in mine)


@pytest.mark.parametrize(
    ("kind", "params", "ctx", "caps", "budget", "usage", "bonus", "reason"),
    [
        pytest.param(
            RuleKind.welcome,
            {"points": 50},
            {"is_first_purchase": True},
            {},
            30,
            {},
            30,
            "budget",
            id="welcome cut by budget",
        ),
        pytest.param(
            RuleKind.basket,
            {"points": 20, "min_total": 1000},
            {},
            {"month": 40},
            None,
            {"month": 40},
            0,
            "cap_month",
            id="basket bonus month cap exhausted",
        ),
        pytest.param(
            RuleKind.member_day,
            {"rrule": WEEKLY_WE, "bonus_points": 100},
            {"occurred_at": WEDNESDAY_AT},
            {"day": 100},
            None,
            {"day": 60},
            40,
            "cap_day",
            id="member day bonus cut by day cap",
        ),
        pytest.param(
            RuleKind.birthday,
            {"window": "month", "bonus_points": 100},
            {"birthday": date(1990, 11, 1)},
            {"year": 100},
            None,
            {"year": 100},
            0,
            "cap_year",
            id="birthday bonus once a year",
        ),
    ],
)
def test_caps_on_receipt_bonuses(
    kind: RuleKind,
    params: dict[str, Any],
    ctx: dict[str, Any],
    caps: dict[str, int],
    budget: int | None,
    usage: dict[str, int],
    bonus: int,
    reason: str,
) -> None:
    capped = rule(kind, params, 60, caps=caps, budget_remaining=budget)
    usage_map = {(60, period): used for period, used in usage.items()}
    q = quote([item(1, 1000)], [capped], usage=usage_map, **ctx)
    assert q.points == 10 + bonus
    receipt = [a for a in q.awards if a.line_no is None]
    assert [(a.points, a.reason, a.rule_id) for a in receipt] == [(bonus, reason, 60)]


def test_cap_split_across_lines_adds_up_to_what_remains() -> None:
    capped = rule(
        RuleKind.multiplier,
        {"categories": ["fresh"], "multiplier_percent": 500},
        CAPPED_ID,
        code="fresh-capped",
        caps={"day": 25},
    )
    lines = [item(no, 333 * no, "fresh") for no in range(1, 6)]
    q = quote(lines, [capped], usage={(CAPPED_ID, "day"): 0})
    assert points_of(q, "fresh-capped") == 25
    assert points_of(q, "base") == 49  # 49.95 exact
    assert len([a for a in q.awards if a.rule == "fresh-capped"]) == 5


def test_capped_rule_never_exceeds_its_cap_after_rounding() -> None:
    """Largest-remainder rounding must not hand a capped rule more than its cap."""
    capped = rule(
        RuleKind.multiplier,
        {"categories": ["fresh"], "multiplier_percent": 300},
        CAPPED_ID,
        code="fresh-capped",
        caps={"day": 1},
    )
    lines = [item(1, 140, "fresh"), item(2, 140, "fresh")] + [item(n, 40) for n in (3, 4, 5)]
    q = quote(lines, [capped])
    assert q.points == 5  # base 1.4 + 1.4 + 3 × 0.4 = 4, rule cut from 5.6 to 1
    assert points_of(q, "fresh-capped") == 1
    assert points_of(q, "base") == 4


# ----------------------------------------------------------------------------- stacking


@pytest.mark.parametrize(
    ("rules", "ctx", "expected", "breakdown"),
    [
        pytest.param([], {}, 10, {"base": 10}, id="base 10"),
        pytest.param([FRESH_X3], {}, 30, {"base": 10, "fresh-x3": 20}, id="category x3"),
        pytest.param(
            [WEDNESDAY_X2],
            {"occurred_at": WEDNESDAY_AT},
            20,
            {"base": 10, "wednesday": 10},
            id="member day x2",
        ),
        pytest.param(
            [],
            {"tier": "GOLD", "tier_multiplier_percent": 150},
            15,
            {"base": 10, "tier:GOLD": 5},
            id="Gold x1.5",
        ),
        pytest.param(
            [FRESH_X3, WEDNESDAY_X2],
            {"occurred_at": WEDNESDAY_AT},
            40,
            {"base": 10, "fresh-x3": 20, "wednesday": 10},
            id="category x3 + member day x2 add, not 60",
        ),
        pytest.param(
            [FRESH_X3, WEDNESDAY_X2],
            {"occurred_at": WEDNESDAY_AT, "tier": "GOLD", "tier_multiplier_percent": 150},
            45,
            {"base": 10, "fresh-x3": 20, "wednesday": 10, "tier:GOLD": 5},
            id="documented example: x3, x2, Gold -> 45 not 90",
        ),
        pytest.param(
            [WEDNESDAY_X2, BIRTHDAY_X2],
            {"occurred_at": WEDNESDAY_AT, "birthday": date(1990, 11, 18)},
            30,
            {"base": 10, "wednesday": 10, "birthday": 10},
            id="member day and birthday add",
        ),
        pytest.param(
            [
                FRESH_X3,
                WEDNESDAY_X2,
                WELCOME,
                rule(RuleKind.basket, {"min_total": 1000, "points": 20}, 51, code="basket-50"),
            ],
            {
                "occurred_at": WEDNESDAY_AT,
                "tier": "GOLD",
                "tier_multiplier_percent": 150,
                "is_first_purchase": True,
            },
            115,
            {
                "base": 10,
                "fresh-x3": 20,
                "wednesday": 10,
                "tier:GOLD": 5,
                "welcome": 50,
                "basket-50": 20,
            },
            id="bonuses added once on top, never multiplied",
        ),
    ],
)
def test_stacking_policy(
    rules: list[Rule], ctx: dict[str, Any], expected: int, breakdown: dict[str, int]
) -> None:
    q = quote([item(1, 1000, "fresh")], rules, **ctx)
    assert q.points == expected
    got: dict[str, int] = {}
    for award in q.awards:
        got[award.rule] = got.get(award.rule, 0) + award.points
    assert got == breakdown


def test_stacking_over_two_lines_keeps_per_line_breakdown() -> None:
    lines = [item(1, 1000, "fresh"), item(2, 2000, "grocery")]
    q = quote(
        lines,
        [FRESH_X3, WEDNESDAY_X2, WELCOME],
        occurred_at=WEDNESDAY_AT,
        tier="GOLD",
        tier_multiplier_percent=150,
        is_first_purchase=True,
    )
    # line 1: 10 × (3 + 1 + 0.5) = 45; line 2: 20 × (1 + 1 + 0.5) = 50; welcome 50
    assert q.points_by_line() == {1: 45, 2: 50}
    assert q.bonus_points == 50
    assert q.points == 145


# ----------------------------------------------------------------------------- properties

CATEGORIES = ("grocery", "fresh", "tobacco", "fuel", "services")
SKUS = ("A", "APPLE", "LOTTO-649", "GIFT-100", "B")
TIMEZONES = (SHANGHAI, BERLIN, NEW_YORK, "UTC", "Australia/Lord_Howe", "Asia/Kathmandu")

POOL = (
    NO_TOBACCO,
    NO_LOTTERY,
    NO_GIFT_CARDS,
    FRESH_X3,
    FRESH_X2,
    APPLE_X4,
    rule(RuleKind.multiplier, {"categories": ["grocery"], "multiplier_percent": 125}, 29),
    FUEL,
    rule(RuleKind.fuel, {"grades": {"95#": 300}}, 32, store_ids=frozenset({1})),
    WEDNESDAY_X2,
    rule(RuleKind.member_day, {"rrule": MONTHLY_18, "multiplier_percent": 150}, 44),
    rule(RuleKind.member_day, {"rrule": "FREQ=DAILY", "bonus_points": 3}, 47, version=4),
    BIRTHDAY_X2,
    rule(RuleKind.birthday, {"window": "month", "bonus_points": 25}, 48, version=2),
    WELCOME,
    BASKET,
    rule(RuleKind.basket, {"min_total": 20000, "points": 7}, 52, region_ids=frozenset({11})),
)
RULE_SETS = st.lists(st.sampled_from(POOL), unique_by=lambda r: r.id)
CAP_REASONS = {"cap_day", "cap_week", "cap_month", "cap_year", "budget"}
RECEIPT_RULE_KINDS = {RuleKind.welcome, RuleKind.basket, RuleKind.member_day, RuleKind.birthday}


@st.composite
def lines_strategy(draw: st.DrawFn) -> list[Line]:
    count = draw(st.integers(0, 8))
    numbers = draw(st.lists(st.integers(1, 50), min_size=count, max_size=count, unique=True))
    lines = []
    for no in numbers:
        if draw(st.booleans()) and draw(st.booleans()):
            grade = draw(st.sampled_from(("92#", "95#", "98#", "0#")))
            volume = draw(st.integers(0, 90_000) | st.none())
            lines.append(fuel(no, grade, volume, draw(st.integers(0, 100_000))))
        else:
            category = draw(st.sampled_from(CATEGORIES))
            sku = draw(st.sampled_from(SKUS))
            lines.append(item(no, draw(st.integers(0, 50_000)), category, sku))
    return lines


@st.composite
def context_strategy(draw: st.DrawFn, lines: Sequence[Line]) -> Context:
    percent = draw(st.sampled_from((100, 110, 125, 150, 200)))
    return context(
        occurred_at=draw(
            st.datetimes(datetime(2024, 1, 1), datetime(2029, 1, 1), timezones=st.just(UTC))
        ),
        store_id=draw(st.sampled_from((1, 2))),
        region_id=draw(st.sampled_from((10, 11))),
        store_kind=draw(st.sampled_from(("supermarket", "fuel_station"))),
        timezone=draw(st.sampled_from(TIMEZONES)),
        total=sum(line.amount for line in lines),
        birthday=draw(st.none() | st.dates(date(1940, 1, 1), date(2010, 12, 31))),
        tier=None if percent == 100 else "GOLD",
        tier_multiplier_percent=percent,
        is_first_purchase=draw(st.booleans()),
    )


PROGRAMS = st.builds(
    Program,
    earn_points=st.integers(0, 5),
    earn_amount=st.sampled_from((1, 100, 300, 500, 700, 1000)),
    rounding=st.sampled_from(("floor", "round", "ceil")),
)


def _excluded(line: Line, active: Sequence[Rule]) -> bool:
    return any(
        r.kind == RuleKind.exclude
        and (
            line.category in r.params.get("categories", ()) or line.sku in r.params.get("skus", ())
        )
        for r in active
    )


def exact_points(
    lines: Sequence[Line], ctx: Context, program: Program, rules: Sequence[Rule]
) -> Fraction:
    """An independent, exact reading of the documented policy (no caps)."""
    active = [r for r in rules if applies(r, ctx)]
    local_day = ctx.local.date()
    promotions = [
        r
        for r in active
        if (r.kind == RuleKind.member_day and occurs_on(r.params["rrule"], local_day))
        or (
            r.kind == RuleKind.birthday
            and is_birthday(ctx.birthday, local_day, r.params.get("window", "day"))
        )
    ]
    total = Fraction(0)
    eligible = 0
    for line in lines:
        if _excluded(line, active):
            continue
        eligible += line.amount
        base = Fraction(line.amount * program.earn_points, program.earn_amount)
        if line.fuel_grade and line.volume_ml:
            priced = [
                r.params["grades"][line.fuel_grade]
                for r in sorted(active, key=lambda r: r.id)
                if r.kind == RuleKind.fuel and line.fuel_grade in r.params["grades"]
            ]
            if priced:
                base = Fraction(line.volume_ml * priced[0], 100_000)
        category = max(
            (
                r.params["multiplier_percent"]
                for r in active
                if r.kind == RuleKind.multiplier
                and (
                    line.category in r.params.get("categories", ())
                    or line.sku in r.params.get("skus", ())
                )
            ),
            default=100,
        )
        factor = category + ctx.tier_multiplier_percent - 100
        factor += sum(p.params.get("multiplier_percent", 100) - 100 for p in promotions)
        total += base * factor / 100
    if eligible == 0:
        return total
    for r in active:
        if r.kind == RuleKind.welcome and ctx.is_first_purchase:
            total += r.params["points"]
    baskets = [
        r.params["points"]
        for r in active
        if r.kind == RuleKind.basket and eligible >= r.params["min_total"]
    ]
    total += max(baskets, default=0)
    total += sum(p.params.get("bonus_points", 0) for p in promotions)
    return total


def _rounded(exact: Fraction, rounding: str) -> int:
    return round_points(exact * 1000, rounding)


def assert_breakdown_invariants(
    q: Quote, lines: Sequence[Line], ctx: Context, rules: Sequence[Rule]
) -> None:
    line_nos = {line.line_no for line in lines}
    by_id = {r.id: r for r in rules}
    active = [r for r in rules if applies(r, ctx)]
    assert sum(a.points for a in q.awards) == q.points
    assert q.points >= 0
    for award in q.awards:
        assert award.points >= 0
        assert award.line_no is None or award.line_no in line_nos
        if award.rule == "base" or award.rule.startswith("tier:"):
            assert award.rule_id is None and award.line_no is not None
            continue
        source = by_id[award.rule_id]
        assert (award.rule, award.rule_version) == (source.code, source.version)
        if award.line_no is None:
            assert source.kind in RECEIPT_RULE_KINDS
    for line in lines:
        mine = [a for a in q.awards if a.line_no == line.line_no]
        assert mine, "every line appears in the breakdown"
        if _excluded(line, active):
            assert [(a.points, a.reason) for a in mine] == [(0, "excluded")]
        else:
            assert "excluded" not in {a.reason for a in mine}
    assert sum(q.points_by_line().values()) + q.bonus_points == q.points


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), program=PROGRAMS, chosen=RULE_SETS)
def test_breakdown_properties_without_caps(
    data: st.DataObject, program: Program, chosen: list[Rule]
) -> None:
    lines = data.draw(lines_strategy())
    ctx = data.draw(context_strategy(lines))
    rules = chosen
    q = compute(lines, ctx, program, rules)
    assert_breakdown_invariants(q, lines, ctx, rules)
    exact = exact_points(lines, ctx, program, rules)
    assert q.points == _rounded(exact, program.rounding)
    keys = [(a.rule, a.line_no) for a in q.awards]
    assert len(keys) == len(set(keys)), "one award per rule per line"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    program=PROGRAMS,
    chosen=RULE_SETS,
    caps=st.dictionaries(st.sampled_from(("day", "week", "month", "year")), st.integers(0, 300)),
    budget=st.none() | st.integers(-10, 300),
    used=st.integers(0, 400),
)
def test_breakdown_properties_with_caps(
    data: st.DataObject,
    program: Program,
    chosen: list[Rule],
    caps: dict[str, int],
    budget: int | None,
    used: int,
) -> None:
    lines = data.draw(lines_strategy())
    ctx = data.draw(context_strategy(lines))
    rules = [replace(r, caps=caps, budget_remaining=budget) for r in chosen]
    usage = {(r.id, period): used for r in rules for period in caps}
    q = compute(lines, ctx, program, rules, usage)
    assert_breakdown_invariants(q, lines, ctx, rules)
    uncapped = compute(lines, ctx, program, chosen)
    assert q.points <= uncapped.points
    for r in rules:
        allowances = [max(0, cap - used) for cap in caps.values()]
        if budget is not None:
            allowances.append(max(0, budget))
        earned = sum(a.points for a in q.awards if a.rule_id == r.id)
        if allowances:
            assert earned <= min(allowances)
        if earned < sum(a.points for a in uncapped.awards if a.rule_id == r.id) - 1:
            reasons = {a.reason for a in q.awards if a.rule_id == r.id}
            assert reasons & CAP_REASONS
    base = sum(a.points for a in q.awards if a.rule == "base")
    base_uncapped = sum(a.points for a in uncapped.awards if a.rule == "base")
    assert abs(base - base_uncapped) <= 1  # caps never touch the base, only its rounding share


# ----------------------------------------------------------------------------- reversal


@pytest.mark.parametrize(
    ("earned", "bought", "before", "now", "expected"),
    [
        pytest.param(0, 10, 0, 10, 0, id="nothing earned, nothing back"),
        pytest.param(10, 0, 0, 1, 0, id="nothing bought"),
        pytest.param(10, 3, 0, 3, 10, id="everything at once"),
        pytest.param(10, 3, 0, 1, 3, id="first third"),
        pytest.param(10, 3, 1, 1, 3, id="second third"),
        pytest.param(10, 3, 2, 1, 4, id="last third takes the remainder"),
        pytest.param(10, 3, 2, 5, 4, id="more than bought is capped"),
        pytest.param(10, 3, 3, 1, 0, id="already all returned"),
        pytest.param(10, 3, 5, 1, 0, id="already over-returned"),
        pytest.param(7, 10000, 0, 1, 0, id="a tiny part floors to zero"),
        pytest.param(10, 3, 0, 0, 0, id="zero returned"),
        pytest.param(10, 3, 2, -1, 0, id="a negative return takes nothing back"),
    ],
)
def test_reversal(earned: int, bought: int, before: int, now: int, expected: int) -> None:
    assert reversal(earned, bought, before, now) == expected


@settings(max_examples=300, deadline=None)
@given(
    earned=st.integers(0, 10_000),
    bought=st.integers(1, 100_000),
    cuts=st.lists(st.integers(0, 100_000), max_size=10),
)
def test_reversal_partial_returns_add_up(earned: int, bought: int, cuts: list[int]) -> None:
    points = sorted({min(c, bought) for c in cuts} | {0, bought})
    returned = 0
    taken = 0
    for upto in points[1:]:
        back = reversal(earned, bought, returned, upto - returned)
        assert back >= 0
        taken += back
        returned = upto
        assert taken <= earned
    assert taken == earned
    assert reversal(earned, bought, returned, bought) == 0  # nothing left to take


# ----------------------------------------------------------------------------- period bounds


@pytest.mark.parametrize(
    ("moment", "timezone", "period", "start", "end", "hours"),
    [
        pytest.param(
            "2026-11-18T04:00Z", SHANGHAI, "day", "2026-11-18", "2026-11-19", 24, id="day"
        ),
        pytest.param(
            "2026-11-17T16:30Z",
            SHANGHAI,
            "day",
            "2026-11-18",
            "2026-11-19",
            24,
            id="day after local midnight",
        ),
        pytest.param(
            "2026-11-18T04:00Z", SHANGHAI, "week", "2026-11-16", "2026-11-23", 168, id="week Wed"
        ),
        pytest.param(
            "2026-11-15T16:00Z",
            SHANGHAI,
            "week",
            "2026-11-16",
            "2026-11-23",
            168,
            id="week Monday 00:00",
        ),
        pytest.param(
            "2026-11-22T15:59Z",
            SHANGHAI,
            "week",
            "2026-11-16",
            "2026-11-23",
            168,
            id="week Sunday 23:59",
        ),
        pytest.param(
            "2026-12-31T04:00Z",
            SHANGHAI,
            "week",
            "2026-12-28",
            "2027-01-04",
            168,
            id="week across new year",
        ),
        pytest.param(
            "2026-12-15T04:00Z",
            SHANGHAI,
            "month",
            "2026-12-01",
            "2027-01-01",
            744,
            id="month December",
        ),
        pytest.param(
            "2028-02-10T04:00Z",
            SHANGHAI,
            "month",
            "2028-02-01",
            "2028-03-01",
            696,
            id="month leap February",
        ),
        pytest.param(
            "2026-07-01T04:00Z", SHANGHAI, "year", "2026-01-01", "2027-01-01", 8760, id="year"
        ),
        pytest.param(
            "2026-03-29T12:00Z",
            BERLIN,
            "day",
            "2026-03-29",
            "2026-03-30",
            23,
            id="Berlin spring-forward day is 23 h",
        ),
        pytest.param(
            "2026-10-25T12:00Z",
            BERLIN,
            "day",
            "2026-10-25",
            "2026-10-26",
            25,
            id="Berlin fall-back day is 25 h",
        ),
        pytest.param(
            "2026-10-25T01:30Z",
            BERLIN,
            "day",
            "2026-10-25",
            "2026-10-26",
            25,
            id="Berlin fall-back, second 02:30",
        ),
        pytest.param(
            "2026-03-25T12:00Z",
            BERLIN,
            "week",
            "2026-03-23",
            "2026-03-30",
            167,
            id="Berlin week with spring-forward",
        ),
        pytest.param(
            "2026-03-02T12:00Z",
            BERLIN,
            "month",
            "2026-03-01",
            "2026-04-01",
            743,
            id="Berlin March",
        ),
        pytest.param(
            "2026-10-31T22:59Z",
            BERLIN,
            "month",
            "2026-10-01",
            "2026-11-01",
            745,
            id="Berlin October, last minute",
        ),
        pytest.param(
            "2026-06-01T12:00Z", BERLIN, "year", "2026-01-01", "2027-01-01", 8760, id="Berlin year"
        ),
    ],
)
def test_period_bounds(
    moment: str, timezone: str, period: str, start: str, end: str, hours: int
) -> None:
    local = context(occurred_at=at(moment), timezone=timezone).local
    got_start, got_end = period_bounds(local, period)
    assert got_start.tzinfo is not None and got_end.tzinfo is not None
    assert (got_start.date().isoformat(), got_start.time().isoformat()) == (start, "00:00:00")
    assert (got_end.date().isoformat(), got_end.time().isoformat()) == (end, "00:00:00")
    assert got_start <= local < got_end
    assert got_start.astimezone(UTC) <= at(moment) < got_end.astimezone(UTC)
    length = got_end.astimezone(UTC) - got_start.astimezone(UTC)
    assert length == timedelta(hours=hours)


def test_period_bounds_rejects_unknown_period() -> None:
    with pytest.raises(ValueError, match="fortnight"):
        period_bounds(context().local, "fortnight")


# ----------------------------------------------------------------------------- bonus eligibility


@pytest.mark.parametrize(
    ("lines", "first", "expected", "bonuses"),
    [
        pytest.param(
            [item(1, 5000, "gift", sku="GIFT-500")],
            True,
            0,
            {},
            id="a gift card alone earns no welcome or basket bonus",
        ),
        pytest.param(
            [item(1, 4000, "gift", sku="GIFT-500"), item(2, 1000)],
            False,
            10,
            {},
            id="excluded lines do not count towards the basket threshold",
        ),
        pytest.param(
            [item(1, 10000)],
            False,
            130,
            {"basket-100": 30},
            id="only the best basket rule reached applies",
        ),
        pytest.param(
            [item(1, 6000)],
            False,
            80,
            {"basket-50": 20},
            id="a lower basket rule when the higher one is not reached",
        ),
    ],
)
def test_receipt_bonuses_need_eligible_lines(
    lines: list[Line], first: bool, expected: int, bonuses: dict[str, int]
) -> None:
    basket_100 = rule(RuleKind.basket, {"min_total": 10000, "points": 30}, 52, code="basket-100")
    basket_50 = rule(RuleKind.basket, {"min_total": 5000, "points": 20}, 53, code="basket-50")
    rules_ = [NO_GIFT_CARDS, WELCOME, basket_50, basket_100]
    q = quote(lines, rules_, is_first_purchase=first)
    assert q.points == expected
    got = {a.rule: a.points for a in q.awards if a.line_no is None}
    assert got == bonuses
