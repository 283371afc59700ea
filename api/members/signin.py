"""Member sign-in: one-time codes by SMS, short access JWTs and rotating refresh tokens."""

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock, ratelimit, security
from api.core.config import Settings
from api.core.db import on_failure
from api.core.errors import TooManyRequests
from api.members import service
from api.members.exceptions import (
    MemberBlocked,
    OtpInvalid,
    OtpLocked,
    RefreshInvalid,
    RefreshReused,
)
from api.members.identifiers import normalise_phone
from api.members.models import Member, OtpChallenge, RefreshToken
from api.members.schemas import MemberCreate
from api.members.sms import SmsSender

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    member_id: int
    is_new: bool = False


def _code_hash(settings: Settings, phone: str, code: str) -> str:
    return security.keyed_digest(settings.secret_key, f"otp:{phone}:{code}")


async def _latest_challenge(session: AsyncSession, phone: str) -> OtpChallenge | None:
    stmt = (
        select(OtpChallenge)
        .where(OtpChallenge.phone == phone)
        .order_by(OtpChallenge.created_at.desc(), OtpChallenge.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def request_code(
    session: AsyncSession, *, settings: Settings, sender: SmsSender, phone: str, client_ip: str
) -> int:
    """Send a 6-digit code to the phone; returns its lifetime in seconds."""
    phone = normalise_phone(phone, settings.default_phone_region)
    ttl = settings.otp_ttl_seconds
    if phone in settings.test_phone_code_map:
        return ttl
    await ratelimit.enforce(
        session,
        "otp_ip",
        client_ip,
        limit=settings.otp_per_ip_per_hour,
        window=HOUR,
        detail="Too many sign-in codes requested from this network; try again later.",
    )
    phone_key = security.token_digest(phone)
    await ratelimit.enforce(
        session,
        "otp_phone",
        phone_key,
        limit=settings.otp_per_phone_per_hour,
        window=HOUR,
        detail="Too many sign-in codes for this phone; try again later.",
    )
    now = clock.now()
    last = await _latest_challenge(session, phone)
    if last is not None:
        wait = settings.otp_resend_seconds - (now - last.created_at).total_seconds()
        if wait > 0:
            raise TooManyRequests(
                "A code was just sent; wait before asking again.", retry_after=int(wait) + 1
            )
    await session.execute(
        update(OtpChallenge)
        .where(OtpChallenge.phone == phone, OtpChallenge.consumed_at.is_(None))
        .values(consumed_at=now)
    )
    code = f"{secrets.randbelow(1_000_000):06d}"
    session.add(
        OtpChallenge(
            phone=phone,
            code_hash=_code_hash(settings, phone, code),
            attempts=0,
            expires_at=now + timedelta(seconds=ttl),
            created_at=now,
        )
    )
    await ratelimit.hit(session, "otp_ip", client_ip)
    await ratelimit.hit(session, "otp_phone", phone_key)
    await session.flush()
    await sender.send_code(phone, code)
    return ttl


async def _check_code(session: AsyncSession, settings: Settings, phone: str, code: str) -> None:
    test_code = settings.test_phone_code_map.get(phone)
    if test_code is not None:
        if not secrets.compare_digest(test_code, code):
            raise OtpInvalid()
        return
    now = clock.now()
    challenge = await _latest_challenge(session, phone)
    if challenge is None or challenge.consumed_at is not None or challenge.expires_at <= now:
        raise OtpInvalid()
    if challenge.attempts >= settings.otp_max_attempts:
        raise OtpLocked()
    if not secrets.compare_digest(challenge.code_hash, _code_hash(settings, phone, code)):
        challenge_id = challenge.id

        async def _count_wrong_try(fresh: AsyncSession) -> None:
            await fresh.execute(
                update(OtpChallenge)
                .where(OtpChallenge.id == challenge_id)
                .values(attempts=OtpChallenge.attempts + 1)
            )

        on_failure(session, _count_wrong_try)
        if challenge.attempts + 1 >= settings.otp_max_attempts:
            raise OtpLocked()
        raise OtpInvalid()
    challenge.consumed_at = now


async def verify_code(
    session: AsyncSession, *, settings: Settings, phone: str, code: str, client_ip: str
) -> IssuedTokens:
    """Check the code; sign the member in, creating the member on first sign-in."""
    phone = normalise_phone(phone, settings.default_phone_region)
    await ratelimit.enforce(
        session,
        "otp_verify_ip",
        client_ip,
        limit=settings.otp_per_ip_per_hour * 5,
        window=HOUR,
        detail="Too many wrong codes from this network; try again later.",
    )
    try:
        await _check_code(session, settings, phone, code)
    except (OtpInvalid, OtpLocked):
        ratelimit.hit_even_if_request_fails(session, "otp_verify_ip", client_ip)
        raise
    member = await service.find_by_phone(session, phone)
    is_new = member is None
    if member is None:
        member = await service.enrol(
            session, settings=settings, data=MemberCreate(phone=phone), via="app"
        )
    if member.status != "active":
        raise MemberBlocked()
    return await _issue(session, settings, member, family=uuid.uuid4().hex, is_new=is_new)


def issue_access_token(settings: Settings, member_id: int) -> tuple[str, int]:
    lifetime = timedelta(minutes=settings.member_token_minutes)
    token = security.encode_jwt(
        settings.secret_key, {"sub": str(member_id), "typ": "member"}, lifetime
    )
    return token, int(lifetime.total_seconds())


async def _issue(
    session: AsyncSession, settings: Settings, member: Member, *, family: str, is_new: bool
) -> IssuedTokens:
    now = clock.now()
    refresh = security.new_token("rt_")
    session.add(
        RefreshToken(
            member_id=member.id,
            family=family,
            token_hash=security.token_digest(refresh),
            expires_at=now + timedelta(days=settings.refresh_token_days),
            created_at=now,
        )
    )
    await session.flush()
    access, expires_in = issue_access_token(settings, member.id)
    return IssuedTokens(access, refresh, expires_in, member.id, is_new)


async def refresh(session: AsyncSession, *, settings: Settings, refresh_token: str) -> IssuedTokens:
    """Swap a refresh token for a new pair; reusing a swapped token revokes its whole family."""
    now = clock.now()
    stmt = select(RefreshToken).where(
        RefreshToken.token_hash == security.token_digest(refresh_token)
    )
    token = (await session.execute(stmt)).scalar_one_or_none()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        raise RefreshInvalid()
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        family = token.family

        async def _revoke_family(fresh: AsyncSession) -> None:
            await fresh.execute(
                update(RefreshToken)
                .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )

        on_failure(session, _revoke_family)
        raise RefreshReused()
    member = await session.get(Member, token.member_id)
    if member is None or member.status != "active":
        raise RefreshInvalid()
    return await _issue(session, settings, member, family=token.family, is_new=False)


async def sign_out(session: AsyncSession, *, member_id: int, refresh_token: str) -> None:
    """Revoke the sign-in (token family) that this refresh token belongs to."""
    stmt = select(RefreshToken).where(
        RefreshToken.token_hash == security.token_digest(refresh_token),
        RefreshToken.member_id == member_id,
    )
    token = (await session.execute(stmt)).scalar_one_or_none()
    if token is None:
        raise RefreshInvalid()
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family == token.family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
