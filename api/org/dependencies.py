"""Who is calling: staff (bearer JWT), a POS terminal (X-API-Key), and the role checks."""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from api.core import security
from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.core.errors import Forbidden, Unauthorized
from api.org import service
from api.org.models import Role, Staff, Store, Terminal
from api.org.scope import GLOBAL, Scope

staff_bearer = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/token", auto_error=False, scheme_name="StaffPassword"
)
terminal_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="TerminalApiKey")


class NotAuthenticated(Unauthorized):
    """Missing or invalid credentials."""


class RoleNotAllowed(Forbidden):
    """Your role may not do this."""


@dataclass(frozen=True)
class TerminalContext:
    terminal: Terminal
    store: Store


async def current_staff(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(staff_bearer)],
) -> Staff:
    """The signed-in staff member, from the bearer token or the console's session."""
    staff_id: int | None = None
    if token:
        claims = security.decode_jwt(settings.secret_key, token, kind="staff")
        if claims is not None:
            staff_id = int(claims["sub"])
    else:
        staff_id = getattr(request.state, "console_staff_id", None)
    staff = await session.get(Staff, staff_id) if staff_id is not None else None
    if staff is None or not staff.active:
        raise NotAuthenticated()
    request.state.staff_id = staff.id
    return staff


CurrentStaff = Annotated[Staff, Depends(current_staff)]


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, Staff]]:
    """Dependency: the signed-in staff member, who must hold one of `roles` (else 403)."""
    allowed = frozenset(roles)

    async def _check(staff: CurrentStaff) -> Staff:
        if staff.role not in allowed:
            raise RoleNotAllowed()
        return staff

    _check.allowed_roles = allowed  # type: ignore[attr-defined]
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


async def current_terminal(
    request: Request, session: SessionDep, api_key: Annotated[str | None, Depends(terminal_key)]
) -> TerminalContext:
    """The POS terminal identified by its API key."""
    if not api_key:
        raise NotAuthenticated("X-API-Key header required")
    terminal, store = await service.authenticate_terminal(session, api_key)
    request.state.terminal_id = terminal.id
    return TerminalContext(terminal=terminal, store=store)


CurrentTerminal = Annotated[TerminalContext, Depends(current_terminal)]


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
