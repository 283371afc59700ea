from fastapi import APIRouter, status

from api.core.access import PolicyRoute
from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.loyalty import redemptions
from api.loyalty.dependencies import AtTill
from api.loyalty.schemas import RedemptionIn, RedemptionRead, RedemptionSettledRead
from api.org.dependencies import TerminalOnce

router = APIRouter(prefix="/v1/pos/redemptions", tags=["pos"], route_class=PolicyRoute)


@router.post("", response_model=RedemptionRead, status_code=status.HTTP_201_CREATED)
async def reserve(
    body: RedemptionIn, session: SessionDep, settings: SettingsDep, till: AtTill, once: TerminalOnce
) -> RedemptionRead:
    """Reserve points to pay with (needs a rotating code or its till token); confirm or cancel."""

    async def work() -> RedemptionRead:
        return await redemptions.reserve(session, settings=settings, till=till, body=body)

    return await once(work, body=body, status_code=status.HTTP_201_CREATED)


@router.post("/{redemption_id}/confirm", response_model=RedemptionSettledRead)
async def confirm(
    redemption_id: int, session: SessionDep, till: AtTill, once: TerminalOnce
) -> RedemptionSettledRead:
    """Spend the reserved points (409 ReservationExpired once the reservation has lapsed)."""

    async def work() -> RedemptionSettledRead:
        return await redemptions.confirm(session, till=till, redemption_id=redemption_id)

    return await once(work)


@router.post("/{redemption_id}/cancel", response_model=RedemptionSettledRead)
async def cancel(
    redemption_id: int, session: SessionDep, till: AtTill, once: TerminalOnce
) -> RedemptionSettledRead:
    """Cancel a reservation; its points go back to the lots they came from."""

    async def work() -> RedemptionSettledRead:
        return await redemptions.cancel(session, till=till, redemption_id=redemption_id)

    return await once(work)
