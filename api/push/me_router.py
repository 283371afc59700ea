"""The app's side of push: device tokens and the in-app inbox."""

from typing import Annotated

from fastapi import Depends, Query, status

from api.core.access import PolicyRouter
from api.core.db import SessionDep
from api.core.pagination import Page, PageParams, page_params
from api.members.dependencies import CurrentMember
from api.push import devices, inbox
from api.push.schemas import DeviceIn, DeviceRead, InboxItemRead

router = PolicyRouter(prefix="/v1/me", tags=["me"])


@router.post("/devices", response_model=DeviceRead, status_code=status.HTTP_201_CREATED)
async def register_device(body: DeviceIn, member: CurrentMember, session: SessionDep) -> DeviceRead:
    """Register this phone's FCM token (again is fine; a token from another member moves here)."""
    return DeviceRead.model_validate(
        await devices.register(session, member_id=member.id, data=body)
    )


@router.get("/devices", response_model=list[DeviceRead])
async def list_devices(member: CurrentMember, session: SessionDep) -> list[DeviceRead]:
    """The member's active devices."""
    found = await devices.list_devices(session, member_id=member.id)
    return [DeviceRead.model_validate(d) for d in found]


@router.delete("/devices/{token:path}", status_code=status.HTTP_204_NO_CONTENT)
async def unregister_device(token: str, member: CurrentMember, session: SessionDep) -> None:
    """Stop pushing to this token."""
    await devices.unregister(session, member_id=member.id, token=token)


@router.get("/inbox", response_model=Page[InboxItemRead])
async def list_inbox(
    member: CurrentMember,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
    include_expired: Annotated[bool, Query(description="expired offers, flagged")] = True,
) -> Page[InboxItemRead]:
    """Offers and messages, newest first; expired offers are flagged `expired`."""
    found = await inbox.list_items(
        session, member_id=member.id, page=page, include_expired=include_expired
    )
    return Page(items=[inbox.read_model(i) for i in found.items], next_cursor=found.next_cursor)


@router.post("/inbox/{item_id}/read", response_model=InboxItemRead)
async def mark_read(item_id: int, member: CurrentMember, session: SessionDep) -> InboxItemRead:
    """Mark a message read (feeds the campaign report)."""
    return inbox.read_model(await inbox.mark_read(session, member_id=member.id, item_id=item_id))
