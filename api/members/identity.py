"""The member card at the till: rotating QR codes, static identifiers and till tokens."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock, ratelimit, security
from api.core.config import Settings
from api.core.db import insert_unless_exists
from api.members import cards, service
from api.members.exceptions import (
    CodeExpired,
    CodeForged,
    CodeNotRecognised,
    CodeReplayed,
    InvalidPhone,
    InvalidPlate,
    MemberBlocked,
)
from api.members.identifiers import looks_like_phone, normalise_phone, normalise_plate
from api.members.models import Member, UsedCardCode
from api.members.schemas import CardRead, TotpParams

# How far back a refused code is still told apart as "expired" (an old screenshot) rather
# than "forged"; the cost is one HMAC per step, on the failing path only.
EXPIRED_LOOKBACK = timedelta(hours=1)
IDENTIFY_WINDOW = timedelta(minutes=1)
# A receipt recorded while the till was offline carries the rotating code scanned then: it is
# checked against the receipt's occurred_at (±1 step, each code once) for this long after
# occurred_at. Such a code identifies the member for earning only, never for spending. Used
# codes are kept a day longer than this, so an old code cannot be replayed after pruning.
OFFLINE_CODE_WINDOW = timedelta(hours=72)
USED_CODES_KEPT = OFFLINE_CODE_WINDOW + timedelta(days=1)


class OfflineCodeTooOld(CodeExpired):
    """A rotating code scanned offline is accepted only for a while after the receipt."""


@dataclass(frozen=True)
class Identified:
    member: Member
    can_redeem: bool
    method: str  # rotating | card | phone | plate | till_token


def card_view(settings: Settings, member: Member) -> CardRead:
    """The card number, the current rotating payload and the TOTP parameters for offline use."""
    now = clock.now()
    period = settings.totp_period
    code = cards.current_code(member.totp_secret, now, period=period, digits=settings.totp_digits)
    step_end = (cards.step_of(now, period) + 1) * period
    return CardRead(
        card_number=member.card_number,
        code=cards.payload(member.card_number, code),
        expires_at=now + timedelta(seconds=step_end - now.timestamp()),
        totp=TotpParams(secret=member.totp_secret, period=period, digits=settings.totp_digits),
    )


async def _accept_rotating(
    session: AsyncSession,
    settings: Settings,
    parsed: cards.ParsedPayload,
    scanned_at: datetime | None = None,
) -> tuple[Member, bool]:
    """The member of a rotating payload, and whether the code is fresh (of now, ±1 step).

    With `scanned_at` (a receipt's occurred_at) a code of that moment (±1 step) is accepted
    too, within OFFLINE_CODE_WINDOW: the till scanned it while offline. Either way each code
    is accepted once."""
    member = await service.find_by_card(session, parsed.card_number)
    if member is None:
        raise CodeForged()
    now = clock.now()
    opts = {"period": settings.totp_period, "digits": settings.totp_digits}
    step = cards.matching_step(member.totp_secret, parsed.code, now, back=1, forward=1, **opts)
    fresh = step is not None
    offline = scanned_at is not None and abs(now - scanned_at) > timedelta(
        seconds=settings.totp_period
    )
    if step is None and offline:
        assert scanned_at is not None
        step = cards.matching_step(
            member.totp_secret, parsed.code, scanned_at, back=1, forward=1, **opts
        )
        if step is not None and scanned_at < now - OFFLINE_CODE_WINDOW:
            raise OfflineCodeTooOld(
                "A rotating code scanned offline is accepted for "
                f"{int(OFFLINE_CODE_WINDOW.total_seconds() // 3600)} hours after occurred_at; "
                "identify this receipt by card number instead."
            )
    if step is None:
        lookback = int(EXPIRED_LOOKBACK.total_seconds()) // settings.totp_period
        older = any(
            cards.matching_step(
                member.totp_secret,
                parsed.code,
                moment - timedelta(seconds=2 * settings.totp_period),
                back=lookback,
                forward=0,
                **opts,
            )
            is not None
            for moment in ([now, scanned_at] if offline and scanned_at else [now])
        )
        raise CodeExpired() if older else CodeForged()
    if not await _use_code(session, member.id, step, now):
        raise CodeReplayed()
    return member, fresh


async def _use_code(session: AsyncSession, member_id: int, step: int, now: datetime) -> bool:
    """Mark the member's code of this step used; False if it was used before (one statement,
    no savepoint: the unique (member, step) decides, also between concurrent scans)."""
    stmt = insert_unless_exists(session, UsedCardCode, "member_id", "step")
    values = {"member_id": member_id, "step": step, "created_at": now}
    return (
        await session.execute(stmt.returning(UsedCardCode.id), values)
    ).scalar_one_or_none() is not None


async def _recognise(
    session: AsyncSession, settings: Settings, code: str, scanned_at: datetime | None = None
) -> Identified:
    code = code.strip()
    parsed = cards.parse_payload(code)
    if parsed is not None:
        member, fresh = await _accept_rotating(session, settings, parsed, scanned_at)
        return Identified(member, fresh, "rotating")
    card_number = cards.compact_card_number(code)
    if cards.is_card_number(card_number, settings.card_prefix, settings.card_length):
        member = await service.find_by_card(session, card_number)
        if member is not None:
            return Identified(member, False, "card")
    if looks_like_phone(code):
        try:
            phone = normalise_phone(code, settings.default_phone_region)
        except InvalidPhone:
            phone = None
        member = await service.find_by_phone(session, phone) if phone else None
        if member is not None:
            return Identified(member, False, "phone")
    try:
        plate = normalise_plate(code)
    except InvalidPlate:
        plate = None
    member = await service.find_by_plate(session, plate) if plate else None
    if member is not None:
        return Identified(member, False, "plate")
    raise CodeNotRecognised()


async def identify(
    session: AsyncSession,
    *,
    settings: Settings,
    terminal_id: int,
    code: str,
    scanned_at: datetime | None = None,
) -> Identified:
    """Who is at the till: a rotating QR payload, a card number, a phone or a plate.

    Only a fresh rotating code allows spending points; with `scanned_at` (an offline receipt's
    occurred_at) a rotating code of that moment identifies for earning. Failed attempts count
    per terminal and past the limit the terminal is refused for a minute.
    """
    key = str(terminal_id)
    await ratelimit.enforce(
        session,
        "identify_fail",
        key,
        limit=settings.identify_failures_per_minute,
        window=IDENTIFY_WINDOW,
        detail="Too many unrecognised codes at this terminal; wait a minute.",
    )
    try:
        found = await _recognise(session, settings, code, scanned_at)
    except (CodeForged, CodeExpired, CodeReplayed, CodeNotRecognised):
        ratelimit.hit_even_if_request_fails(session, "identify_fail", key)
        raise
    if found.member.status != "active":
        raise MemberBlocked()
    return found


def issue_till_token(settings: Settings, *, terminal_id: int, found: Identified) -> str:
    """A short token that stands for this scan at this terminal for the rest of the checkout."""
    claims = {
        "sub": str(found.member.id),
        "typ": "till",
        "term": terminal_id,
        "red": found.can_redeem,
    }
    return security.encode_jwt(
        settings.secret_key, claims, timedelta(seconds=settings.till_token_seconds)
    )


def _till_claims(settings: Settings, token: str) -> dict[str, Any]:
    """The claims of a live till token; an expired one of ours is told apart from a forgery."""
    claims = security.decode_jwt(settings.secret_key, token, kind="till")
    if claims is not None:
        return claims
    try:
        unchecked = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[security.JWT_ALGORITHM],
            options={"verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        unchecked = {}
    if unchecked.get("typ") == "till":
        raise CodeExpired("This till token has expired; scan the card again.")
    raise CodeForged("This till token is not valid; scan the card again.")


async def resolve_member_code(
    session: AsyncSession,
    *,
    settings: Settings,
    terminal_id: int,
    code: str,
    scanned_at: datetime | None = None,
) -> Identified:
    """A till `member_code`: this terminal's till token, a rotating payload or a card.
    `scanned_at`: a receipt's occurred_at, for codes scanned while the till was offline
    (earning only: a code accepted by it alone has `can_redeem` false)."""
    if not (code.startswith("ey") and code.count(".") == 2):
        return await identify(
            session, settings=settings, terminal_id=terminal_id, code=code, scanned_at=scanned_at
        )
    claims = _till_claims(settings, code)
    if claims.get("term") != terminal_id:
        raise CodeForged("This till token belongs to another terminal.")
    member = await session.get(Member, int(claims["sub"]))
    if member is None:
        raise CodeForged()
    if member.status != "active":
        raise MemberBlocked()
    return Identified(member, bool(claims.get("red")), "till_token")


async def prune_used_codes(
    session: AsyncSession, *, older_than: timedelta = USED_CODES_KEPT
) -> int:
    result = await session.execute(
        delete(UsedCardCode).where(UsedCardCode.created_at < clock.now() - older_than)
    )
    return result.rowcount or 0
