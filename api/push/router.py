"""Campaigns for marketers: create, edit, preview, test, lifecycle and report."""

from typing import Annotated

from fastapi import Depends, Query, status

from api.core.access import PolicyRouter
from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.core.pagination import Page, PageParams, page_params
from api.org.dependencies import Marketing
from api.push import campaigns, report
from api.push.dependencies import ValidCampaign
from api.push.schemas import (
    CampaignCreate,
    CampaignRead,
    CampaignUpdate,
    DeliveryRead,
    PreviewRead,
    ReportRead,
    TestSendIn,
)

router = PolicyRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.post("", response_model=CampaignRead, status_code=status.HTTP_201_CREATED)
async def create_campaign(
    body: CampaignCreate, session: SessionDep, staff: Marketing
) -> CampaignRead:
    """Create a campaign in draft."""
    campaign = await campaigns.create_campaign(session, data=body, staff_id=staff.id)
    return CampaignRead.model_validate(campaign)


@router.get("", response_model=Page[CampaignRead])
async def list_campaigns(
    session: SessionDep,
    _: Marketing,
    page: Annotated[PageParams, Depends(page_params)],
    status_: Annotated[str | None, Query(alias="status", max_length=12)] = None,
) -> Page[CampaignRead]:
    """Campaigns, newest first (optionally of one status)."""
    found = await campaigns.list_campaigns(session, page=page, status=status_)
    return Page(
        items=[CampaignRead.model_validate(c) for c in found.items], next_cursor=found.next_cursor
    )


@router.get("/{campaign_id}", response_model=CampaignRead)
async def get_campaign(campaign: ValidCampaign) -> CampaignRead:
    """One campaign."""
    return CampaignRead.model_validate(campaign)


@router.patch("/{campaign_id}", response_model=CampaignRead)
async def update_campaign(
    body: CampaignUpdate, campaign: ValidCampaign, session: SessionDep
) -> CampaignRead:
    """Edit a campaign; what it sends changes only while draft or paused (else 409)."""
    return CampaignRead.model_validate(
        await campaigns.update_campaign(session, campaign, data=body)
    )


@router.post("/{campaign_id}/preview", response_model=PreviewRead)
async def preview_campaign(
    campaign: ValidCampaign, session: SessionDep, settings: SettingsDep
) -> PreviewRead:
    """Audience size, suppressions and holdout of a run now, with a sample of members."""
    return await campaigns.preview(session, campaign, settings=settings)


@router.post(
    "/{campaign_id}/test", response_model=DeliveryRead, status_code=status.HTTP_201_CREATED
)
async def test_campaign(
    body: TestSendIn, campaign: ValidCampaign, session: SessionDep, settings: SettingsDep
) -> DeliveryRead:
    """Send the message to one member now (inbox and push; not counted in the report)."""
    delivery = await campaigns.send_test(
        session, campaign, member_id=body.member_id, settings=settings
    )
    return DeliveryRead.model_validate(delivery)


@router.post("/{campaign_id}/schedule", response_model=CampaignRead)
async def schedule_campaign(campaign: ValidCampaign, session: SessionDep) -> CampaignRead:
    """Schedule a draft, or resume a paused campaign."""
    return CampaignRead.model_validate(await campaigns.schedule_campaign(session, campaign))


@router.post("/{campaign_id}/pause", response_model=CampaignRead)
async def pause_campaign(campaign: ValidCampaign, session: SessionDep) -> CampaignRead:
    """Pause: no new runs, queued deliveries wait."""
    return CampaignRead.model_validate(await campaigns.pause_campaign(session, campaign))


@router.post("/{campaign_id}/cancel", response_model=CampaignRead)
async def cancel_campaign(campaign: ValidCampaign, session: SessionDep) -> CampaignRead:
    """Cancel for good; unsent deliveries are withdrawn."""
    return CampaignRead.model_validate(await campaigns.cancel_campaign(session, campaign))


@router.get("/{campaign_id}/report", response_model=ReportRead)
async def campaign_report(
    campaign: ValidCampaign, session: SessionDep, settings: SettingsDep
) -> ReportRead:
    """Targeted, suppressed by reason, sent, failed, read, converted, holdout, lift, points cost."""
    return await report.campaign_report(session, campaign, settings=settings)
