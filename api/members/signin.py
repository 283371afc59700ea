"""Member sign-in: one-time codes by SMS, short access JWTs and rotating refresh tokens."""

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock, ratelimit, security, throttle
from api.core.config import Settings
from api.core.db import on_failure, run_apart
from api.core.errors import TooManyRequests
from api.core.models import RateHit
from api.members import service
from api.members.exceptions import (
    MemberBlocked,
    OtpInvalid,
    OtpLocked,
    RefreshInvalid,
    RefreshReused,
)
from api.members.identifiers import normalise_phone
from api.members.models import Member, MemberSignIn, OtpChallenge, RefreshToken
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


TEST_PHONE = "otp_test_phone"  # throttle scope: wrong fixed codes of a test phone


def _latest_challenge_id(phone: str):  # type: ignore[no-untyped-def]
    return (
        select(OtpChallenge.id)
        .where(OtpChallenge.phone == phone)
        .order_by(OtpChallenge.created_at.desc(), OtpChallenge.id.desc())
        .limit(1)
        .scalar_subquery()
    )


async def _latest_challenge(session: AsyncSession, phone: str) -> OtpChallenge | None:
    stmt = select(OtpChallenge).where(OtpChallenge.id == _latest_challenge_id(phone))
    return (await session.execute(stmt)).scalar_one_or_none()


@dataclass(frozen=True)
class _Sent:
    """What one send reserved, to give back if the SMS gateway refuses the message."""

    challenge_id: int | None
    hit_ids: tuple[int, ...]


async def _reserve_send(
    session: AsyncSession,
    settings: Settings,
    *,
    phone: str,
    client_ip: str,
    code_hash: str,
    is_test: bool,
) -> _Sent:
    """Under a lock on the client address and on the phone: the hourly caps, the resend
    wait, then the new challenge and the hits that count it. Run apart, so that parallel
    requests see each other's sends and only one code goes out per resend window."""
    phone_key = security.token_digest(phone)
    await throttle.lock_rows(session, [("otp_ip", client_ip), ("otp_phone", phone_key)])
    await ratelimit.enforce(
        session,
        "otp_ip",
        client_ip,
        limit=settings.otp_per_ip_per_hour,
        window=HOUR,
        detail="Too many sign-in codes requested from this network; try again later.",
    )
    await ratelimit.enforce(
        session,
        "otp_phone",
        phone_key,
        limit=settings.otp_per_phone_per_hour,
        window=HOUR,
        detail="Too many sign-in codes for this phone; try again later.",
    )
    now = clock.now()
    last = await ratelimit.latest(session, "otp_phone", phone_key)
    if last is not None:
        wait = settings.otp_resend_seconds - (now - last).total_seconds()
        if wait > 0:
            raise TooManyRequests(
                "A code was just sent; wait before asking again.", retry_after=int(wait) + 1
            )
    challenge_id = None
    if is_test:  # a fixed code: asking for "a new code" gives its wrong tries back
        rows = await throttle.lock_rows(session, [(TEST_PHONE, phone_key)])
        rows[(TEST_PHONE, phone_key)].failures = 0
    else:
        challenge = OtpChallenge(
            phone=phone,
            code_hash=code_hash,
            attempts=0,
            expires_at=now + timedelta(seconds=settings.otp_ttl_seconds),
            created_at=now,
        )
        session.add(challenge)
        await session.flush()
        challenge_id = challenge.id
    hits = (
        await ratelimit.hit(session, "otp_ip", client_ip),
        await ratelimit.hit(session, "otp_phone", phone_key),
    )
    return _Sent(challenge_id, hits)


async def _give_back(session: AsyncSession, sent: _Sent) -> None:
    if sent.challenge_id is not None:
        await session.execute(delete(OtpChallenge).where(OtpChallenge.id == sent.challenge_id))
    await session.execute(delete(RateHit).where(RateHit.id.in_(sent.hit_ids)))


async def request_code(
    session: AsyncSession, *, settings: Settings, sender: SmsSender, phone: str, client_ip: str
) -> int:
    """Send a 6-digit code to the phone; returns its lifetime in seconds. A test phone
    (LOYALTY_TEST_PHONE_CODES) is throttled the same way but gets no SMS."""
    phone = normalise_phone(phone, settings.default_phone_region)
    test_code = settings.test_phone_code_map.get(phone)
    code = test_code or f"{secrets.randbelow(1_000_000):06d}"
    code_hash = _code_hash(settings, phone, code)
    sent = await run_apart(
        session,
        lambda s: _reserve_send(
            s,
            settings,
            phone=phone,
            client_ip=client_ip,
            code_hash=code_hash,
            is_test=test_code is not None,
        ),
    )
    if sent.challenge_id is None:
        return settings.otp_ttl_seconds
    try:
        await sender.send_code(phone, code)
    except BaseException:
        await run_apart(session, lambda s: _give_back(s, sent))
        raise
    await session.execute(
        update(OtpChallenge)
        .where(
            OtpChallenge.phone == phone,
            OtpChallenge.consumed_at.is_(None),
            OtpChallenge.id != sent.challenge_id,
        )
        .values(consumed_at=clock.now())
    )
    return settings.otp_ttl_seconds


@dataclass(frozen=True)
class _Attempt:
    """One counted guess: what to compare it with, or why there is nothing to compare."""

    hit_id: int
    refused: Exception | None = None
    challenge_id: int | None = None
    code_hash: str | None = None
    attempts: int = 0


async def _count_attempt(
    session: AsyncSession, settings: Settings, *, phone: str, client_ip: str, is_test: bool
) -> _Attempt:
    """Count the guess before it is compared (run apart, so it stands whatever follows):
    against the client address, and against the code (`attempts < max` in the same UPDATE,
    so parallel guesses get exactly max comparisons)."""
    await throttle.lock_rows(session, [("otp_verify_ip", client_ip)])
    await ratelimit.enforce(
        session,
        "otp_verify_ip",
        client_ip,
        limit=settings.otp_per_ip_per_hour * 5,
        window=HOUR,
        detail="Too many wrong codes from this network; try again later.",
    )
    hit_id = await ratelimit.hit(session, "otp_verify_ip", client_ip)
    max_attempts = settings.otp_max_attempts
    if is_test:
        key = (TEST_PHONE, security.token_digest(phone))
        row = (await throttle.lock_rows(session, [key]))[key]
        if row.failures >= max_attempts:
            return _Attempt(hit_id, OtpLocked())
        row.failures += 1
        row.updated_at = clock.now()
        await session.flush()
        return _Attempt(hit_id, attempts=row.failures)
    now = clock.now()
    counted = (
        await session.execute(
            update(OtpChallenge)
            .where(
                OtpChallenge.id == _latest_challenge_id(phone),
                OtpChallenge.consumed_at.is_(None),
                OtpChallenge.expires_at > now,
                OtpChallenge.attempts < max_attempts,
            )
            .values(attempts=OtpChallenge.attempts + 1)
            .returning(OtpChallenge.id, OtpChallenge.code_hash, OtpChallenge.attempts)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if counted is not None:
        return _Attempt(hit_id, None, counted.id, counted.code_hash, counted.attempts)
    challenge = await _latest_challenge(session, phone)
    live = challenge is not None and challenge.consumed_at is None and challenge.expires_at > now
    return _Attempt(hit_id, OtpLocked() if live else OtpInvalid())


async def _check_code(
    session: AsyncSession, settings: Settings, phone: str, code: str, client_ip: str
) -> None:
    test_code = settings.test_phone_code_map.get(phone)
    attempt = await run_apart(
        session,
        lambda s: _count_attempt(
            s, settings, phone=phone, client_ip=client_ip, is_test=test_code is not None
        ),
    )
    if attempt.refused is not None:
        raise attempt.refused
    if test_code is not None:
        right = secrets.compare_digest(test_code, code)
    else:
        assert attempt.code_hash is not None
        right = secrets.compare_digest(attempt.code_hash, _code_hash(settings, phone, code))
    if not right:
        raise OtpLocked() if attempt.attempts >= settings.otp_max_attempts else OtpInvalid()
    if test_code is not None:
        key = (TEST_PHONE, security.token_digest(phone))
        (await throttle.lock_rows(session, [key]))[key].failures = 0
    else:
        consumed = await session.execute(
            update(OtpChallenge)
            .where(OtpChallenge.id == attempt.challenge_id, OtpChallenge.consumed_at.is_(None))
            .values(consumed_at=clock.now())
            .execution_options(synchronize_session=False)
        )
        if consumed.rowcount != 1:  # a parallel request with the same code was first
            raise OtpInvalid()
    # a right code is no wrong try from this network
    await session.execute(delete(RateHit).where(RateHit.id == attempt.hit_id))


async def verify_code(
    session: AsyncSession, *, settings: Settings, phone: str, code: str, client_ip: str
) -> IssuedTokens:
    """Check the code; sign the member in, creating the member on first sign-in."""
    phone = normalise_phone(phone, settings.default_phone_region)
    await _check_code(session, settings, phone, code, client_ip)
    member = await service.find_by_phone(session, phone)
    is_new = member is None
    if member is None:
        member = await service.enrol(
            session, settings=settings, data=MemberCreate(phone=phone), via="app"
        )
    if member.status != "active":
        raise MemberBlocked()
    family = uuid.uuid4().hex
    session.add(MemberSignIn(family=family, member_id=member.id, created_at=clock.now()))
    return await _issue(session, settings, member, family=family, is_new=is_new)


def issue_access_token(
    settings: Settings, member_id: int, family: str | None = None
) -> tuple[str, int]:
    """A member access token of the sign-in `family` (which its revocation ends)."""
    lifetime = timedelta(minutes=settings.member_token_minutes)
    claims = {"sub": str(member_id), "typ": "member", "fid": family or uuid.uuid4().hex}
    token = security.encode_jwt(settings.secret_key, claims, lifetime)
    return token, int(lifetime.total_seconds())


def _successor(settings: Settings, refresh_token: str) -> str:
    return security.successor_token(settings.secret_key, refresh_token, "rt_")


async def _issue(
    session: AsyncSession,
    settings: Settings,
    member: Member,
    *,
    family: str,
    is_new: bool,
    refresh: str | None = None,
) -> IssuedTokens:
    now = clock.now()
    refresh = refresh or security.new_token("rt_")
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
    access, expires_in = issue_access_token(settings, member.id, family)
    return IssuedTokens(access, refresh, expires_in, member.id, is_new)


async def _revoke_family(session: AsyncSession, family: str) -> None:
    now = clock.now()
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(
        update(MemberSignIn)
        .where(MemberSignIn.family == family, MemberSignIn.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def refresh(session: AsyncSession, *, settings: Settings, refresh_token: str) -> IssuedTokens:
    """Swap a refresh token for a new pair. The same token again within the grace window
    (two screens refreshing at once) gets the same new refresh token; later, or once that one
    was used in turn, it counts as stolen and revokes the whole sign-in."""
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
    member = await session.get(Member, token.member_id)
    if member is None or member.status != "active":
        raise RefreshInvalid()
    successor = _successor(settings, refresh_token)
    if claimed.rowcount == 1:
        return await _issue(
            session, settings, member, family=token.family, is_new=False, refresh=successor
        )
    # Already rotated. The successor row was committed by whoever rotated it (on PostgreSQL
    # this UPDATE waited for that transaction), so this statement sees it.
    stmt = select(RefreshToken).where(RefreshToken.token_hash == security.token_digest(successor))
    after = (await session.execute(stmt)).scalar_one_or_none()
    grace = timedelta(seconds=settings.refresh_grace_seconds)
    if (
        after is not None
        and after.family == token.family
        and after.revoked_at is None
        and after.rotated_at is None
        and after.expires_at > now
        and now - after.created_at <= grace
    ):
        access, expires_in = issue_access_token(settings, member.id, token.family)
        return IssuedTokens(access, successor, expires_in, member.id, False)
    family = token.family
    on_failure(session, lambda fresh: _revoke_family(fresh, family))
    raise RefreshReused()


async def sign_out(session: AsyncSession, *, member_id: int, refresh_token: str) -> None:
    """Revoke the sign-in (token family) that this refresh token belongs to: its refresh
    tokens and its access tokens stop working at the next request."""
    stmt = select(RefreshToken).where(
        RefreshToken.token_hash == security.token_digest(refresh_token),
        RefreshToken.member_id == member_id,
    )
    token = (await session.execute(stmt)).scalar_one_or_none()
    if token is None:
        raise RefreshInvalid()
    await _revoke_family(session, token.family)
