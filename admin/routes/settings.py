"""Marketers: programme settings, earning rules, tiers and the rewards catalogue."""

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import ImmutableMultiDict

from admin.forms import Form, values_of
from admin.web import MarketerPage, Page, attempt, major
from api.core.db import SessionDep
from api.loyalty import program as program_service
from api.loyalty import rewards as rewards_service
from api.loyalty.rules import RuleKind
from api.loyalty.schemas import (
    ProgramUpdate,
    RewardCreate,
    RewardUpdate,
    RuleCreate,
    RuleUpdate,
    TierSet,
)
from api.org import service as org_service

router = APIRouter()
PROGRAM_MONEY = ("earn_amount", "redeem_value", "max_receipt_total")
PROGRAM_FIELDS = (
    "currency",
    "timezone",
    "earn_points",
    "rounding",
    "redeem_points",
    "pending_days",
    "expiry_policy",
    "expiry_months",
    "min_redemption",
    "reservation_minutes",
    "claim_window_days",
    "tier_window_months",
)
RULE_EXAMPLES = {
    "multiplier": {"categories": ["fresh"], "multiplier_percent": 200},
    "fuel": {"grades": {"92": 100, "95": 120}},
    "exclude": {"categories": ["tobacco"]},
    "welcome": {"points": 200},
    "basket": {"points": 50, "min_total": 20000},
    "member_day": {"rrule": "FREQ=WEEKLY;BYDAY=WE", "multiplier_percent": 200},
    "birthday": {"window": "month", "bonus_points": 100},
}
REWARD_FIELDS = ("name", "description", "points_cost", "stock", "per_member_limit", "coupon_days")


def _form(values: dict[str, Any], lists: dict[str, list[str]] | None = None) -> Form:
    pairs = [(k, str(v)) for k, v in values.items() if v is not None]
    pairs += [(k, v) for k, items in (lists or {}).items() for v in items]
    return Form(ImmutableMultiDict(pairs))


# ----------------------------------------------------------------------------- programme


@router.get("/settings/program", response_class=HTMLResponse)
async def program(page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """Earn rate, point value, pending days, expiry and limits."""
    view = program_service.program_view(await program_service.get_program(db))
    values = {k: "" if view.get(k) is None else view[k] for k in PROGRAM_FIELDS}
    values |= {k: major(view[k], view["currency"]) for k in PROGRAM_MONEY}
    values["static_card_can_spend"] = "on" if view["static_card_can_spend"] else ""
    return page.render("settings/program.html", form=_form(values), version=view["version"])


@router.post("/settings/program", response_model=None)
async def save_program(page: MarketerPage, db: SessionDep) -> HTMLResponse | RedirectResponse:
    """Save the programme settings (each field is checked; errors show beside it)."""
    form = Form(await page.request.form())
    data: dict[str, Any] = {k: form.get(k) or None for k in PROGRAM_FIELDS}
    data |= {k: form.money(k, form.get("currency") or page.currency) for k in PROGRAM_MONEY}
    data["static_card_can_spend"] = form.get("static_card_can_spend") == "on"
    if data["expiry_policy"] == "never":
        data.pop("expiry_months")
    body = form.validate(ProgramUpdate, {k: v for k, v in data.items() if v is not None})
    if body is not None and not form.errors:
        _, error = await attempt(db, lambda: program_service.update_program(db, data=body))
        if error is None:
            return page.redirect("/settings/program", ("success", "Programme settings saved."))
        form.errors["timezone" if "zone" in error.detail else "__all__"] = error.detail
    return page.render("settings/program.html", form=form, version=None, status_code=422)


# ----------------------------------------------------------------------------- rules


@router.get("/settings/rules", response_class=HTMLResponse)
async def rules(page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """Every earning rule with its version."""
    return page.render("settings/rules.html", rules=await program_service.list_rules(db))


def _rule_page(page: Page, form: Form, rule: Any, status_code: int = 200) -> HTMLResponse:
    return page.render(
        "settings/rule_form.html",
        form=form,
        rule=rule,
        kinds=[(k.value, k.value.replace("_", " ")) for k in RuleKind],
        examples={k: json.dumps(v, ensure_ascii=False) for k, v in RULE_EXAMPLES.items()},
        status_code=status_code,
    )


@router.get("/settings/rules/{rule_id}", response_class=HTMLResponse)
async def rule(rule_id: str, page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """Add a rule (rule_id "new") or change one."""
    if rule_id == "new":
        return _rule_page(
            page,
            _form({"kind": "multiplier", "params": json.dumps(RULE_EXAMPLES["multiplier"])}),
            None,
        )
    found = await program_service.get_rule(db, int(rule_id) if rule_id.isdigit() else 0)
    values = values_of(found, ("code", "name", "kind", "store_kind", "budget"))
    values["params"] = json.dumps(found.params, ensure_ascii=False, indent=1)
    values |= {f"caps.{k}": str(v) for k, v in (found.caps or {}).items()}
    values["active"] = "on" if found.active else ""
    for moment in ("valid_from", "valid_until"):
        value = getattr(found, moment)
        values[moment] = page.when(value, "%Y-%m-%dT%H:%M") if value else ""
    return _rule_page(page, _form(values), found)


@router.post("/settings/rules/{rule_id}", response_model=None)
async def save_rule(
    rule_id: str, page: MarketerPage, db: SessionDep
) -> HTMLResponse | RedirectResponse:
    """Create or change an earning rule (a change makes a new version)."""
    form = Form(await page.request.form())
    existing = (
        None
        if rule_id == "new"
        else await program_service.get_rule(db, int(rule_id) if rule_id.isdigit() else 0)
    )
    caps = {
        p: form.get(f"caps.{p}") for p in ("day", "week", "month", "year") if form.get(f"caps.{p}")
    }
    data: dict[str, Any] = {
        "name": form.get("name"),
        "params": form.json("params"),
        "store_kind": form.text("store_kind"),
        "valid_from": form.local_datetime("valid_from", page.timezone),
        "valid_until": form.local_datetime("valid_until", page.timezone),
        "caps": caps or None,
        "budget": form.text("budget"),
        "active": form.get("active") == "on",
    }
    if existing is None:
        data |= {"code": form.get("code"), "kind": form.get("kind")}
    body = form.validate(RuleCreate if existing is None else RuleUpdate, data)
    if body is not None and not form.errors:
        work = (
            (lambda: program_service.create_rule(db, data=body))
            if existing is None
            else (lambda: program_service.update_rule(db, existing, data=body))
        )
        _, error = await attempt(db, work)
        if error is None:
            return page.redirect("/settings/rules", ("success", f"Rule {form.get('name')} saved."))
        key = (
            "params"
            if "params" in error.detail
            else ("code" if "code" in error.detail else "__all__")
        )
        form.errors[key] = error.detail
    return _rule_page(page, form, existing, status_code=422)


# ----------------------------------------------------------------------------- tiers


@router.get("/settings/tiers", response_class=HTMLResponse)
async def tiers(page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """The tier ladder, lowest first."""
    values: dict[str, Any] = {}
    ladder = await program_service.list_tiers(db)
    for i, tier in enumerate(ladder):
        values |= {
            f"tiers-{i}-code": tier.code,
            f"tiers-{i}-name": tier.name,
            f"tiers-{i}-min_spend": major(tier.min_spend, page.currency),
            f"tiers-{i}-multiplier_percent": tier.multiplier_percent,
        }
    return page.render("settings/tiers.html", form=_form(values), rows=len(ladder) + 2)


@router.post("/settings/tiers", response_model=None)
async def save_tiers(page: MarketerPage, db: SessionDep) -> HTMLResponse | RedirectResponse:
    """Replace the tier ladder (codes, names, qualifying spend, multipliers)."""
    form = Form(await page.request.form())
    rows = sorted({int(k.split("-")[1]) for k in form.values if k.startswith("tiers-")})
    ladder = []
    for i in rows:
        if not form.get(f"tiers-{i}-code") and not form.get(f"tiers-{i}-name"):
            continue
        ladder.append(
            {
                "code": form.get(f"tiers-{i}-code"),
                "name": form.get(f"tiers-{i}-name"),
                "min_spend": form.money(f"tiers-{i}-min_spend", page.currency) or 0,
                "multiplier_percent": form.get(f"tiers-{i}-multiplier_percent") or 100,
            }
        )
    body = form.validate(TierSet, {"tiers": ladder})
    form.errors = {
        k.replace("tiers.", "tiers-").replace(".", "-"): v for k, v in form.errors.items()
    }
    if body is not None and not form.errors:
        _, error = await attempt(db, lambda: program_service.replace_tiers(db, data=body))
        if error is None:
            return page.redirect("/settings/tiers", ("success", "Tier ladder saved."))
        form.errors["tiers"] = error.detail
    return page.render(
        "settings/tiers.html", form=form, rows=max(rows, default=0) + 1, status_code=422
    )


# ----------------------------------------------------------------------------- rewards


@router.get("/settings/rewards", response_class=HTMLResponse)
async def rewards(page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """The rewards catalogue members spend points on."""
    return page.render("settings/rewards.html", rewards=await rewards_service.list_rewards(db))


async def _reward_page(
    page: Page, db: SessionDep, form: Form, reward: Any, status_code: int = 200
) -> HTMLResponse:
    stores = await org_service.list_stores(db)
    return page.render(
        "settings/reward_form.html",
        form=form,
        reward=reward,
        stores=stores,
        status_code=status_code,
    )


@router.get("/settings/rewards/{reward_id}", response_class=HTMLResponse)
async def reward(reward_id: str, page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """Add a reward (reward_id "new") or change one."""
    if reward_id == "new":
        return await _reward_page(page, db, _form({"coupon_days": "30", "active": "on"}), None)
    found = await rewards_service.get_reward(db, int(reward_id) if reward_id.isdigit() else 0)
    values: dict[str, Any] = values_of(found, REWARD_FIELDS)
    values["value"] = major(found.value, page.currency)
    values["valid_until"] = (
        page.when(found.valid_until, "%Y-%m-%dT%H:%M") if found.valid_until else ""
    )
    values["active"] = "on" if found.active else ""
    lists = {"store_ids": [str(s) for s in found.store_ids or []]}
    return await _reward_page(page, db, _form(values, lists), found)


@router.post("/settings/rewards/{reward_id}", response_model=None)
async def save_reward(
    reward_id: str, page: MarketerPage, db: SessionDep
) -> HTMLResponse | RedirectResponse:
    """Create or change a reward."""
    form = Form(await page.request.form())
    existing = (
        None
        if reward_id == "new"
        else await rewards_service.get_reward(db, int(reward_id) if reward_id.isdigit() else 0)
    )
    data: dict[str, Any] = {k: form.text(k) for k in REWARD_FIELDS}
    data["description"] = form.get("description")
    data["value"] = form.money("value", page.currency)
    data["valid_until"] = form.local_datetime("valid_until", page.timezone)
    data["store_ids"] = form.ints("store_ids") or None
    if existing is not None:
        data["active"] = form.get("active") == "on"
    else:
        data = {k: v for k, v in data.items() if v is not None}
    body = form.validate(RewardCreate if existing is None else RewardUpdate, data)
    if body is not None and not form.errors:
        work = (
            (lambda: rewards_service.create_reward(db, data=body))
            if existing is None
            else (lambda: rewards_service.update_reward(db, existing, data=body))
        )
        _, error = await attempt(db, work)
        if error is None:
            return page.redirect(
                "/settings/rewards", ("success", f"Reward {form.get('name')} saved.")
            )
        key = (
            "valid_until"
            if "valid_until" in error.detail
            else ("store_ids" if "store" in error.detail else "__all__")
        )
        form.errors[key] = error.detail
    return await _reward_page(page, db, form, existing, status_code=422)
