"""Marketers: programme settings and the tier ladder."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from admin.forms import Form, form_of
from admin.web import MarketerPage, attempt, major
from api.core.db import SessionDep
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import ProgramUpdate, TierSet

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


# ----------------------------------------------------------------------------- programme


@router.get("/settings/program", response_class=HTMLResponse)
async def program(page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """Earn rate, point value, pending days, expiry and limits."""
    view = program_service.program_view(await program_service.get_program(db))
    values = {k: "" if view.get(k) is None else view[k] for k in PROGRAM_FIELDS}
    values |= {k: major(view[k], view["currency"]) for k in PROGRAM_MONEY}
    values["static_card_can_spend"] = "on" if view["static_card_can_spend"] else ""
    return page.render("settings/program.html", form=form_of(values), version=view["version"])


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
    return page.render("settings/tiers.html", form=form_of(values), rows=len(ladder) + 2)


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
