"""Organisation: regions → stores → terminals, and staff with their scope."""

import logging
from datetime import timedelta

from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock, security
from api.core.config import Settings
from api.org import exceptions as exc
from api.org.models import Region, Role, Staff, StaffSession, Store, Terminal
from api.org.schemas import RegionCreate, StaffCreate, StaffUpdate, StoreCreate, StoreUpdate
from api.org.scope import GLOBAL, Scope

log = logging.getLogger("loyalty.signin")

GLOBAL_ROLES = {Role.admin, Role.marketer}
API_KEY_PREFIX = "lk_"


async def create_region(session: AsyncSession, *, data: RegionCreate) -> Region:
    """Add a region; names are unique."""
    region = Region(name=data.name, created_at=clock.now())
    try:
        async with session.begin_nested():
            session.add(region)
    except IntegrityError as e:
        raise exc.RegionExists() from e
    return region


async def list_regions(session: AsyncSession, *, scope: Scope = GLOBAL) -> list[Region]:
    stmt = select(Region).order_by(Region.id)
    if scope.region_id is not None:
        stmt = stmt.where(Region.id == scope.region_id)
    elif scope.store_id is not None:
        stmt = stmt.where(
            Region.id == select(Store.region_id).where(Store.id == scope.store_id).scalar_subquery()
        )
    return list((await session.execute(stmt)).scalars())


async def get_region(session: AsyncSession, region_id: int) -> Region:
    region = await session.get(Region, region_id)
    if region is None:
        raise exc.RegionNotFound()
    return region


async def create_store(session: AsyncSession, *, data: StoreCreate) -> Store:
    """Add a store to a region."""
    await get_region(session, data.region_id)
    store = Store(**data.model_dump(), active=True, created_at=clock.now())
    try:
        async with session.begin_nested():
            session.add(store)
    except IntegrityError as e:
        raise exc.StoreCodeTaken() from e
    return store


def store_ids_in_scope(scope: Scope) -> Select[tuple[int]]:
    """A subquery of the store ids a scope covers (all stores when global)."""
    stmt = select(Store.id)
    if scope.store_id is not None:
        stmt = stmt.where(Store.id == scope.store_id)
    elif scope.region_id is not None:
        stmt = stmt.where(Store.region_id == scope.region_id)
    return stmt


async def list_stores(session: AsyncSession, *, scope: Scope = GLOBAL) -> list[Store]:
    stmt = select(Store).where(Store.id.in_(store_ids_in_scope(scope))).order_by(Store.id)
    return list((await session.execute(stmt)).scalars())


async def get_store(session: AsyncSession, store_id: int, *, scope: Scope = GLOBAL) -> Store:
    """A store within the scope (404 outside it)."""
    store = await session.get(Store, store_id)
    if store is None or not in_scope(scope, store):
        raise exc.StoreNotFound()
    return store


async def get_store_by_code(session: AsyncSession, code: str) -> Store:
    store = (await session.execute(select(Store).where(Store.code == code))).scalar_one_or_none()
    if store is None:
        raise exc.StoreNotFound()
    return store


async def update_store(session: AsyncSession, store_id: int, *, data: StoreUpdate) -> Store:
    store = await get_store(session, store_id)
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(store, field, value)
    await session.flush()
    return store


def in_scope(scope: Scope, store: Store) -> bool:
    if scope.store_id is not None:
        return store.id == scope.store_id
    if scope.region_id is not None:
        return store.region_id == scope.region_id
    return True


async def create_terminal(
    session: AsyncSession, *, store_id: int, name: str
) -> tuple[Terminal, str]:
    """Add a POS terminal; returns it with its API key, which is never shown again."""
    await get_store(session, store_id)
    key = security.new_token(API_KEY_PREFIX)
    terminal = Terminal(
        store_id=store_id,
        name=name,
        key_prefix=key[:10],
        key_hash=security.token_digest(key),
        created_at=clock.now(),
    )
    session.add(terminal)
    await session.flush()
    return terminal, key


async def list_terminals(session: AsyncSession, *, store_id: int) -> list[Terminal]:
    await get_store(session, store_id)
    stmt = select(Terminal).where(Terminal.store_id == store_id).order_by(Terminal.id)
    return list((await session.execute(stmt)).scalars())


async def revoke_terminal(session: AsyncSession, terminal_id: int) -> Terminal:
    """Revoke a terminal; its key is refused from then on."""
    terminal = await session.get(Terminal, terminal_id)
    if terminal is None:
        raise exc.TerminalNotFound()
    if terminal.revoked_at is None:
        terminal.revoked_at = clock.now()
        await session.flush()
    return terminal


_TERMINAL_BY_KEY = (  # built once: every till request authenticates
    select(Terminal, Store)
    .join(Store, Store.id == Terminal.store_id)
    .where(Terminal.key_hash == bindparam("key_hash"), Terminal.revoked_at.is_(None))
)


async def authenticate_terminal(session: AsyncSession, api_key: str) -> tuple[Terminal, Store]:
    """The active terminal and its store for an API key."""
    params = {"key_hash": security.token_digest(api_key)}
    row = (await session.execute(_TERMINAL_BY_KEY, params)).first()
    if row is None or not row[1].active:
        raise exc.InvalidApiKey()
    return row[0], row[1]


def _check_scope_fits(role: Role, region_id: int | None, store_id: int | None) -> None:
    if role in GLOBAL_ROLES and (region_id or store_id):
        raise exc.InvalidScope(
            f"{role} sees the whole programme; give neither region_id nor store_id"
        )
    if role == Role.region_manager and (region_id is None or store_id is not None):
        raise exc.InvalidScope("a region_manager needs region_id and no store_id")
    if role in (Role.store_manager, Role.cashier) and store_id is None:
        raise exc.InvalidScope(f"a {role} needs store_id")


async def create_staff(session: AsyncSession, *, data: StaffCreate) -> Staff:
    """Add a staff account with an argon2 password hash."""
    _check_scope_fits(data.role, data.region_id, data.store_id)
    region_id = data.region_id
    if data.store_id is not None:
        store = await get_store(session, data.store_id)
        region_id = store.region_id
    elif region_id is not None:
        await get_region(session, region_id)
    staff = Staff(
        email=data.email.lower(),
        name=data.name,
        password_hash=security.hash_password(data.password),
        role=data.role,
        region_id=region_id,
        store_id=data.store_id,
        active=True,
        token_generation=0,
        created_at=clock.now(),
    )
    try:
        async with session.begin_nested():
            session.add(staff)
    except IntegrityError as e:
        raise exc.StaffExists() from e
    return staff


async def list_staff(session: AsyncSession) -> list[Staff]:
    return list((await session.execute(select(Staff).order_by(Staff.id))).scalars())


async def get_staff(session: AsyncSession, staff_id: int) -> Staff:
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise exc.StaffNotFound()
    return staff


async def update_staff(
    session: AsyncSession, staff_id: int, *, data: StaffUpdate, by: Staff
) -> Staff:
    """Rename, change the role or scope, or (de)activate a staff account; deactivation ends
    every token and console session the account holds."""
    staff = await get_staff(session, staff_id)
    changes = data.model_dump(exclude_unset=True)
    if staff.id == by.id and (
        changes.get("active") is False or changes.get("role", staff.role) != staff.role
    ):
        raise exc.StaffSelfChange()
    role = Role(changes.get("role", staff.role))
    scope_given = "region_id" in changes or "store_id" in changes or "role" in changes
    if scope_given:
        region_id = changes.get("region_id", staff.region_id if "role" not in changes else None)
        store_id = changes.get("store_id", staff.store_id if "role" not in changes else None)
        _check_scope_fits(role, region_id, store_id)
        if store_id is not None:
            region_id = (await get_store(session, store_id)).region_id
        elif region_id is not None:
            await get_region(session, region_id)
        staff.role, staff.region_id, staff.store_id = role, region_id, store_id
    if "name" in changes:
        staff.name = changes["name"]
    if "active" in changes:
        was_active, staff.active = staff.active, changes["active"]
        if was_active and not staff.active:
            await end_everything(session, staff=staff)
    await session.flush()
    return staff


async def end_everything(session: AsyncSession, *, staff: Staff) -> None:
    """Every API token and console session of the staff member stops working."""
    staff.token_generation = (staff.token_generation or 0) + 1
    await session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff.id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    await session.flush()
    logging.getLogger("loyalty.signin").info(
        "staff %s signed out everywhere (generation %s)", staff.id, staff.token_generation
    )


async def authenticate_staff(session: AsyncSession, *, email: str, password: str) -> Staff:
    """The active staff member with this e-mail and password."""
    stmt = select(Staff).where(Staff.email == email.strip().lower())
    staff = (await session.execute(stmt)).scalar_one_or_none()
    ok = security.verify_password(staff.password_hash if staff else None, password)
    if staff is None or not ok or not staff.active:
        raise exc.BadCredentials()
    return staff


def issue_staff_token(settings: Settings, staff: Staff) -> tuple[str, int]:
    lifetime = timedelta(minutes=settings.staff_token_minutes)
    claims = {
        "sub": str(staff.id),
        "typ": "staff",
        "role": staff.role,
        "gen": staff.token_generation or 0,
    }
    token = security.encode_jwt(settings.secret_key, claims, lifetime)
    return token, int(lifetime.total_seconds())


def scope_of(staff: Staff) -> Scope:
    if staff.role in GLOBAL_ROLES:
        return GLOBAL
    if staff.role == Role.region_manager:
        return Scope(region_id=staff.region_id)
    return Scope(store_id=staff.store_id)


async def staff_count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Staff))).scalar_one())


async def bootstrap_admin(session: AsyncSession, *, email: str, password: str) -> Staff | None:
    """Create the first admin when no staff exists yet; otherwise do nothing."""
    if await staff_count(session) > 0:
        return None
    try:
        return await create_staff(
            session,
            data=StaffCreate(email=email, password=password, name="Administrator", role=Role.admin),
        )
    except exc.StaffExists:  # another replica starting at the same moment created it first
        return None


CONSOLE_TERMINAL = "Console till"


async def console_terminal(session: AsyncSession, store: Store) -> Terminal:
    """The store's terminal row for the console's cashier screen, created on first use.

    The till services (identify, till tokens, redemptions) are keyed by terminal, so the console
    acts as one terminal per store. Its API key is generated and thrown away unseen: only the
    console, which calls the services directly, ever acts as it. Revoking it in Organisation
    makes the next till action create a fresh one.
    """
    terminals = await list_terminals(session, store_id=store.id)
    terminal = next(
        (t for t in terminals if t.name == CONSOLE_TERMINAL and t.revoked_at is None), None
    )
    if terminal is None:
        terminal, _unseen_key = await create_terminal(
            session, store_id=store.id, name=CONSOLE_TERMINAL
        )
    return terminal
