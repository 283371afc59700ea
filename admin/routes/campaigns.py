"""Marketers: campaigns — list, create and edit with a live audience size, lifecycle, report."""

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, RedirectResponse

from admin import campaign_form, charts
from admin.web import MarketerPage, attempt
from api.core.db import SessionDep
from api.core.pagination import PageParams
from api.members import service as members_service
from api.org.scope import GLOBAL
from api.push import campaigns, report
from api.push.models import Campaign
from api.push.schemas import CampaignCreate, CampaignUpdate, Kind

router = APIRouter()
ACTIONS = {
    "schedule": campaigns.schedule_campaign,
    "pause": campaigns.pause_campaign,
    "cancel": campaigns.cancel_campaign,
}


@router.get("/campaigns", response_class=HTMLResponse)
async def index(page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """Campaigns with their status and key numbers."""
    found = await campaigns.list_campaigns(db, page=PageParams(limit=100))
    reports = {
        c.id: await report.campaign_report(db, c, settings=page.settings) for c in found.items
    }
    return page.render(
        "campaigns/index.html",
        campaigns=found.items,
        reports=reports,
        kinds=campaign_form.KIND_LABELS,
        when=lambda c: campaign_form.schedule_text(c.kind, c.schedule, page.timezone),
    )


@router.get("/campaigns/new", response_class=HTMLResponse)
async def new(page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """The create form."""
    return page.render(
        "campaigns/edit.html",
        form=campaign_form.blank(page.timezone),
        campaign=None,
        kind="one_off",
        **await campaign_form.choices(db),
    )


@router.post("/campaigns/new", response_model=None)
async def create(
    page: MarketerPage, db: SessionDep, kind: Annotated[Kind, Form()]
) -> HTMLResponse | RedirectResponse:
    """Create the campaign as a draft (or show the form again with what to fix)."""
    form = campaign_form.parse(
        await page.request.form(), kind=kind, currency=page.currency, timezone=page.timezone
    )
    if not form.errors:
        body = CampaignCreate.model_validate(form.payload)
        created, error = await attempt(
            db, lambda: campaigns.create_campaign(db, data=body, staff_id=page.staff.id)
        )
        if error is None:
            return page.redirect(
                f"/campaigns/{created.id}", ("success", "Draft saved. Schedule it when ready.")
            )
        form.errors["__all__"] = error.detail
    return page.render(
        "campaigns/edit.html",
        form=form,
        campaign=None,
        kind=kind,
        status_code=422,
        **await campaign_form.choices(db),
    )


@router.post("/campaigns/audience", response_class=HTMLResponse)
async def audience_size(
    page: MarketerPage,
    db: SessionDep,
    kind: Annotated[Kind, Form()],
    campaign_id: Annotated[int | None, Form()] = None,
) -> HTMLResponse:
    """The live audience size for the filters as they stand in the form (nothing is saved)."""
    form = campaign_form.parse(
        await page.request.form(), kind=kind, currency=page.currency, timezone=page.timezone
    )
    saved = await campaigns.get_campaign(db, campaign_id) if campaign_id else None
    if saved is not None and saved.status not in campaigns.EDITABLE:
        preview, error = await attempt(
            db, lambda: campaigns.preview(db, saved, settings=page.settings)
        )
        return page.render(
            "campaigns/_audience.html", preview=preview, error=error and error.detail
        )
    problems = {k: v for k, v in form.errors.items() if k.startswith(("audience.", "schedule."))}
    if problems:
        return page.render("campaigns/_audience.html", preview=None, problems=problems)
    draft = Campaign(
        id=campaign_id or 0,
        kind=kind,
        audience=form.payload["audience"],
        schedule=form.payload["schedule"],
        holdout_percent=form.payload["holdout_percent"],
        scheduled_at=None,
    )
    preview, error = await attempt(db, lambda: campaigns.preview(db, draft, settings=page.settings))
    return page.render("campaigns/_audience.html", preview=preview, error=error and error.detail)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def edit(campaign_id: int, page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """A campaign: its settings (editable while draft or paused) and lifecycle actions."""
    campaign = await campaigns.get_campaign(db, campaign_id)
    form = campaign_form.from_campaign(campaign, currency=page.currency, timezone=page.timezone)
    return page.render(
        "campaigns/edit.html",
        form=form,
        campaign=campaign,
        kind=campaign.kind,
        **await campaign_form.choices(db),
    )


@router.post("/campaigns/{campaign_id}", response_model=None)
async def update(
    campaign_id: int, page: MarketerPage, db: SessionDep
) -> HTMLResponse | RedirectResponse:
    """Save changes to a campaign."""
    campaign = await campaigns.get_campaign(db, campaign_id)
    form = campaign_form.parse(
        await page.request.form(),
        kind=campaign.kind,
        currency=page.currency,
        timezone=page.timezone,
    )
    if not form.errors:
        fields = {k: v for k, v in form.payload.items() if k != "kind"}
        body = CampaignUpdate.model_validate(fields)
        _, error = await attempt(db, lambda: campaigns.update_campaign(db, campaign, data=body))
        if error is None:
            return page.redirect(f"/campaigns/{campaign.id}", ("success", "Campaign saved."))
        form.errors["__all__"] = error.detail
    return page.render(
        "campaigns/edit.html",
        form=form,
        campaign=campaign,
        kind=campaign.kind,
        status_code=422,
        **await campaign_form.choices(db),
    )


@router.post("/campaigns/{campaign_id}/test")
async def test_send(
    campaign_id: int,
    page: MarketerPage,
    db: SessionDep,
    member: Annotated[str, Form(max_length=64)],
) -> RedirectResponse:
    """Send the message now to one member, found by phone or card number."""
    campaign = await campaigns.get_campaign(db, campaign_id)
    found = await members_service.search(
        db, settings=page.settings, q=member, scope=GLOBAL, page=PageParams(limit=1)
    )
    if not found.items:
        return page.redirect(
            f"/campaigns/{campaign.id}", ("error", f"No member matches {member!r}.")
        )
    target = found.items[0]
    _, error = await attempt(
        db, lambda: campaigns.send_test(db, campaign, member_id=target.id, settings=page.settings)
    )
    if error is not None:
        return page.redirect(f"/campaigns/{campaign.id}", ("error", error.detail))
    return page.redirect(
        f"/campaigns/{campaign.id}", ("success", f"Test sent to {target.name or target.phone}.")
    )


@router.post("/campaigns/{campaign_id}/{action}")
async def lifecycle(
    campaign_id: int, action: str, page: MarketerPage, db: SessionDep
) -> RedirectResponse:
    """Schedule (or resume), pause or cancel a campaign."""
    campaign = await campaigns.get_campaign(db, campaign_id)
    change = ACTIONS.get(action)
    if change is None:
        return page.redirect(f"/campaigns/{campaign.id}", ("error", "Unknown action."))
    done, error = await attempt(db, lambda: change(db, campaign))
    if error is not None:
        return page.redirect(f"/campaigns/{campaign.id}", ("error", error.detail))
    return page.redirect(f"/campaigns/{campaign.id}", ("success", f"Campaign is {done.status}."))


@router.get("/campaigns/{campaign_id}/report", response_class=HTMLResponse)
async def campaign_report(campaign_id: int, page: MarketerPage, db: SessionDep) -> HTMLResponse:
    """Delivery funnel, conversions against the holdout over time, suppressions, lift."""
    campaign = await campaigns.get_campaign(db, campaign_id)
    result = await report.campaign_report(db, campaign, settings=page.settings)
    timeline = await report.conversion_timeline(db, campaign, tz=page.timezone)
    return page.render(
        "campaigns/report.html",
        campaign=campaign,
        report=result,
        timeline=timeline,
        kinds=campaign_form.KIND_LABELS,
        charts={
            "funnel": charts.funnel(result),
            "conversions": charts.conversions(timeline.days, timeline.treated, timeline.holdout),
        },
        schedule=campaign_form.schedule_text(campaign.kind, campaign.schedule, page.timezone),
        generated=datetime.now(ZoneInfo(page.timezone)),
    )
