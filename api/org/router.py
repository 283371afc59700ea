from typing import Annotated

from fastapi import Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from api.core.access import PolicyRouter, Public
from api.core.db import SessionDep
from api.core.deps import ClientIP, SettingsDep
from api.org import service, signin
from api.org.dependencies import Admin, CurrentStaff, StaffScope
from api.org.schemas import (
    RegionCreate,
    RegionRead,
    StaffCreate,
    StaffRead,
    StaffUpdate,
    StoreCreate,
    StoreRead,
    StoreUpdate,
    TerminalCreate,
    TerminalCreated,
    TerminalRead,
    Token,
)

auth_router = PolicyRouter(prefix="/v1/auth", tags=["auth"])
router = PolicyRouter(prefix="/v1", tags=["organisation"])


@auth_router.post("/token", response_model=Token, dependencies=[Public])
async def staff_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    ip: ClientIP,
) -> Token:
    """Staff sign-in: e-mail and password (OAuth2 password form) → bearer JWT (throttled)."""
    staff = await signin.sign_in(
        session, settings=settings, email=form.username, password=form.password, client_ip=ip
    )
    token, expires_in = service.issue_staff_token(settings, staff)
    return Token(access_token=token, expires_in=expires_in)


@router.get("/staff/me", response_model=StaffRead)
async def who_am_i(staff: CurrentStaff) -> StaffRead:
    """The signed-in staff member."""
    return StaffRead.model_validate(staff)


@router.post("/staff/me/signout", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out_everywhere(staff: CurrentStaff, session: SessionDep) -> None:
    """Sign out everywhere: every token and console session of the caller stops working."""
    # No Idempotency-Key needed: a retry is refused, its token having ended with the rest.
    await service.end_everything(session, staff=staff)


@router.post("/regions", response_model=RegionRead, status_code=status.HTTP_201_CREATED)
async def create_region(body: RegionCreate, session: SessionDep, _: Admin) -> RegionRead:
    """Create a region."""
    return RegionRead.model_validate(await service.create_region(session, data=body))


@router.get("/regions", response_model=list[RegionRead])
async def list_regions(session: SessionDep, scope: StaffScope) -> list[RegionRead]:
    """Regions visible to the caller."""
    return [RegionRead.model_validate(r) for r in await service.list_regions(session, scope=scope)]


@router.post("/stores", response_model=StoreRead, status_code=status.HTTP_201_CREATED)
async def create_store(body: StoreCreate, session: SessionDep, _: Admin) -> StoreRead:
    """Create a store (IANA time zone, kind supermarket or fuel_station)."""
    return StoreRead.model_validate(await service.create_store(session, data=body))


@router.get("/stores", response_model=list[StoreRead])
async def list_stores(session: SessionDep, scope: StaffScope) -> list[StoreRead]:
    """Stores visible to the caller."""
    return [StoreRead.model_validate(s) for s in await service.list_stores(session, scope=scope)]


@router.get("/stores/{store_id}", response_model=StoreRead)
async def get_store(store_id: int, session: SessionDep, scope: StaffScope) -> StoreRead:
    """One store (404 outside the caller's scope)."""
    return StoreRead.model_validate(await service.get_store(session, store_id, scope=scope))


@router.patch("/stores/{store_id}", response_model=StoreRead)
async def update_store(
    store_id: int, body: StoreUpdate, session: SessionDep, _: Admin
) -> StoreRead:
    """Rename a store, change its time zone or deactivate it."""
    return StoreRead.model_validate(await service.update_store(session, store_id, data=body))


@router.post(
    "/stores/{store_id}/terminals",
    response_model=TerminalCreated,
    status_code=status.HTTP_201_CREATED,
)
async def create_terminal(
    store_id: int, body: TerminalCreate, session: SessionDep, _: Admin
) -> TerminalCreated:
    """Register a POS terminal; the API key is in this response only."""
    terminal, key = await service.create_terminal(session, store_id=store_id, name=body.name)
    return TerminalCreated(**TerminalRead.model_validate(terminal).model_dump(), api_key=key)


@router.get("/stores/{store_id}/terminals", response_model=list[TerminalRead])
async def list_terminals(store_id: int, session: SessionDep, _: Admin) -> list[TerminalRead]:
    """A store's terminals (keys are never shown again)."""
    terminals = await service.list_terminals(session, store_id=store_id)
    return [TerminalRead.model_validate(t) for t in terminals]


@router.delete("/terminals/{terminal_id}", response_model=TerminalRead)
async def revoke_terminal(terminal_id: int, session: SessionDep, _: Admin) -> TerminalRead:
    """Revoke a terminal; its key is refused from then on."""
    return TerminalRead.model_validate(await service.revoke_terminal(session, terminal_id))


@router.post("/staff", response_model=StaffRead, status_code=status.HTTP_201_CREATED)
async def create_staff(body: StaffCreate, session: SessionDep, _: Admin) -> StaffRead:
    """Create a staff account with a role and, for managers and cashiers, a scope."""
    return StaffRead.model_validate(await service.create_staff(session, data=body))


@router.patch("/staff/{staff_id}", response_model=StaffRead)
async def update_staff(
    staff_id: int, body: StaffUpdate, session: SessionDep, admin: Admin
) -> StaffRead:
    """Change a staff account; `active: false` ends its tokens and console sessions at once."""
    return StaffRead.model_validate(
        await service.update_staff(session, staff_id, data=body, by=admin)
    )


@router.get("/staff", response_model=list[StaffRead])
async def list_staff(session: SessionDep, _: Admin) -> list[StaffRead]:
    """All staff accounts."""
    return [StaffRead.model_validate(s) for s in await service.list_staff(session)]
