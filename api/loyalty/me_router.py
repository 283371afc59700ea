from typing import Annotated

from fastapi import APIRouter, Depends

from api.core.access import PolicyRoute
from api.core.db import SessionDep
from api.core.pagination import Page, PageParams, page_params
from api.loyalty import accounts, claims, ledger
from api.loyalty.schemas import ClaimReceiptIn, LedgerEntryRead, PointsRead, PurchaseResult
from api.members.dependencies import CurrentMember, MemberOnce

router = APIRouter(prefix="/v1/me", tags=["me"], route_class=PolicyRoute)


@router.get("/points", response_model=PointsRead)
async def my_points(member: CurrentMember, session: SessionDep) -> PointsRead:
    """Available and pending points, what expires when, and progress to the next tier."""
    return await accounts.points_view(session, member.id)


@router.get("/points/history", response_model=Page[LedgerEntryRead])
async def my_history(
    member: CurrentMember, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[LedgerEntryRead]:
    """Every points movement, newest first (cursor-paginated)."""
    found = await ledger.history(session, member.id, page=page)
    return Page(
        items=[LedgerEntryRead.model_validate(e) for e in found.items],
        next_cursor=found.next_cursor,
    )


@router.post("/receipts/claim", response_model=PurchaseResult)
async def claim_receipt(
    body: ClaimReceiptIn, member: CurrentMember, session: SessionDep, once: MemberOnce
) -> PurchaseResult:
    """Claim the points of a receipt paid without the card (within the claim window, once)."""

    async def work() -> PurchaseResult:
        return await claims.claim(
            session,
            member=member,
            store_code=body.store_code,
            receipt_no=body.receipt_no,
            total=body.total,
        )

    return await once(work, body=body)
