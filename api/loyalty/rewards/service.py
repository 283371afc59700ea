"""The rewards catalogue, coupons bought with points, and their single use at the till.

Lock order (PostgreSQL): a coupon row, then the member's account, then the reward row.
"""

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.errors import NotFound
from api.core.pagination import PageParams, Slice, make_page
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.rewards.exceptions import (
    CouponNotFound,
    CouponNotRedeemable,
    InvalidReward,
    RewardLimitReached,
    RewardNotFound,
    RewardUnavailable,
)
from api.loyalty.rewards.models import Coupon, Reward
from api.loyalty.rewards.schemas import RewardCreate, RewardUpdate
from api.loyalty.till.context import Till
from api.loyalty.till.redemptions import check_spendable
from api.org import service as org_service

# No 0/O, 1/I/L: a cashier may have to type the code from a phone screen.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10
CODE_ATTEMPTS = 5
EXPIRY_BATCH = 200
_CODE_SEPARATORS = re.compile(r"[\s-]+")
_REQUIRED = ("name", "description", "points_cost", "coupon_days", "active")


def new_coupon_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    """A code as typed at the till: case and separators do not matter."""
    return _CODE_SEPARATORS.sub("", code).upper()


def is_offered(reward: Reward, at: datetime) -> bool:
    """Active, still valid and in stock."""
    return (
        reward.active
        and (reward.valid_until is None or reward.valid_until > at)
        and (reward.stock is None or reward.stock > 0)
    )


# ----------------------------------------------------------------------------- catalogue


async def list_rewards(session: AsyncSession, *, offered_only: bool = False) -> list[Reward]:
    """The catalogue by points cost; `offered_only` keeps what a member can claim now."""
    stmt = select(Reward).order_by(Reward.points_cost, Reward.id)
    rewards = list((await session.execute(stmt)).scalars())
    if offered_only:
        now = clock.now()
        rewards = [r for r in rewards if is_offered(r, now)]
    return rewards


async def get_reward(session: AsyncSession, reward_id: int) -> Reward:
    reward = await session.get(Reward, reward_id)
    if reward is None:
        raise RewardNotFound()
    return reward


async def _check_stores(session: AsyncSession, store_ids: list[int] | None) -> list[int] | None:
    if store_ids is None:
        return None
    for store_id in store_ids:
        try:
            await org_service.get_store(session, store_id)
        except NotFound as e:
            raise InvalidReward(f"store {store_id} does not exist") from e
    return sorted(set(store_ids))


def _check_valid_until(valid_until: datetime | None) -> None:
    if valid_until is None:
        return
    if valid_until.tzinfo is None:
        raise InvalidReward("valid_until needs a UTC offset")
    if valid_until <= clock.now():
        raise InvalidReward("valid_until is in the past")


async def create_reward(session: AsyncSession, *, data: RewardCreate) -> Reward:
    """Add a reward to the catalogue."""
    _check_valid_until(data.valid_until)
    reward = Reward(
        **data.model_dump(exclude={"store_ids"}),
        store_ids=await _check_stores(session, data.store_ids),
        active=True,
        created_at=clock.now(),
    )
    session.add(reward)
    await session.flush()
    return reward


async def update_reward(session: AsyncSession, reward: Reward, *, data: RewardUpdate) -> Reward:
    """Change a reward; coupons already issued keep their cost and expiry."""
    changes = data.model_dump(exclude_unset=True)
    for field in _REQUIRED:
        if field in changes and changes[field] is None:
            raise InvalidReward(f"{field} cannot be empty")
    if "valid_until" in changes:
        _check_valid_until(changes["valid_until"])
    if "store_ids" in changes:
        changes["store_ids"] = await _check_stores(session, changes["store_ids"])
    for field, value in changes.items():
        setattr(reward, field, value)
    await session.flush()
    return reward


# ----------------------------------------------------------------------------- coupons


async def new_coupon(session: AsyncSession, **fields: object) -> Coupon:
    """Insert a coupon under a fresh random code, retrying on the rare code collision."""
    for _ in range(CODE_ATTEMPTS):
        coupon = Coupon(code=new_coupon_code(), **fields)
        try:
            async with session.begin_nested():
                session.add(coupon)
        except IntegrityError:
            continue
        return coupon
    raise RuntimeError("no free coupon code after several attempts")


async def claim(session: AsyncSession, *, member_id: int, reward_id: int) -> Coupon:
    """Spend the reward's points on a single-use coupon; stock and the member's limit hold."""
    account = await ledger.lock_account(session, member_id)
    stmt = (
        select(Reward)
        .where(Reward.id == reward_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    reward = (await session.execute(stmt)).scalar_one_or_none()
    if reward is None:
        raise RewardNotFound()
    now = clock.now()
    if not reward.active or (reward.valid_until is not None and reward.valid_until <= now):
        raise RewardUnavailable("this reward is no longer offered")
    if reward.stock is not None and reward.stock <= 0:
        raise RewardUnavailable("this reward is out of stock")
    if reward.per_member_limit is not None:
        claimed = select(func.count(Coupon.id)).where(
            Coupon.member_id == member_id,
            Coupon.reward_id == reward.id,
            Coupon.status != "cancelled",
        )
        if (await session.execute(claimed)).scalar_one() >= reward.per_member_limit:
            raise RewardLimitReached()
    check_spendable(account, reward.points_cost)
    if reward.stock is not None:
        reward.stock -= 1
    expires_at = now + timedelta(days=reward.coupon_days)
    if reward.valid_until is not None:
        expires_at = min(expires_at, reward.valid_until)
    coupon = await new_coupon(
        session,
        reward_id=reward.id,
        member_id=member_id,
        status="issued",
        points_spent=reward.points_cost,
        source="claim",
        expires_at=expires_at,
        created_at=now,
    )
    entry = await ledger.debit(
        session,
        account,
        kind="spend",
        points=reward.points_cost,
        source=ledger.Source("coupon", coupon.id, f"member:{member_id}", f"reward {reward.name}"),
        detail={"reward_id": reward.id},
    )
    coupon.spend_entry_id = entry.id
    await session.flush()
    return coupon


async def list_coupons(session: AsyncSession, member_id: int, *, page: PageParams) -> Slice[Coupon]:
    """The member's coupons, newest first."""
    stmt = select(Coupon).where(Coupon.member_id == member_id)
    if page.before_id is not None:
        stmt = stmt.where(Coupon.id < page.before_id)
    stmt = stmt.order_by(Coupon.id.desc()).limit(page.limit + 1)
    return make_page(list((await session.execute(stmt)).scalars()), page.limit, lambda c: c.id)


async def get_coupon(session: AsyncSession, *, member_id: int, coupon_id: int) -> Coupon:
    coupon = await session.get(Coupon, coupon_id)
    if coupon is None or coupon.member_id != member_id:
        raise CouponNotFound()
    return coupon


async def _refund(
    session: AsyncSession, account: Account, coupon: Coupon, *, actor: str, reason: str
) -> None:
    """Points back to the lots they came from (none for a free coupon)."""
    if coupon.spend_entry_id is None:
        return
    burn = await session.get(LedgerEntry, coupon.spend_entry_id)
    assert burn is not None
    await ledger.restore(
        session, account, burn=burn, source=ledger.Source("coupon", coupon.id, actor, reason)
    )


async def _restock(session: AsyncSession, counts: dict[int, int]) -> None:
    """Claimed coupons that come back unused return to stock (gift coupons never took any)."""
    for reward_id in sorted(counts):
        await session.execute(
            update(Reward)
            .where(Reward.id == reward_id, Reward.stock.is_not(None))
            .values(stock=Reward.stock + counts[reward_id])
        )


async def cancel_coupon(session: AsyncSession, *, member_id: int, coupon_id: int) -> Coupon:
    """The member gives back an unused coupon: its points return and the stock goes up."""
    stmt = (
        select(Coupon)
        .where(Coupon.id == coupon_id, Coupon.member_id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    coupon = (await session.execute(stmt)).scalar_one_or_none()
    if coupon is None:
        raise CouponNotFound()
    if coupon.status == "cancelled":
        return coupon
    if coupon.status != "issued":
        raise CouponNotRedeemable(f"the coupon is {coupon.status}")
    account = await ledger.lock_account(session, member_id)
    await _refund(session, account, coupon, actor=f"member:{member_id}", reason="coupon cancelled")
    coupon.status = "cancelled"
    if coupon.source == "claim":
        await _restock(session, {coupon.reward_id: 1})
    await session.flush()
    return coupon


async def redeem(
    session: AsyncSession, *, till: Till, code: str, receipt_no: str | None
) -> tuple[Coupon, Reward]:
    """Use a coupon at the till, once, before it expires, at a store the reward allows."""
    stmt = (
        select(Coupon)
        .where(Coupon.code == normalise_code(code))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    coupon = (await session.execute(stmt)).scalar_one_or_none()
    if coupon is None:
        raise CouponNotFound()
    now = clock.now()
    if coupon.status != "issued":
        raise CouponNotRedeemable(f"the coupon is {coupon.status}")
    if coupon.expires_at <= now:
        raise CouponNotRedeemable("the coupon has expired")
    reward = await get_reward(session, coupon.reward_id)
    if reward.store_ids is not None and till.store.id not in reward.store_ids:
        raise RewardUnavailable("this reward is not offered at this store")
    coupon.status = "redeemed"
    coupon.redeemed_at = now
    coupon.redeemed_store_id = till.store.id
    coupon.receipt_no = receipt_no
    await session.flush()
    return coupon, reward


async def expire_coupons(session: AsyncSession) -> int:
    """Worker: unused coupons past their expiry lapse; their points and stock come back."""
    now = clock.now()
    stmt = (
        select(Coupon)
        .where(Coupon.status == "issued", Coupon.expires_at <= now)
        .order_by(Coupon.id)
        .limit(EXPIRY_BATCH)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    lapsed = list((await session.execute(stmt)).scalars())
    accounts = {}
    for member_id in sorted({c.member_id for c in lapsed}):
        accounts[member_id] = await ledger.lock_account(session, member_id)
    restock: dict[int, int] = {}
    for coupon in lapsed:
        await _refund(
            session, accounts[coupon.member_id], coupon, actor="system", reason="coupon expired"
        )
        coupon.status = "expired"
        if coupon.source == "claim":
            restock[coupon.reward_id] = restock.get(coupon.reward_id, 0) + 1
    await _restock(session, restock)
    await session.flush()
    return len(lapsed)
