"""Plain factory functions for tests: they call the services, like the API does."""

from dataclasses import dataclass, field
from datetime import date
from itertools import count

from sqlalchemy.ext.asyncio import AsyncSession

from api.core.config import Settings
from api.members import service as members_service
from api.members import signin
from api.members.models import Member
from api.members.schemas import ConsentsIn, MemberCreate
from api.org import service as org_service
from api.org.models import Region, Role, Staff, Store
from api.org.schemas import RegionCreate, StaffCreate, StoreCreate

_seq = count(1)
PASSWORD = "correct-horse-battery"


def unique_phone() -> str:
    return f"+86139{next(_seq) + 10_000_000:08d}"[:14]


async def make_region(session: AsyncSession, name: str | None = None) -> Region:
    return await org_service.create_region(
        session, data=RegionCreate(name=name or f"Region {next(_seq)}")
    )


async def make_store(
    session: AsyncSession,
    region: Region,
    *,
    kind: str = "supermarket",
    timezone: str = "Asia/Shanghai",
    code: str | None = None,
) -> Store:
    return await org_service.create_store(
        session,
        data=StoreCreate(
            code=code or f"S{next(_seq)}",
            name=f"Store {next(_seq)}",
            region_id=region.id,
            timezone=timezone,
            kind=kind,
        ),
    )


async def make_terminal(session: AsyncSession, store: Store) -> str:
    _, key = await org_service.create_terminal(session, store_id=store.id, name="Till 1")
    return key


async def make_staff(
    session: AsyncSession,
    settings: Settings,
    role: Role,
    *,
    region_id: int | None = None,
    store_id: int | None = None,
) -> tuple[Staff, dict[str, str]]:
    staff = await org_service.create_staff(
        session,
        data=StaffCreate(
            email=f"{role}{next(_seq)}@example.com",
            password=PASSWORD,
            role=role,
            region_id=region_id,
            store_id=store_id,
        ),
    )
    token, _ = org_service.issue_staff_token(settings, staff)
    return staff, {"Authorization": f"Bearer {token}"}


async def make_member(
    session: AsyncSession,
    settings: Settings,
    *,
    store: Store | None = None,
    phone: str | None = None,
    name: str | None = "王小明",
    birthday: date | None = None,
    plate: str | None = None,
    plate_verified: bool = True,
    push: bool = True,
) -> Member:
    """A member; a plate given is verified (as if confirmed at a till) unless told otherwise."""
    member = await members_service.enrol(
        session,
        settings=settings,
        data=MemberCreate(
            phone=phone or unique_phone(),
            name=name,
            birthday=birthday,
            plate=plate,
            consents=ConsentsIn(push=push, sms=False, email=False),
        ),
        via="staff",
        store_id=store.id if store else None,
    )
    if plate and plate_verified:
        await members_service.verify_plate(session, member, plate=plate, by="test")
    return member


@dataclass
class Org:
    north: Region
    south: Region
    supermarket: Store
    fuel_a: Store
    fuel_b: Store
    keys: dict[str, str] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    staff: dict[str, Staff] = field(default_factory=dict)

    def terminal(self, store: Store) -> dict[str, str]:
        return {"X-API-Key": self.keys[store.code]}


async def make_org(session: AsyncSession, settings: Settings) -> Org:
    north = await make_region(session, f"North {next(_seq)}")
    south = await make_region(session, f"South {next(_seq)}")
    supermarket = await make_store(session, north, kind="supermarket")
    fuel_a = await make_store(session, north, kind="fuel_station")
    fuel_b = await make_store(session, south, kind="fuel_station")
    org = Org(north, south, supermarket, fuel_a, fuel_b)
    for store in (supermarket, fuel_a, fuel_b):
        org.keys[store.code] = await make_terminal(session, store)
    scopes = {
        Role.admin: {},
        Role.marketer: {},
        Role.region_manager: {"region_id": north.id},
        Role.store_manager: {"store_id": supermarket.id},
        Role.cashier: {"store_id": supermarket.id},
    }
    for role, scope in scopes.items():
        staff, headers = await make_staff(session, settings, role, **scope)
        org.staff[role.value] = staff
        org.headers[role.value] = headers
    return org


def member_headers(settings: Settings, member: Member) -> dict[str, str]:
    """A bearer header for the member, as the app holds after signing in."""
    token, _ = signin.issue_access_token(settings, member.id)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Till:
    store: Store
    terminal_id: int
    headers: dict[str, str]


async def make_till(session: AsyncSession, store: Store | None = None) -> Till:
    """A POS terminal (in a new store unless given one); cheaper than make_org (no staff)."""
    if store is None:
        store = await make_store(session, await make_region(session))
    terminal, key = await org_service.create_terminal(session, store_id=store.id, name="Till")
    return Till(store, terminal.id, {"X-API-Key": key})
