from fastapi import status

from api.core.access import PolicyRouter, Public
from api.core.db import SessionDep
from api.core.deps import ClientIP, SettingsDep
from api.members import signin
from api.members.dependencies import CurrentMember, SmsSenderDep
from api.members.schemas import (
    MemberTokens,
    OtpRequest,
    OtpSent,
    OtpVerify,
    RefreshRequest,
)

router = PolicyRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/otp", response_model=OtpSent, status_code=status.HTTP_202_ACCEPTED, dependencies=[Public]
)
async def request_otp(
    body: OtpRequest, session: SessionDep, settings: SettingsDep, sender: SmsSenderDep, ip: ClientIP
) -> OtpSent:
    """Send a 6-digit sign-in code to a phone (throttled per phone and per client address)."""
    ttl = await signin.request_code(
        session, settings=settings, sender=sender, phone=body.phone, client_ip=ip
    )
    return OtpSent(expires_in=ttl)


@router.post("/otp/verify", response_model=MemberTokens, dependencies=[Public])
async def verify_otp(
    body: OtpVerify, session: SessionDep, settings: SettingsDep, ip: ClientIP
) -> MemberTokens:
    """Exchange phone + code for tokens; the first sign-in creates the member."""
    issued = await signin.verify_code(
        session, settings=settings, phone=body.phone, code=body.code, client_ip=ip
    )
    return MemberTokens(**issued.__dict__)


@router.post("/refresh", response_model=MemberTokens, dependencies=[Public])
async def refresh_tokens(
    body: RefreshRequest, session: SessionDep, settings: SettingsDep
) -> MemberTokens:
    """Swap a refresh token for a new pair; the old one stops working."""
    issued = await signin.refresh(session, settings=settings, refresh_token=body.refresh_token)
    return MemberTokens(**issued.__dict__)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, member: CurrentMember, session: SessionDep) -> None:
    """End this sign-in: its refresh tokens stop working."""
    await signin.sign_out(session, member_id=member.id, refresh_token=body.refresh_token)
