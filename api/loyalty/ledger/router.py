"""Points for the member (balance, history) and for staff (adjustments, manual tiers)."""

from typing import Annotated

from fastapi import Depends, status

from api.core.access import PolicyRouter
from api.core.db import SessionDep
from api.core.pagination import Page, PageParams, page_params
from api.loyalty.ledger import accounts, tiers
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.schemas import AdjustmentIn, LedgerEntryRead, ManualTier, PointsRead
from api.members.dependencies import CurrentMember, ScopedMember
from api.org.dependencies import Admin, Marketing

router = PolicyRouter(prefix="/v1", tags=["loyalty"])
me_router = PolicyRouter(prefix="/v1/me", tags=["me"])


@me_router.get("/points", response_model=PointsRead)
async def my_points(member: CurrentMember, session: SessionDep) -> PointsRead:
    """Available and pending points, what expires when, and progress to the next tier."""
    return await accounts.points_view(session, member.id)


@me_router.get("/points/history", response_model=Page[LedgerEntryRead])
async def my_history(
    member: CurrentMember, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[LedgerEntryRead]:
    """Every points movement, newest first (cursor-paginated)."""
    found = await ledger.history(session, member.id, page=page)
    return Page(
        items=[LedgerEntryRead.model_validate(e) for e in found.items],
        next_cursor=found.next_cursor,
    )


@router.post(
    "/members/{member_id}/adjustments",
    response_model=LedgerEntryRead,
    status_code=status.HTTP_201_CREATED,
)
async def adjust_points(
    body: AdjustmentIn, member: ScopedMember, session: SessionDep, staff: Marketing
) -> LedgerEntryRead:
    """Add or remove points by hand, with a reason that shows in the member's history."""
    entry = await accounts.adjust(
        session,
        member_id=member.id,
        points=body.points,
        reason=body.reason,
        actor=f"staff:{staff.id}",
    )
    return LedgerEntryRead.model_validate(entry)


@router.put("/members/{member_id}/tier", response_model=ManualTier)
async def set_manual_tier(
    body: ManualTier, member: ScopedMember, session: SessionDep, _: Admin
) -> ManualTier:
    """Give a member a tier by hand until a date."""
    account = await ledger.lock_account(session, member.id)
    await tiers.set_manual(session, account, tier_code=body.tier, until=body.until)
    return body
