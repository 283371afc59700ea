"""Demo campaigns: the Wednesday member-day reminder, the birthday greeting, and a one-off
offer sent some days ago whose report has reads and (with the demo's purchase history)
conversions against its holdout."""

import random
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import RuleCreate
from api.push import campaigns, runs, scheduler
from api.push.models import Campaign, Delivery, InboxItem
from api.push.schedule import Occurrence, at_local
from api.push.schemas import CampaignCreate

MEMBER_DAY_RULE = "member-day-wednesday"


@dataclass(frozen=True)
class DemoCampaigns:
    member_day: Campaign
    birthday: Campaign
    past_offer: Campaign


async def _wednesday_rule(session: AsyncSession) -> None:
    rules = await program_service.list_rules(session, active_only=True)
    if not any(r.kind == "member_day" for r in rules):
        await program_service.create_rule(
            session,
            data=RuleCreate(
                code=MEMBER_DAY_RULE,
                name="会员日 Member Wednesday",
                kind="member_day",
                params={"rrule": "FREQ=WEEKLY;BYDAY=WE", "multiplier_percent": 200},
            ),
        )


async def _create(session: AsyncSession, staff_id: int | None, **fields: object) -> Campaign:
    data = CampaignCreate.model_validate(fields)
    return await campaigns.create_campaign(session, data=data, staff_id=staff_id)


async def load_demo_campaigns(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int | None = None,
    now: datetime | None = None,
    sent_days_ago: int = 10,
    seed: int = 7,
) -> DemoCampaigns:
    """Create the demo's campaigns (a member_day rule too if the programme has none)."""
    now = now or clock.now()
    await _wednesday_rule(session)
    member_day = await _create(
        session,
        staff_id,
        name="会员日提醒 Member-day reminder",
        kind="member_day",
        schedule={"local_time": "08:30"},
        message={
            "title": "今天会员日 Member day today",
            "body": "{name}, double points on everything today. You have {points} points.",
            "data": {"screen": "offers"},
        },
    )
    birthday = await _create(
        session,
        staff_id,
        name="生日祝福 Birthday greeting",
        kind="birthday",
        schedule={"local_time": "09:00"},
        message={"title": "生日快乐 Happy birthday, {name}!", "body": "200 points from us."},
        reward={"points": 200},
    )
    for campaign in (member_day, birthday):
        await campaigns.schedule_campaign(session, campaign)
    past = await _past_offer(session, settings, staff_id, now - timedelta(days=sent_days_ago), seed)
    return DemoCampaigns(member_day, birthday, past)


async def _past_offer(
    session: AsyncSession, settings: Settings, staff_id: int | None, sent_at: datetime, seed: int
) -> Campaign:
    target = await scheduler.load_target(session, now=sent_at)
    zone = target.program_tz
    at = at_local(sent_at.astimezone(ZoneInfo(zone)).date(), time(10, 0), zone)
    target = replace(target, now=at)
    campaign = await _create(
        session,
        staff_id,
        name="周末生鲜 Weekend fresh-food offer",
        kind="one_off",
        schedule={"at": at.isoformat()},
        message={"title": "Fresh food −20%", "body": "{name}, this weekend only.", "valid_days": 3},
        holdout_percent=20,
    )
    campaign.status, campaign.scheduled_at = "scheduled", at - timedelta(hours=1)
    occurrence = Occurrence("once", at)
    await runs.materialise(
        session,
        campaign=campaign,
        occurrence=occurrence,
        target=replace(target, occurrence=occurrence),
        settings=settings.model_copy(update={"push_frequency_cap": 0}),
    )
    await session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign.id, Delivery.status == "queued")
        .values(status="sent", sent_at=Delivery.not_before, attempts=1, claims=1, reward_done=True)
    )
    rng = random.Random(seed)
    items = (
        await session.execute(select(InboxItem).where(InboxItem.campaign_id == campaign.id))
    ).scalars()
    for item in items:
        if rng.random() < 0.4:
            item.read_at = item.visible_at + timedelta(minutes=rng.randrange(5, 600))
    campaign.status, campaign.completed_at = "completed", at + timedelta(hours=1)
    await session.flush()
    return campaign
