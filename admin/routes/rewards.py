"""Marketers: the rewards catalogue members spend points on."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from admin.forms import Form, form_of, values_of
from admin.web import MarketerPage, Page, attempt, major
from api.core.db import SessionDep
from api.loyalty.rewards import service as rewards_service
from api.loyalty.rewards.schemas import RewardCreate, RewardUpdate
from api.org import service as org_service

router = APIRouter()
REWARD_FIELDS = ("name", "description", "points_cost", "stock", "per_member_limit", "coupon_days")


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
        return await _reward_page(page, db, form_of({"coupon_days": "30", "active": "on"}), None)
    found = await rewards_service.get_reward(db, int(reward_id) if reward_id.isdigit() else 0)
    values: dict[str, Any] = values_of(found, REWARD_FIELDS)
    values["value"] = major(found.value, page.currency)
    values["valid_until"] = (
        page.when(found.valid_until, "%Y-%m-%dT%H:%M") if found.valid_until else ""
    )
    values["active"] = "on" if found.active else ""
    lists = {"store_ids": [str(s) for s in found.store_ids or []]}
    return await _reward_page(page, db, form_of(values, lists), found)


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
