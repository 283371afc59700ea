"""Cars at the pump: staff confirm that a plate is the member's, with the member's fresh QR
code. Only a confirmed (verified) plate identifies its member at a fuel till; confirming it
for one member removes every other member's claim on it (the car changed hands)."""

from sqlalchemy.ext.asyncio import AsyncSession

from api.core.config import Settings
from api.loyalty.till import texts as t
from api.loyalty.till.context import Till
from api.loyalty.till.exceptions import RotatingCodeRequired
from api.loyalty.till.schemas import VehicleConfirmed, VehicleConfirmIn
from api.members import identity
from api.members import service as members_service


async def confirm(
    session: AsyncSession, *, settings: Settings, till: Till, body: VehicleConfirmIn
) -> VehicleConfirmed:
    """Verify the plate for the member of a fresh rotating code (or its till token); a typed
    card number or phone is not enough (403 RotatingCodeRequired)."""
    assert till.terminal_id is not None
    found = await identity.resolve_member_code(
        session, settings=settings, terminal_id=till.terminal_id, code=body.member_code
    )
    if not found.can_redeem:
        raise RotatingCodeRequired(t.text("plate_needs_rotating_code"))
    vehicle = await members_service.verify_plate(
        session, found.member, plate=body.plate, by=till.actor
    )
    assert vehicle is not None and vehicle.verified_at is not None
    return VehicleConfirmed(
        member_id=found.member.id,
        plate=vehicle.plate,
        verified=True,
        verified_at=vehicle.verified_at,
    )
