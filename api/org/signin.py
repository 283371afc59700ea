"""Staff sign-in for the API and the console: password guesses throttled per account and per
client address, console sessions the server can end, and "sign out everywhere"."""

import logging
import secrets
from datetime import timedelta

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock, security, throttle
from api.core.config import Settings
from api.core.db import run_apart
from api.org import service
from api.org import texts as t
from api.org.exceptions import BadCredentials, SignInLocked
from api.org.models import Staff, StaffSession

log = logging.getLogger("loyalty.signin")

ACCOUNT = "signin_account"
CLIENT = "signin_ip"


def email_hint(email: str) -> str:
    """An e-mail address fit for a log line: 'ad***@demo.loyalty'."""
    local, at, domain = email.partition("@")
    return f"{local[:2]}***{at}{domain}" if at else f"{email[:2]}***"


def lockout_policy(settings: Settings) -> throttle.Lockout:
    return throttle.Lockout(
        seconds=settings.signin_lockout_seconds,
        max_seconds=settings.signin_lockout_max_seconds,
        forget_after=timedelta(hours=settings.signin_forget_hours),
    )


def _limits(settings: Settings, email: str, client_ip: str) -> list[throttle.Limit]:
    # Keyed by the address typed, whether or not such an account exists: a lockout tells an
    # outsider nothing about which e-mail addresses are staff.
    account = security.keyed_digest(settings.secret_key, f"staff-signin:{email}")
    return [
        throttle.Limit(CLIENT, client_ip[:128], settings.signin_failures_per_ip),
        throttle.Limit(ACCOUNT, account, settings.signin_failures_per_account),
    ]


async def sign_in(
    session: AsyncSession, *, settings: Settings, email: str, password: str, client_ip: str
) -> Staff:
    """The staff member with this e-mail and password; every attempt is counted (before the
    password is checked) per account and per client address, and a locked one is refused."""
    email = email.strip().lower()
    limits = _limits(settings, email, client_ip)
    try:
        reserved = await run_apart(
            session, lambda s: throttle.reserve(s, limits, lockout_policy(settings))
        )
    except throttle.Locked as locked:
        log.warning(
            "staff sign-in refused: %s locked for %ss account=%s ip=%s",
            "client address" if locked.scope == CLIENT else "account",
            locked.retry_after,
            email_hint(email),
            client_ip,
        )
        raise SignInLocked(
            t.text("locked", wait=t.wait_text(locked.retry_after)),
            retry_after=locked.retry_after,
        ) from None
    try:
        staff = await service.authenticate_staff(session, email=email, password=password)
    except BadCredentials:
        log.warning(
            "staff sign-in failed account=%s ip=%s%s",
            email_hint(email),
            client_ip,
            " (now locked out)" if reserved.locked_now else "",
        )
        raise
    await throttle.succeeded(session, reserved, reset=[ACCOUNT])
    return staff


# --- console sessions --------------------------------------------------------------------------


def sid_digest(sid: str) -> str:
    return security.token_digest(f"console:{sid}")


async def start_console_session(session: AsyncSession, *, staff: Staff, lifetime: timedelta) -> str:
    """A new console session for the staff member; returns its id (for the cookie only)."""
    sid = secrets.token_urlsafe(32)
    now = clock.now()
    session.add(
        StaffSession(
            staff_id=staff.id, sid_hash=sid_digest(sid), created_at=now, expires_at=now + lifetime
        )
    )
    await session.flush()
    return sid


_STAFF_OF_SESSION = (  # built once: every console request checks its session
    select(Staff, StaffSession)
    .join(StaffSession, StaffSession.staff_id == Staff.id)
    .where(
        StaffSession.sid_hash == bindparam("sid_hash"),
        Staff.id == bindparam("staff_id"),
        StaffSession.revoked_at.is_(None),
        StaffSession.expires_at > bindparam("now", type_=StaffSession.expires_at.type),
    )
)


async def staff_of_console_session(
    session: AsyncSession, *, staff_id: int, sid: str, extend_to: timedelta | None = None
) -> Staff | None:
    """The active staff member of a live console session; `extend_to` slides its expiry."""
    now = clock.now()
    params = {"sid_hash": sid_digest(sid), "staff_id": staff_id, "now": now}
    row = (await session.execute(_STAFF_OF_SESSION, params)).first()
    if row is None or not row[0].active:
        return None
    if extend_to is not None:
        row[1].expires_at = now + extend_to
    return row[0]


async def end_console_session(session: AsyncSession, *, sid: str) -> None:
    """Sign-out: this console session ends now, whoever still holds its cookie."""
    await session.execute(
        update(StaffSession)
        .where(StaffSession.sid_hash == sid_digest(sid), StaffSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )


async def prune_console_sessions(
    session: AsyncSession, *, older_than: timedelta = timedelta(days=1)
) -> int:
    """Drop console sessions that ended (expired or revoked) more than `older_than` ago."""
    cutoff = clock.now() - older_than
    result = await session.execute(
        delete(StaffSession).where(
            or_(
                StaffSession.expires_at < cutoff,
                StaffSession.revoked_at < cutoff,
            )
        )
    )
    return result.rowcount or 0
