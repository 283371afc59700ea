"""The signed-in member (bearer JWT), and members loaded within a staff scope."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import access, security
from api.core.access import Policy
from api.core.config import Settings
from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.core.errors import Unauthorized, request_id
from api.core.idempotency import IdempotencyKey, Once
from api.members import service
from api.members.exceptions import MemberBlocked
from api.members.models import Member
from api.members.sms import SmsSender
from api.org.dependencies import (
    TERMINAL_KEY_HEADER,
    CurrentStaff,
    StaffScope,
    current_terminal,
    refuse,
    staff_of_token,
)

member_bearer = HTTPBearer(auto_error=False, scheme_name="MemberBearer")


class MemberNotAuthenticated(Unauthorized):
    """Sign in with your phone number first."""


@access.declare(Policy.of(access.MEMBER))
async def current_member(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(member_bearer)],
) -> Member:
    """The member signed in on the app."""
    claims = (
        security.decode_jwt(settings.secret_key, credentials.credentials, kind="member")
        if credentials
        else None
    )
    member = await session.get(Member, int(claims["sub"])) if claims else None
    if member is None:
        await _refuse_other_callers(request, session, settings, credentials)
        raise MemberNotAuthenticated()
    if member.status != "active":
        raise MemberBlocked()
    request.state.member_id = member.id
    return member


CurrentMember = Annotated[Member, Depends(current_member)]


async def member_once(
    request: Request, session: SessionDep, member: CurrentMember, key: IdempotencyKey = None
) -> Once:
    """The signed-in member's idempotent call: keys are scoped to the member."""
    return Once(session, request, f"member:{member.id}", key)


MemberOnce = Annotated[Once, Depends(member_once)]


async def _refuse_other_callers(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
) -> None:
    """403 when the request carries valid staff or terminal credentials instead."""
    if credentials:
        if await staff_of_token(session, settings, credentials.credentials):
            raise refuse("members signed in on the app", "a staff token")
    elif api_key := request.headers.get(TERMINAL_KEY_HEADER):
        await current_terminal(request, session, api_key)
        raise refuse("members signed in on the app", "a terminal API key")


async def member_in_scope(
    member_id: int, request: Request, session: SessionDep, staff: CurrentStaff, scope: StaffScope
) -> Member:
    """A member the staff member may see (404 otherwise); the read is logged."""
    member = await service.get_member(session, member_id, scope=scope)
    await service.log_access(
        session,
        staff_id=staff.id,
        member_id=member.id,
        action=f"{request.method} {request.url.path}",
        request_id=request_id(request),
    )
    return member


ScopedMember = Annotated[Member, Depends(member_in_scope)]


def sms_sender(request: Request) -> SmsSender:
    return request.app.state.sms_sender


SmsSenderDep = Annotated[SmsSender, Depends(sms_sender)]
