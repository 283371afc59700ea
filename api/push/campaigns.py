"""Campaigns: create, edit (versioned), lifecycle, preview and test sends.

Lifecycle: draft → scheduled → running → completed | paused | cancelled. `schedule` starts a
draft or resumes a paused campaign; `pause` stops new runs and holds queued deliveries;
`cancel` is final and withdraws queued deliveries with their inbox items.

Editing: a draft or paused campaign may change anything but its kind; a change of audience,
schedule, message, reward or holdout bumps `version` (each run records the version it sent).
A scheduled or running campaign refuses such edits with 409 CampaignNotEditable (pause first);
its name can always change. Deliveries already queued keep the message rendered for them.
"""

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.core.errors import NotFound
from api.core.pagination import PageParams, Slice, make_page
from api.loyalty.ledger.models import Account
from api.loyalty.rewards import service as rewards_service
from api.members import service as members_service
from api.members.models import Member
from api.push import audience, runs, suppression
from api.push.exceptions import (
    CampaignNotEditable,
    CampaignNotFound,
    InvalidCampaign,
    InvalidTransition,
    TestRecipientNotFound,
)
from api.push.models import Campaign, Delivery, InboxItem
from api.push.scheduler import load_target
from api.push.schemas import (
    TRANSACTIONAL_KINDS,
    CampaignCreate,
    CampaignUpdate,
    PreviewRead,
    SampleMember,
    parse_schedule,
    schedule_problems,
)

EDITABLE = ("draft", "paused")
CONTENT = ("audience", "schedule", "message", "reward", "holdout_percent")
SAMPLE_SIZE = 10
ONE_OFF_GRACE = timedelta(hours=1)


async def _check_reward(session: AsyncSession, reward: dict[str, Any] | None) -> None:
    if reward and reward.get("reward_id") is not None:
        try:
            await rewards_service.get_reward(session, reward["reward_id"])
        except NotFound as e:
            raise InvalidCampaign(f"reward {reward['reward_id']} does not exist") from e


async def create_campaign(
    session: AsyncSession, *, data: CampaignCreate, staff_id: int | None
) -> Campaign:
    """A new campaign, in draft."""
    reward = data.reward.model_dump(exclude_none=True) if data.reward else None
    await _check_reward(session, reward)
    now = clock.now()
    campaign = Campaign(
        name=data.name,
        kind=data.kind,
        status="draft",
        audience=data.audience.model_dump(mode="json", exclude_none=True),
        schedule=data.schedule,
        message=data.message.model_dump(mode="json", exclude_none=True),
        reward=reward,
        holdout_percent=data.holdout_percent,
        version=1,
        created_by=staff_id,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    await session.flush()
    return campaign


async def list_campaigns(
    session: AsyncSession, *, page: PageParams, status: str | None = None
) -> Slice[Campaign]:
    """Campaigns, newest first."""
    stmt = select(Campaign)
    if status:
        stmt = stmt.where(Campaign.status == status)
    if page.before_id is not None:
        stmt = stmt.where(Campaign.id < page.before_id)
    rows = await session.execute(stmt.order_by(Campaign.id.desc()).limit(page.limit + 1))
    return make_page(list(rows.scalars()), page.limit, lambda c: c.id)


async def get_campaign(session: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignNotFound()
    return campaign


async def update_campaign(
    session: AsyncSession, campaign: Campaign, *, data: CampaignUpdate
) -> Campaign:
    """Change a campaign; content changes need draft or paused and bump its version."""
    changes = {
        k: v
        for k, v in data.model_dump(mode="json", exclude_unset=True).items()
        if v is not None or k == "reward"  # `reward: null` removes the reward
    }
    content = {k: v for k, v in changes.items() if k in CONTENT}
    if content and campaign.status not in EDITABLE:
        raise CampaignNotEditable(
            f"a {campaign.status} campaign cannot change {', '.join(sorted(content))}; "
            "pause it first"
        )
    if "schedule" in content and (problem := schedule_problems(campaign.kind, content["schedule"])):
        raise InvalidCampaign(problem)
    if "schedule" in content:
        content["schedule"] = parse_schedule(campaign.kind, content["schedule"]).model_dump(
            mode="json"
        )
    await _check_reward(session, content.get("reward"))
    if "name" in changes:
        campaign.name = changes["name"]
    changed = False
    for field, value in content.items():
        if getattr(campaign, field) != value:
            setattr(campaign, field, value)
            changed = True
    if changed:
        campaign.version += 1
    campaign.updated_at = clock.now()
    await session.flush()
    return campaign


async def _has_runs(session: AsyncSession, campaign_id: int) -> bool:
    stmt = select(func.count(Delivery.id)).where(
        Delivery.campaign_id == campaign_id, Delivery.is_test.is_(False)
    )
    return bool((await session.execute(stmt)).scalar_one())


def _transition(campaign: Campaign, allowed_from: tuple[str, ...], to: str) -> None:
    if campaign.status not in allowed_from:
        raise InvalidTransition(f"cannot {to} a {campaign.status} campaign")


async def schedule_campaign(session: AsyncSession, campaign: Campaign) -> Campaign:
    """Start a draft (or resume a paused campaign): the worker sends it when due."""
    _transition(campaign, EDITABLE, "schedule")
    now = clock.now()
    if problem := schedule_problems(campaign.kind, campaign.schedule):
        raise InvalidCampaign(problem)
    if campaign.kind == "one_off" and campaign.status == "draft":
        at = parse_schedule(campaign.kind, campaign.schedule).at
        if at < now - ONE_OFF_GRACE:
            raise InvalidCampaign("schedule.at is in the past")
    campaign.scheduled_at = campaign.scheduled_at or now
    campaign.status = "running" if await _has_runs(session, campaign.id) else "scheduled"
    campaign.updated_at = now
    await session.flush()
    return campaign


async def pause_campaign(session: AsyncSession, campaign: Campaign) -> Campaign:
    """Stop new runs and hold queued deliveries until resumed."""
    _transition(campaign, ("scheduled", "running"), "pause")
    campaign.status = "paused"
    campaign.updated_at = clock.now()
    await session.flush()
    return campaign


async def cancel_campaign(session: AsyncSession, campaign: Campaign) -> Campaign:
    """Stop for good; deliveries not sent yet are withdrawn with their inbox items."""
    _transition(campaign, ("draft", "scheduled", "running", "paused"), "cancel")
    now = clock.now()
    queued = select(Delivery.id).where(
        Delivery.campaign_id == campaign.id, Delivery.status == "queued"
    )
    await session.execute(delete(InboxItem).where(InboxItem.delivery_id.in_(queued)))
    await session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign.id, Delivery.status == "queued")
        .values(status="cancelled")
    )
    campaign.status = "cancelled"
    campaign.completed_at = campaign.updated_at = now
    await session.flush()
    return campaign


async def preview(session: AsyncSession, campaign: Campaign, *, settings: Settings) -> PreviewRead:
    """Who a run now would target, how many would be suppressed (by reason) or held out."""
    now = clock.now()
    target = await load_target(session, now=now)
    where = audience.condition(
        campaign_id=campaign.id,
        kind=campaign.kind,
        schedule=campaign.schedule,
        audience=campaign.audience,
        target=target,
        since=campaign.scheduled_at or now,
    )
    ctx = suppression.CheckContext(
        campaign.id, campaign.kind not in TRANSACTIONAL_KINDS, now, settings.push_frequency_cap
    )
    reason = suppression.reason(ctx).label("reason")
    held = runs.holdout_bucket(Member.id, runs.holdout_seed(campaign.id, "preview"))
    counted = (
        audience.members()
        .add_columns(reason, (held < campaign.holdout_percent).label("held"))
        .where(where)
        .subquery()
    )
    stmt = select(counted.c.reason, counted.c.held, func.count()).group_by(
        counted.c.reason, counted.c.held
    )
    size, holdout = 0, 0
    suppressed: dict[str, int] = {}
    for why, is_held, n in await session.execute(stmt):
        size += n
        if why is not None:
            suppressed[why] = suppressed.get(why, 0) + n
        elif is_held:
            holdout += n
    sample_stmt = (
        audience.members()
        .add_columns(Member.name, Account.tier, Member.home_store_id)
        .outerjoin(Account, Account.member_id == Member.id)
        .where(where)
        .order_by(Member.id)
        .limit(SAMPLE_SIZE)
    )
    sample = [
        SampleMember(member_id=i, name=name, tier=tier, home_store_id=store)
        for i, name, tier, store in await session.execute(sample_stmt)
    ]
    return PreviewRead(
        audience_size=size, sample=sample, suppressed=suppressed, holdout_estimate=holdout
    )


async def send_test(
    session: AsyncSession, campaign: Campaign, *, member_id: int, settings: Settings
) -> Delivery:
    """Queue the campaign's message to one member now (no suppression, holdout or reward)."""
    try:
        await members_service.get_member(session, member_id)
    except NotFound as e:
        raise TestRecipientNotFound() from e
    now = clock.now()
    target = await load_target(session, now=now)
    result = await runs.materialise(
        session,
        campaign=campaign,
        occurrence=runs.test_occurrence(now),
        target=target,
        settings=settings,
        only_member_id=member_id,
    )
    assert result is not None
    stmt = select(Delivery).where(Delivery.run_id == result.run.id)
    return (await session.execute(stmt)).scalar_one()
