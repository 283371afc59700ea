"""FCM registration tokens per member: several devices each; a token follows its latest owner."""

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.push.exceptions import DeviceNotFound
from api.push.models import Device
from api.push.schemas import DeviceIn


async def register(session: AsyncSession, *, member_id: int, data: DeviceIn) -> Device:
    """Register (or refresh) a token for the member; a token seen on another member moves."""
    now = clock.now()
    fields = {
        "member_id": member_id,
        "platform": data.platform,
        "locale": data.locale,
        "app_version": data.app_version,
        "active": True,
        "deactivated_reason": None,
        "updated_at": now,
    }
    stmt = select(Device).where(Device.token == data.token).with_for_update()
    device = (await session.execute(stmt)).scalar_one_or_none()
    if device is None:
        try:
            async with session.begin_nested():
                device = Device(token=data.token, created_at=now, **fields)
                session.add(device)
            return device
        except IntegrityError:  # registered concurrently: take that row over
            device = (await session.execute(stmt)).scalar_one()
    for name, value in fields.items():
        setattr(device, name, value)
    await session.flush()
    return device


async def unregister(session: AsyncSession, *, member_id: int, token: str) -> None:
    """Stop pushing to this token (the app signed out or the user turned notifications off)."""
    stmt = select(Device).where(
        Device.token == token, Device.member_id == member_id, Device.active.is_(True)
    )
    device = (await session.execute(stmt)).scalar_one_or_none()
    if device is None:
        raise DeviceNotFound()
    device.active = False
    device.deactivated_reason = "removed"
    device.updated_at = clock.now()
    await session.flush()


async def list_devices(session: AsyncSession, *, member_id: int) -> list[Device]:
    """The member's active devices, newest first."""
    stmt = (
        select(Device)
        .where(Device.member_id == member_id, Device.active.is_(True))
        .order_by(Device.id.desc())
    )
    return list((await session.execute(stmt)).scalars())


async def active_tokens(
    session: AsyncSession, *, member_ids: Iterable[int]
) -> dict[int, list[str]]:
    """Active tokens per member."""
    stmt = (
        select(Device.member_id, Device.token)
        .where(Device.member_id.in_(list(member_ids)), Device.active.is_(True))
        .order_by(Device.id)
    )
    tokens: dict[int, list[str]] = {}
    for member_id, token in await session.execute(stmt):
        tokens.setdefault(member_id, []).append(token)
    return tokens


async def deactivate(session: AsyncSession, *, reasons: dict[str, str]) -> int:
    """Deactivate tokens FCM called dead: {token: unregistered | sender_mismatch | …}."""
    now = clock.now()
    for token, reason in reasons.items():
        await session.execute(
            update(Device)
            .where(Device.token == token, Device.active.is_(True))
            .values(active=False, deactivated_reason=reason, updated_at=now)
        )
    return len(reasons)
