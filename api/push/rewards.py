"""A campaign's reward per recipient, granted once when the delivery is claimed for sending:
points through the ledger (source `campaign`), or a coupon for a catalogue reward."""

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.ledger import service as ledger
from api.loyalty.program import service as program_service
from api.loyalty.rewards import service as rewards_service
from api.loyalty.rewards.models import Coupon
from api.push.models import Campaign, Delivery, InboxItem


async def grant(
    session: AsyncSession, *, delivery: Delivery, campaign: Campaign, item: InboxItem | None
) -> None:
    """Give the campaign's reward to the delivery's member unless it was given already."""
    delivery.reward_done = True
    spec = campaign.reward
    if not spec or delivery.is_test:
        return
    if spec.get("points"):
        await _points(session, delivery=delivery, campaign=campaign, points=int(spec["points"]))
    elif spec.get("reward_id"):
        coupon = await _coupon(session, delivery=delivery, reward_id=int(spec["reward_id"]))
        delivery.coupon_id = coupon.id
        if item is not None:
            item.data = {**(item.data or {}), "coupon_code": coupon.code}
            item.expires_at = min(filter(None, (item.expires_at, coupon.expires_at)))


async def _points(
    session: AsyncSession, *, delivery: Delivery, campaign: Campaign, points: int
) -> None:
    program = await program_service.get_program(session)
    account = await ledger.lock_account(session, delivery.member_id)
    await ledger.credit(
        session,
        account,
        kind="adjust",
        points=points,
        source=ledger.Source("campaign", campaign.id, f"campaign:{campaign.id}", campaign.name),
        expires_at=ledger.expiry_for(clock.now(), program.expiry_months, program.timezone),
        detail={"delivery_id": delivery.id},
    )
    delivery.points_granted = points


async def _coupon(session: AsyncSession, *, delivery: Delivery, reward_id: int) -> Coupon:
    """A gift coupon (no points spent; the catalogue's stock is not consumed)."""
    reward = await rewards_service.get_reward(session, reward_id)
    now = clock.now()
    expires_at = now + timedelta(days=reward.coupon_days)
    if reward.valid_until is not None:
        expires_at = min(expires_at, reward.valid_until)
    return await rewards_service.new_coupon(
        session,
        reward_id=reward.id,
        member_id=delivery.member_id,
        status="issued",
        points_spent=0,
        source="campaign",
        expires_at=expires_at,
        created_at=now,
    )
