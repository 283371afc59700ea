from typing import Annotated

from fastapi import Depends, Response, status

from api.core.access import PolicyRouter
from api.core.db import SessionDep
from api.core.pagination import Page, PageParams, page_params
from api.loyalty.rewards import service as rewards
from api.loyalty.rewards.schemas import (
    CouponRead,
    CouponRedeemed,
    CouponRedeemIn,
    RewardCreate,
    RewardRead,
    RewardUpdate,
)
from api.loyalty.till.dependencies import AtTill
from api.members import qr
from api.members.dependencies import CurrentMember, MemberOnce
from api.org.dependencies import CurrentStaff, Marketing, TerminalOnce

router = PolicyRouter(prefix="/v1", tags=["rewards"])


@router.get("/rewards", response_model=list[RewardRead])
async def list_rewards(session: SessionDep, _: CurrentStaff) -> list[RewardRead]:
    """The whole rewards catalogue, including inactive and sold-out rewards."""
    return [RewardRead.model_validate(r) for r in await rewards.list_rewards(session)]


@router.post("/rewards", response_model=RewardRead, status_code=status.HTTP_201_CREATED)
async def create_reward(body: RewardCreate, session: SessionDep, _: Marketing) -> RewardRead:
    """Add a reward: points cost, stock, per-member limit, validity and stores."""
    return RewardRead.model_validate(await rewards.create_reward(session, data=body))


@router.get("/rewards/{reward_id}", response_model=RewardRead)
async def get_reward(reward_id: int, session: SessionDep, _: CurrentStaff) -> RewardRead:
    """One reward of the catalogue."""
    return RewardRead.model_validate(await rewards.get_reward(session, reward_id))


@router.patch("/rewards/{reward_id}", response_model=RewardRead)
async def update_reward(
    reward_id: int, body: RewardUpdate, session: SessionDep, _: Marketing
) -> RewardRead:
    """Change a reward (fields left out stay as they are); issued coupons are unaffected."""
    reward = await rewards.get_reward(session, reward_id)
    return RewardRead.model_validate(await rewards.update_reward(session, reward, data=body))


@router.get("/me/rewards", response_model=list[RewardRead], tags=["me"])
async def offered_rewards(member: CurrentMember, session: SessionDep) -> list[RewardRead]:
    """Rewards the member can claim now: active, valid and in stock."""
    found = await rewards.list_rewards(session, offered_only=True)
    return [RewardRead.model_validate(r) for r in found]


@router.post(
    "/me/rewards/{reward_id}/claim",
    response_model=CouponRead,
    status_code=status.HTTP_201_CREATED,
    tags=["me"],
)
async def claim_reward(
    reward_id: int, member: CurrentMember, session: SessionDep, once: MemberOnce
) -> CouponRead:
    """Spend points on a reward: a single-use coupon with a code to show at the till."""

    async def work() -> CouponRead:
        coupon = await rewards.claim(session, member_id=member.id, reward_id=reward_id)
        return CouponRead.model_validate(coupon)

    return await once(work, status_code=status.HTTP_201_CREATED)


@router.get("/me/coupons", response_model=Page[CouponRead], tags=["me"])
async def my_coupons(
    member: CurrentMember, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[CouponRead]:
    """The member's coupons, newest first (cursor-paginated)."""
    found = await rewards.list_coupons(session, member.id, page=page)
    return Page(
        items=[CouponRead.model_validate(c) for c in found.items], next_cursor=found.next_cursor
    )


@router.get(
    "/me/coupons/{coupon_id}/qr.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    tags=["me"],
)
async def coupon_qr_png(coupon_id: int, member: CurrentMember, session: SessionDep) -> Response:
    """The coupon code as a PNG QR image for the till to scan."""
    coupon = await rewards.get_coupon(session, member_id=member.id, coupon_id=coupon_id)
    return Response(
        await qr.render(coupon.code, "png"),
        media_type="image/png",
        headers={"Cache-Control": "private, no-store"},
    )


@router.post("/me/coupons/{coupon_id}/cancel", response_model=CouponRead, tags=["me"])
async def cancel_coupon(
    coupon_id: int, member: CurrentMember, session: SessionDep, once: MemberOnce
) -> CouponRead:
    """Give back an unused coupon: its points return to the balance."""

    async def work() -> CouponRead:
        coupon = await rewards.cancel_coupon(session, member_id=member.id, coupon_id=coupon_id)
        return CouponRead.model_validate(coupon)

    return await once(work)


@router.post("/pos/coupons/redeem", response_model=CouponRedeemed, tags=["pos"])
async def redeem_coupon(
    body: CouponRedeemIn, session: SessionDep, till: AtTill, once: TerminalOnce
) -> CouponRedeemed:
    """Use a coupon at the till: once, before it expires, at a store the reward allows."""

    async def work() -> CouponRedeemed:
        coupon, reward = await rewards.redeem(
            session, till=till, code=body.code, receipt_no=body.receipt_no
        )
        return CouponRedeemed(
            coupon=CouponRead.model_validate(coupon),
            reward=RewardRead.model_validate(reward),
            member_id=coupon.member_id,
        )

    return await once(work, body=body)
