"""Members: enrolment, lookup within a staff scope, profile, consents and vehicles."""

from contextlib import suppress
from datetime import date

from sqlalchemy import Select, bindparam, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.core.models import AccessLog
from api.core.pagination import PageParams, Slice, make_page
from api.members import cards
from api.members.exceptions import (
    InvalidPhone,
    InvalidPlate,
    MemberExists,
    MemberNotFound,
    PlateTaken,
)
from api.members.identifiers import looks_like_phone, normalise_phone, normalise_plate
from api.members.models import Member, MemberConsent, Vehicle
from api.members.schemas import (
    ConsentRead,
    ConsentsIn,
    MemberCreate,
    MemberRead,
    MeUpdate,
    VehicleRead,
)
from api.org import service as org_service
from api.org.scope import GLOBAL, Scope

CHANNELS = ("push", "sms", "email")


def _set_birthday(member: Member, birthday: date | None) -> None:
    member.birthday = birthday
    member.birth_month = birthday.month if birthday else None
    member.birth_day = birthday.day if birthday else None


async def find_by_phone(session: AsyncSession, phone: str) -> Member | None:
    return (await session.execute(select(Member).where(Member.phone == phone))).scalar_one_or_none()


_BY_CARD = select(Member).where(Member.card_number == bindparam("card"))  # built once: hot


async def find_by_card(session: AsyncSession, card_number: str) -> Member | None:
    return (await session.execute(_BY_CARD, {"card": card_number})).scalar_one_or_none()


async def find_by_plate(session: AsyncSession, plate: str) -> Member | None:
    """The member whose claim on this plate was verified (unverified claims never identify)."""
    stmt = (
        select(Member)
        .join(Vehicle, Vehicle.member_id == Member.id)
        .where(Vehicle.plate == plate, Vehicle.verified_at.is_not(None))
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def enrol(
    session: AsyncSession,
    *,
    settings: Settings,
    data: MemberCreate,
    via: str,
    store_id: int | None = None,
) -> Member:
    """Create a member with a random card number and QR secret; 409 if the phone is known."""
    phone = normalise_phone(data.phone, settings.default_phone_region)
    if await find_by_phone(session, phone) is not None:
        raise MemberExists()
    plate = normalise_plate(data.plate) if data.plate else None  # an unverified claim
    home_store_id = data.home_store_id if data.home_store_id is not None else store_id
    if home_store_id is not None:
        await org_service.get_store(session, home_store_id)
    now = clock.now()
    member = Member(
        phone=phone,
        name=data.name,
        gender=data.gender,
        email=str(data.email) if data.email else None,
        home_store_id=home_store_id,
        status="active",
        enrolled_via=via,
        totp_secret=cards.new_totp_secret(),
        created_at=now,
        updated_at=now,
    )
    _set_birthday(member, data.birthday)
    for _ in range(5):
        member.card_number = cards.new_card_number(settings.card_prefix, settings.card_length)
        try:
            async with session.begin_nested():
                session.add(member)
            break
        except IntegrityError as e:
            if member in session:
                session.expunge(member)
            if await find_by_phone(session, phone) is not None:
                raise MemberExists() from e
    else:  # pragma: no cover - five random collisions in a row
        raise RuntimeError("could not allocate a unique card number")
    await set_consents(session, member.id, data.consents or ConsentsIn(), source=via, defaults=True)
    if plate:
        session.add(Vehicle(member_id=member.id, plate=plate, created_at=now))
        await session.flush()
    return member


def _scoped(stmt: Select[tuple[Member]], scope: Scope) -> Select[tuple[Member]]:
    if scope.is_global:
        return stmt
    return stmt.where(Member.home_store_id.in_(org_service.store_ids_in_scope(scope)))


async def get_member(session: AsyncSession, member_id: int, *, scope: Scope = GLOBAL) -> Member:
    """A member within the scope; 404 when missing or outside it."""
    stmt = _scoped(select(Member).where(Member.id == member_id), scope)
    member = (await session.execute(stmt)).scalar_one_or_none()
    if member is None:
        raise MemberNotFound()
    return member


async def search(
    session: AsyncSession, *, settings: Settings, q: str | None, scope: Scope, page: PageParams
) -> Slice[Member]:
    """Members in scope matching a phone, card number, plate or name fragment; newest first."""
    stmt = _scoped(select(Member), scope)
    if q:
        q = q.strip()
        conditions = [Member.card_number == q, Member.name.contains(q, autoescape=True)]
        if looks_like_phone(q):
            with suppress(InvalidPhone):
                conditions.append(Member.phone == normalise_phone(q, settings.default_phone_region))
        with suppress(InvalidPlate):
            plate = normalise_plate(q)
            conditions.append(
                Member.id.in_(select(Vehicle.member_id).where(Vehicle.plate == plate))
            )
        stmt = stmt.where(or_(*conditions))
    if page.before_id is not None:
        stmt = stmt.where(Member.id < page.before_id)
    rows = list(
        (await session.execute(stmt.order_by(Member.id.desc()).limit(page.limit + 1))).scalars()
    )
    return make_page(rows, page.limit, lambda m: m.id)


async def set_consents(
    session: AsyncSession,
    member_id: int,
    consents: ConsentsIn,
    *,
    source: str,
    defaults: bool = False,
) -> None:
    """Record consent per channel with time and source; `defaults` fills unset channels with no."""
    current = {c.channel: c for c in await _consent_rows(session, member_id)}
    now = clock.now()
    given = consents.model_dump(exclude_unset=not defaults)
    for channel in CHANNELS:
        granted = given.get(channel)
        if granted is None:
            if not defaults or channel in current:
                continue
            granted = False
        row = current.get(channel)
        if row is None:
            session.add(
                MemberConsent(
                    member_id=member_id,
                    channel=channel,
                    granted=granted,
                    source=source,
                    updated_at=now,
                )
            )
        elif row.granted != granted:
            row.granted, row.source, row.updated_at = granted, source, now
    await session.flush()


async def _consent_rows(session: AsyncSession, member_id: int) -> list[MemberConsent]:
    stmt = select(MemberConsent).where(MemberConsent.member_id == member_id)
    return list((await session.execute(stmt)).scalars())


async def update_profile(
    session: AsyncSession, member: Member, *, data: MeUpdate, source: str
) -> Member:
    """Change name, birthday, gender, e-mail, home store or consents."""
    changes = data.model_dump(exclude_unset=True, exclude={"consents"})
    if changes.get("home_store_id") is not None:
        await org_service.get_store(session, changes["home_store_id"])
    for field, value in changes.items():
        if field == "birthday":
            _set_birthday(member, value)
        elif field == "email":
            member.email = str(value) if value else None
        else:
            setattr(member, field, value)
    if data.consents is not None:
        await set_consents(session, member.id, data.consents, source=source)
    member.updated_at = clock.now()
    await session.flush()
    return member


async def add_vehicle(session: AsyncSession, member: Member, *, plate: str) -> Vehicle:
    """Claim a plate for the member (unverified: it earns only once confirmed at a till).
    Other members may claim the same plate; the claim verified at a till wins."""
    normalised = normalise_plate(plate)
    existing = (
        await session.execute(
            select(Vehicle).where(Vehicle.plate == normalised, Vehicle.member_id == member.id)
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    vehicle = Vehicle(member_id=member.id, plate=normalised, created_at=clock.now())
    try:
        async with session.begin_nested():
            session.add(vehicle)
    except IntegrityError as e:
        raise PlateTaken() from e
    return vehicle


async def remove_vehicle(session: AsyncSession, member: Member, *, vehicle_id: int) -> None:
    result = await session.execute(
        delete(Vehicle).where(Vehicle.id == vehicle_id, Vehicle.member_id == member.id)
    )
    if not result.rowcount:
        raise MemberNotFound("no such vehicle on this member")


async def verify_plate(
    session: AsyncSession, member: Member, *, plate: str, by: str, claimed_only: bool = False
) -> Vehicle | None:
    """Confirm that the car with this plate is the member's (staff at a till, or a receipt
    identified by the member's fresh QR code): the member's claim becomes verified, created
    unless `claimed_only`, and every other member's claim on the plate is removed."""
    normalised = normalise_plate(plate)
    mine = (
        await session.execute(
            select(Vehicle)
            .where(Vehicle.plate == normalised, Vehicle.member_id == member.id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if mine is None and claimed_only:
        return None
    await session.execute(
        delete(Vehicle).where(Vehicle.plate == normalised, Vehicle.member_id != member.id)
    )
    now = clock.now()
    if mine is None:
        mine = Vehicle(member_id=member.id, plate=normalised, created_at=now)
        session.add(mine)
    if mine.verified_at is None:
        mine.verified_at, mine.verified_by = now, by[:64]
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as e:  # verified for another member by a concurrent request
        raise PlateTaken() from e
    return mine


async def vehicles_of(session: AsyncSession, member_id: int) -> list[Vehicle]:
    stmt = select(Vehicle).where(Vehicle.member_id == member_id).order_by(Vehicle.id)
    return list((await session.execute(stmt)).scalars())


async def read_model(session: AsyncSession, member: Member) -> MemberRead:
    """The full member view: profile, consents and vehicles."""
    consents = {
        c.channel: ConsentRead(granted=c.granted, updated_at=c.updated_at, source=c.source)
        for c in await _consent_rows(session, member.id)
    }
    vehicles = [VehicleRead.model_validate(v) for v in await vehicles_of(session, member.id)]
    return MemberRead(
        id=member.id,
        card_number=member.card_number,
        phone=member.phone,
        name=member.name,
        gender=member.gender,
        birthday=member.birthday,
        email=member.email,
        home_store_id=member.home_store_id,
        status=member.status,
        enrolled_via=member.enrolled_via,
        created_at=member.created_at,
        consents=consents,
        vehicles=vehicles,
    )


async def log_access(
    session: AsyncSession, *, staff_id: int, member_id: int, action: str, request_id: str | None
) -> None:
    """Record that a staff member read a member's personal data."""
    session.add(
        AccessLog(
            staff_id=staff_id,
            member_id=member_id,
            action=action,
            request_id=request_id,
            created_at=clock.now(),
        )
    )
    await session.flush()


def display_name(member: Member) -> str:
    """What a cashier sees: the name with all but its first character hidden, and phone end."""
    tail = member.phone[-4:]
    if member.name and len(member.name) > 1:
        return f"{member.name[0]}{'*' * (len(member.name) - 1)} (…{tail})"
    if member.name:
        return f"* (…{tail})"
    return f"Member …{tail}"
