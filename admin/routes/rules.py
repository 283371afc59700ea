"""Marketers: earning rules (each change keeps the old version)."""

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from admin.forms import Form, form_of, values_of
from admin.web import MarketerPage, Page, attempt
from api.core.db import SessionDep
from api.loyalty.program import service as program_service
from api.loyalty.program.rules import RuleKind
from api.loyalty.program.schemas import RuleCreate, RuleUpdate

router = APIRouter()
RULE_EXAMPLES = {
    "multiplier": {"categories": ["fresh"], "multiplier_percent": 200},
    "fuel": {"grades": {"92": 100, "95": 120}},
    "exclude": {"categories": ["tobacco"]},
    "welcome": {"points": 200},
    "basket": {"points": 50, "min_total": 20000},
    "member_day": {"rrule": "FREQ=WEEKLY;BYDAY=WE", "multiplier_percent": 200},
    "birthday": {"window": "month", "bonus_points": 100},
}


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
            form_of({"kind": "multiplier", "params": json.dumps(RULE_EXAMPLES["multiplier"])}),
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
    return _rule_page(page, form_of(values), found)


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
