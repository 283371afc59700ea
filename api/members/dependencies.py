"""The signed-in member (bearer JWT), and members loaded within a staff scope."""

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import and_, bindparam, select
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
from api.members.models import Member, MemberSignIn
from api.members.sms import SmsSender
from api.org.dependencies import (
    TERMINAL_KEY_HEADER,
    CurrentStaff,
    StaffScope,
    current_terminal,
    refuse,
    refuse_expired,
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
    """The member signed in on the app, whose sign-in has not been revoked."""
    claims = None
    if credentials:
        refuse_expired(settings, credentials.credentials)
        claims = security.decode_jwt(settings.secret_key, credentials.credentials, kind="member")
    member = await _member_of_sign_in(session, claims) if claims else None
    if member is None:
        await _refuse_other_callers(request, session, settings, credentials)
        raise MemberNotAuthenticated()
    if member.status != "active":
        raise MemberBlocked()
    request.state.member_id = member.id
    return member


CurrentMember = Annotated[Member, Depends(current_member)]

# Built once, one round trip per request: the member (primary key) and whether the token's
# sign-in was revoked (unique key). A token without a sign-in row is one minted outside
# sign-in (tests); every token the API issues has one.
_MEMBER_OF_SIGN_IN = (
    select(Member, MemberSignIn.revoked_at)
    .outerjoin(
        MemberSignIn,
        and_(MemberSignIn.family == bindparam("fid"), MemberSignIn.member_id == Member.id),
    )
    .where(Member.id == bindparam("member_id"))
)


async def _member_of_sign_in(session: AsyncSession, claims: dict[str, Any]) -> Member | None:
    fid = claims.get("fid")
    if not isinstance(fid, str):  # issued before sign-ins could be revoked: refresh
        return None
    params = {"member_id": int(claims["sub"]), "fid": fid}
    row = (await session.execute(_MEMBER_OF_SIGN_IN, params)).first()
    if row is None or row[1] is not None:
        return None
    return row[0]


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
