"""The scheduling pass: materialise every due occurrence of every live campaign, then complete
campaigns that have nothing left to send."""

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.loyalty.program import service as program_service
from api.org import service as org_service
from api.push import runs
from api.push.audience import MemberDayRule, Target
from api.push.models import Campaign, CampaignRun, Delivery
from api.push.schedule import (
    Occurrence,
    daily_due,
    recurring_due,
    recurring_finished,
    welcome_slot,
)
from api.push.schemas import Kind, local_time, parse_schedule

log = logging.getLogger("loyalty.push")

LIVE = ("scheduled", "running")
PENDING = ("queued", "sending")


async def load_target(session: AsyncSession, *, now: datetime) -> Target:
    """The programme zone, every store zone, and the active member-day rules."""
    program = await program_service.get_program(session)
    stores = await org_service.list_stores(session)
    zones = {s.timezone for s in stores if s.active} | {program.timezone}
    member_days = tuple(
        MemberDayRule.of(r)
        for r in await program_service.list_rules(session, active_only=True)
        if r.kind == "member_day"
        and (r.valid_from is None or r.valid_from <= now)
        and (r.valid_until is None or r.valid_until > now)
    )
    return Target(now, program.timezone, tuple(sorted(zones)), None, member_days)


def occurrences(campaign: Campaign, target: Target, settings: Settings) -> list[Occurrence]:
    """The campaign's occurrences due now (see api.push.schedule for the keys)."""
    now = target.now
    assert campaign.scheduled_at is not None
    since = max(campaign.scheduled_at, now - timedelta(hours=settings.push_catch_up_hours))
    kind, schedule = Kind(campaign.kind), campaign.schedule
    if kind == Kind.one_off:
        at = parse_schedule(kind, schedule).at
        return [Occurrence("once", at)] if at <= now else []
    if kind == Kind.recurring:
        return recurring_due(schedule, scheduled_at=campaign.scheduled_at, since=since, now=now)
    if kind == Kind.welcome:
        slot = welcome_slot(now, settings.push_welcome_minutes)
        return [slot] if slot.due_at > campaign.scheduled_at else []
    at = local_time(parse_schedule(kind, schedule).local_time)
    if kind == Kind.birthday:
        return daily_due(target.zones, at, since=since, now=now, period_of=lambda d: str(d.year))
    if kind == Kind.member_day:
        return daily_due(
            target.zones,
            at,
            since=since,
            now=now,
            on_day=lambda d: any(r.occurs_on(d) for r in target.member_day_rules),
        )
    return daily_due([target.program_tz], at, since=since, now=now, with_zone_in_key=False)


async def _existing_keys(session: AsyncSession, campaign_id: int, keys: list[str]) -> set[str]:
    stmt = select(CampaignRun.occurrence_key).where(
        CampaignRun.campaign_id == campaign_id, CampaignRun.occurrence_key.in_(keys)
    )
    return set((await session.execute(stmt)).scalars())


async def _has_pending(session: AsyncSession, campaign_id: int) -> bool:
    stmt = select(func.count(Delivery.id)).where(
        Delivery.campaign_id == campaign_id,
        Delivery.is_test.is_(False),
        Delivery.status.in_(PENDING),
    )
    return bool((await session.execute(stmt)).scalar_one())


async def _complete_if_done(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    if campaign.status != "running" or campaign.kind not in (Kind.one_off, Kind.recurring):
        return
    if campaign.kind == Kind.recurring and not recurring_finished(
        campaign.schedule, scheduled_at=campaign.scheduled_at or now, now=now
    ):
        return
    if not await _has_pending(session, campaign.id):
        campaign.status = "completed"
        campaign.completed_at = now
        campaign.updated_at = now


async def schedule_due(
    session: AsyncSession, *, settings: Settings, now: datetime | None = None
) -> int:
    """Materialise due runs, each in a savepoint (one failing leaves the rest); returns runs."""
    now = now or clock.now()
    stmt = select(Campaign).where(Campaign.status.in_(LIVE)).order_by(Campaign.id)
    campaigns = list((await session.execute(stmt)).scalars())
    if not campaigns:
        return 0
    target = await load_target(session, now=now)
    made = 0
    for campaign in campaigns:
        due = occurrences(campaign, target, settings)
        done = await _existing_keys(session, campaign.id, [o.key for o in due]) if due else set()
        for occ in due:
            if occ.key in done:
                continue
            try:
                async with session.begin_nested():
                    result = await runs.materialise(
                        session,
                        campaign=campaign,
                        occurrence=occ,
                        target=replace(target, occurrence=occ),
                        settings=settings,
                    )
            except Exception:
                log.exception("campaign %s: run %s failed to materialise", campaign.id, occ.key)
                continue
            if result is not None:
                made += 1
                log.info(
                    "campaign %s: run %s targets %s members", campaign.id, occ.key, result.targeted
                )
        await _complete_if_done(session, campaign, now)
    await session.flush()
    return made
