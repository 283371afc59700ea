"""Who is calling: staff (bearer JWT), a POS terminal (X-API-Key), and the role checks."""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import access, security
from api.core.access import Policy
from api.core.config import Settings
from api.core.db import SessionDep
from api.core.deps import SettingsDep, get_settings_dep
from api.core.errors import Forbidden, TokenExpired, Unauthorized
from api.core.idempotency import IdempotencyKey, Once
from api.org import service, signin
from api.org.models import Role, Staff, Store, Terminal
from api.org.scope import GLOBAL, Scope

staff_bearer = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/token", auto_error=False, scheme_name="StaffPassword"
)
TERMINAL_KEY_HEADER = "X-API-Key"
terminal_key = APIKeyHeader(
    name=TERMINAL_KEY_HEADER, auto_error=False, scheme_name="TerminalApiKey"
)


class NotAuthenticated(Unauthorized):
    """Missing or invalid credentials."""


class RoleNotAllowed(Forbidden):
    """Your role may not do this."""


class CallerNotAllowed(Forbidden):
    """This endpoint is not for the kind of caller your credentials identify."""


ANY_STAFF = Policy.staff(*Role)
TERMINAL = Policy.of(access.TERMINAL)
MEMBER_TOKEN_KIND = "member"


def bearer_token(request: Request) -> str | None:
    """The bearer token on the request, whichever kind of caller it belongs to."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


ACCESS_TOKEN_KINDS = frozenset({"staff", MEMBER_TOKEN_KIND})


async def staff_of_token(session: AsyncSession, settings: Settings, token: str) -> Staff | None:
    """The active staff member a staff token was issued to, if the token is valid and of the
    account's current token generation (sign-out everywhere and deactivation raise it)."""
    claims = security.decode_jwt(settings.secret_key, token, kind="staff")
    staff = await session.get(Staff, int(claims["sub"])) if claims is not None else None
    if staff is None or not staff.active or claims is None:
        return None
    return staff if claims.get("gen") == staff.token_generation else None


def refuse_expired(settings: Settings, token: str) -> None:
    """401 TokenExpired for an access token we signed that has expired: the caller should
    refresh (members) or sign in again (staff), not treat it as a forged one."""
    if security.expired_kind(settings.secret_key, token) in ACCESS_TOKEN_KINDS:
        raise TokenExpired()


def refuse(needed: str, sent: str) -> CallerNotAllowed:
    """403 for a valid credential of the wrong kind: the caller is known, just not admitted."""
    return CallerNotAllowed(f"This endpoint is for {needed}; the request carries {sent}.")


@dataclass(frozen=True)
class TerminalContext:
    terminal: Terminal
    store: Store


@access.declare(ANY_STAFF)
async def current_staff(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(staff_bearer)],
) -> Staff:
    """The signed-in staff member, from the bearer token or the console's session."""
    if token:
        refuse_expired(settings, token)
        staff = await staff_of_token(session, settings, token)
        if staff is None and security.decode_jwt(
            settings.secret_key, token, kind=MEMBER_TOKEN_KIND
        ):
            raise refuse("staff", "a member token")
    else:
        staff_id = getattr(request.state, "console_staff_id", None)
        staff = await _staff_of_console(request, session, staff_id)
        api_key = request.headers.get(TERMINAL_KEY_HEADER)
        if staff_id is None and api_key:
            await current_terminal(request, session, api_key)
            raise refuse("staff", "a terminal API key")
    if staff is None or not staff.active:
        raise NotAuthenticated()
    request.state.staff_id = staff.id
    return staff


CurrentStaff = Annotated[Staff, Depends(current_staff)]


async def _staff_of_console(
    request: Request, session: AsyncSession, staff_id: int | None
) -> Staff | None:
    """The staff member of the console session on the request, if it is still live; a
    session past half its life slides (the console middleware renews its cookie)."""
    sid = getattr(request.state, "console_sid", None)
    if staff_id is None or sid is None:
        return None
    staff = await signin.staff_of_console_session(
        session,
        staff_id=staff_id,
        sid=sid,
        extend_to=getattr(request.state, "console_renew_for", None),
    )
    if staff is not None:
        request.state.console_session_ok = True
    return staff


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, Staff]]:
    """Dependency: the signed-in staff member, who must hold one of `roles` (else 403)."""
    allowed = frozenset(roles)

    @access.declare(Policy.staff(*roles))
    async def _check(staff: CurrentStaff) -> Staff:
        if staff.role not in allowed:
            raise RoleNotAllowed()
        return staff

    return _check


def staff_scope(staff: CurrentStaff) -> Scope:
    return service.scope_of(staff)


StaffScope = Annotated[Scope, Depends(staff_scope)]

Admin = Annotated[Staff, Depends(require_roles(Role.admin))]
Marketing = Annotated[Staff, Depends(require_roles(Role.admin, Role.marketer))]
Managers = Annotated[
    Staff,
    Depends(require_roles(Role.admin, Role.marketer, Role.region_manager, Role.store_manager)),
]


@access.declare(TERMINAL)
async def current_terminal(
    request: Request, session: SessionDep, api_key: Annotated[str | None, Depends(terminal_key)]
) -> TerminalContext:
    """The POS terminal identified by its API key."""
    if not api_key:
        token = bearer_token(request)
        if token:
            settings = get_settings_dep(request)
            if await staff_of_token(session, settings, token):
                raise refuse("POS terminals", "a staff token")
            if security.decode_jwt(settings.secret_key, token, kind=MEMBER_TOKEN_KIND):
                raise refuse("POS terminals", "a member token")
        raise NotAuthenticated("X-API-Key header required")
    terminal, store = await service.authenticate_terminal(session, api_key)
    request.state.terminal_id = terminal.id
    return TerminalContext(terminal=terminal, store=store)


CurrentTerminal = Annotated[TerminalContext, Depends(current_terminal)]


async def terminal_once(
    request: Request, session: SessionDep, till: CurrentTerminal, key: IdempotencyKey = None
) -> Once:
    """This terminal's idempotent call: keys are scoped to the terminal."""
    return Once(session, request, f"terminal:{till.terminal.id}", key)


TerminalOnce = Annotated[Once, Depends(terminal_once)]


@dataclass(frozen=True)
class Actor:
    """Who made a change, for audit fields: a staff member or a terminal."""

    kind: str
    id: int
    store_id: int | None = None
    scope: Scope = GLOBAL

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}"


@access.declare(ANY_STAFF | TERMINAL)
async def staff_or_terminal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(staff_bearer)],
    api_key: Annotated[str | None, Depends(terminal_key)],
) -> Actor:
    """A terminal (X-API-Key) or a signed-in staff member."""
    if api_key:
        ctx = await current_terminal(request, session, api_key)
        return Actor("terminal", ctx.terminal.id, ctx.store.id, Scope(store_id=ctx.store.id))
    staff = await current_staff(request, session, settings, token)
    return Actor("staff", staff.id, staff.store_id, service.scope_of(staff))


StaffOrTerminal = Annotated[Actor, Depends(staff_or_terminal)]
