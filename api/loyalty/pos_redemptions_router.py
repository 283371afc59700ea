from fastapi import APIRouter, Request, status

from api.core.access import PolicyRoute
from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.core.idempotency import IdempotencyKey, run_once
from api.loyalty import redemptions
from api.loyalty.purchases import Till
from api.loyalty.schemas import RedemptionIn, RedemptionRead, RedemptionSettledRead
from api.org.dependencies import CurrentTerminal

router = APIRouter(prefix="/v1/pos/redemptions", tags=["pos"], route_class=PolicyRoute)


@router.post("", response_model=RedemptionRead, status_code=status.HTTP_201_CREATED)
async def reserve(
    body: RedemptionIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    till: CurrentTerminal,
    idempotency_key: IdempotencyKey = None,
) -> RedemptionRead:
    """Reserve points to pay with (needs a rotating code or its till token); confirm or cancel."""

    async def work() -> RedemptionRead:
        return await redemptions.reserve(
            session,
            settings=settings,
            till=Till.at_terminal(till.store, till.terminal.id),
            body=body,
        )

    return await run_once(
        session,
        request,
        scope=f"terminal:{till.terminal.id}",
        key=idempotency_key,
        body=body,
        work=work,
        status_code=status.HTTP_201_CREATED,
    )


@router.post("/{redemption_id}/confirm", response_model=RedemptionSettledRead)
async def confirm(
    redemption_id: int,
    request: Request,
    session: SessionDep,
    till: CurrentTerminal,
    idempotency_key: IdempotencyKey = None,
) -> RedemptionSettledRead:
    """Spend the reserved points (409 ReservationExpired once the reservation has lapsed)."""

    async def work() -> RedemptionSettledRead:
        return await redemptions.confirm(
            session,
            till=Till.at_terminal(till.store, till.terminal.id),
            redemption_id=redemption_id,
        )

    return await run_once(
        session,
        request,
        scope=f"terminal:{till.terminal.id}",
        key=idempotency_key,
        body=None,
        work=work,
    )


@router.post("/{redemption_id}/cancel", response_model=RedemptionSettledRead)
async def cancel(
    redemption_id: int,
    request: Request,
    session: SessionDep,
    till: CurrentTerminal,
    idempotency_key: IdempotencyKey = None,
) -> RedemptionSettledRead:
    """Cancel a reservation; its points go back to the lots they came from."""

    async def work() -> RedemptionSettledRead:
        return await redemptions.cancel(
            session,
            till=Till.at_terminal(till.store, till.terminal.id),
            redemption_id=redemption_id,
        )

    return await run_once(
        session,
        request,
        scope=f"terminal:{till.terminal.id}",
        key=idempotency_key,
        body=None,
        work=work,
    )
