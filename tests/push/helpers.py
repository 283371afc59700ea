"""Plain helpers for the push tests: campaigns, devices, purchases and one worker pass."""

from datetime import datetime
from itertools import count
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core import clock
from api.core.config import Settings
from api.core.db import run_in_transaction
from api.loyalty.till.models import Purchase, PurchaseLine
from api.members.models import Member
from api.push import campaigns, devices, dispatcher, scheduler
from api.push.models import Campaign, Delivery, InboxItem
from api.push.schemas import CampaignCreate, DeviceIn
from api.push.transport import PushTransport

_seq = count(1)
MESSAGE = {"title": "Hi {name}", "body": "You have {points} points ({tier})"}


async def make_campaign(
    session: AsyncSession,
    *,
    kind: str = "one_off",
    schedule: dict[str, Any] | None = None,
    audience: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    reward: dict[str, Any] | None = None,
    holdout_percent: int = 0,
    start: bool = True,
    staff_id: int = 1,
) -> Campaign:
    """A campaign (scheduled unless start=False); a one_off is due now by default."""
    if schedule is None:
        schedule = {"at": clock.now().isoformat()} if kind == "one_off" else {}
    data = CampaignCreate(
        name=f"Campaign {next(_seq)}",
        kind=kind,
        schedule=schedule,
        audience=audience or {},
        message=message or MESSAGE,
        reward=reward,
        holdout_percent=holdout_percent,
    )
    campaign = await campaigns.create_campaign(session, data=data, staff_id=staff_id)
    if start:
        await campaigns.schedule_campaign(session, campaign)
    await session.flush()
    return campaign


async def add_device(session: AsyncSession, member: Member, token: str | None = None) -> str:
    token = token or f"tok-{member.id}-{next(_seq)}"
    await devices.register(
        session, member_id=member.id, data=DeviceIn(token=token, platform="android")
    )
    return token


async def add_purchase(
    session: AsyncSession,
    member: Member,
    *,
    store_id: int,
    total: int = 1000,
    at: datetime | None = None,
    category: str = "grocery",
) -> Purchase:
    purchase = Purchase(
        store_id=store_id,
        receipt_no=f"R{next(_seq)}",
        member_id=member.id,
        occurred_at=at or clock.now(),
        currency="CNY",
        total=total,
        created_at=clock.now(),
    )
    session.add(purchase)
    await session.flush()
    session.add(
        PurchaseLine(
            purchase_id=purchase.id,
            line_no=1,
            sku="SKU",
            category=category,
            quantity=1,
            amount=total,
        )
    )
    await session.flush()
    return purchase


async def schedule(maker: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    return await run_in_transaction(maker, lambda s: scheduler.schedule_due(s, settings=settings))


async def worker_pass(
    maker: async_sessionmaker[AsyncSession], settings: Settings, transport: PushTransport
) -> int:
    """What one pass of the push jobs does: materialise due runs, then send."""
    await schedule(maker, settings)
    return await dispatcher.dispatch_due(maker, settings=settings, transport=transport)


async def deliveries(session: AsyncSession, campaign: Campaign) -> list[Delivery]:
    stmt = (
        select(Delivery)
        .where(Delivery.campaign_id == campaign.id)
        .order_by(Delivery.member_id)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def by_status(session: AsyncSession, campaign: Campaign) -> dict[str, int]:
    stmt = (
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign.id)
        .group_by(Delivery.status)
    )
    return dict((await session.execute(stmt)).all())  # type: ignore[arg-type]


async def inbox_of(session: AsyncSession, member: Member) -> list[InboxItem]:
    stmt = (
        select(InboxItem)
        .where(InboxItem.member_id == member.id)
        .order_by(InboxItem.id)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())
