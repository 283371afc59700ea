"""The till over /v1/pos (terminal API key), and receipt claims by the member."""

from fastapi import Depends, status

from api.core.access import PolicyRouter
from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.loyalty.ledger import accounts
from api.loyalty.ledger.schemas import BalanceRead
from api.loyalty.till import claims, purchases, redemptions, returns, vehicles
from api.loyalty.till.dependencies import AtTill, purchase_at_till
from api.loyalty.till.schemas import (
    BatchIn,
    BatchResult,
    ClaimReceiptIn,
    IdentifyRequest,
    IdentifyResult,
    PurchaseIn,
    PurchaseRead,
    PurchaseResult,
    QuoteResult,
    RedemptionIn,
    RedemptionRead,
    RedemptionSettledRead,
    ReturnIn,
    ReturnResult,
    VehicleConfirmed,
    VehicleConfirmIn,
)
from api.members import identity
from api.members import service as members_service
from api.members.dependencies import CurrentMember, MemberOnce
from api.org.dependencies import CurrentTerminal, TerminalOnce

router = PolicyRouter(prefix="/v1/pos", tags=["pos"])
me_router = PolicyRouter(prefix="/v1/me", tags=["me"])


@router.post("/identify", response_model=IdentifyResult)
async def identify(
    body: IdentifyRequest,
    session: SessionDep,
    settings: SettingsDep,
    till: CurrentTerminal,
    once: TerminalOnce,
) -> IdentifyResult:
    """Scan: a rotating QR payload, card number, phone or plate → the member and a till token."""
    terminal_id = till.terminal.id

    async def work() -> IdentifyResult:
        found = await identity.identify(
            session, settings=settings, terminal_id=terminal_id, code=body.code
        )
        balance = await accounts.balance_of(session, found.member.id)
        return IdentifyResult(
            member_id=found.member.id,
            display_name=members_service.display_name(found.member),
            tier=balance.tier,
            balance=BalanceRead(available=balance.available, pending=balance.pending),
            can_redeem=found.can_redeem,
            method=found.method,
            till_token=identity.issue_till_token(settings, terminal_id=terminal_id, found=found),
            till_token_expires_in=settings.till_token_seconds,
        )

    # A rotating code is accepted once: a POS that lost the response retries with the same
    # key and gets the first answer instead of CodeReplayed.
    return await once(work, body=body)


@router.post("/purchases/quote", response_model=QuoteResult)
async def quote_purchase(
    body: PurchaseIn, session: SessionDep, settings: SettingsDep, till: AtTill
) -> QuoteResult:
    """What this receipt would earn, computed exactly as a post would; nothing is stored."""
    return await purchases.quote(session, settings=settings, till=till, body=body)


@router.post("/purchases", response_model=PurchaseResult, status_code=status.HTTP_201_CREATED)
async def post_purchase(
    body: PurchaseIn, session: SessionDep, settings: SettingsDep, till: AtTill, once: TerminalOnce
) -> PurchaseResult:
    """Post a receipt; points are credited at once. The same receipt twice → 409."""

    async def work() -> PurchaseResult:
        return await purchases.record(session, settings=settings, till=till, body=body)

    return await once(work, body=body, status_code=status.HTTP_201_CREATED)


@router.post("/purchases/batch", response_model=BatchResult)
async def post_batch(
    body: BatchIn, session: SessionDep, settings: SettingsDep, till: AtTill, once: TerminalOnce
) -> BatchResult:
    """Upload receipts recorded offline; each is accepted, a duplicate, or rejected on its own."""

    async def work() -> BatchResult:
        results = await purchases.record_batch(
            session, settings=settings, till=till, purchases=body.purchases
        )
        return BatchResult(results=results)

    return await once(work, body=body)


@router.get("/purchases/{purchase_id}", response_model=PurchaseRead)
async def read_purchase(purchase_id: int, session: SessionDep, till: AtTill) -> PurchaseRead:
    """A receipt of this store as stored, for a reprint (its claim code is never shown again)."""
    return await purchases.read_back(session, till=till, purchase_id=purchase_id)


@router.post(
    "/purchases/{purchase_id}/returns",
    response_model=ReturnResult,
    dependencies=[Depends(purchase_at_till)],
)
async def post_return(
    purchase_id: int, body: ReturnIn, session: SessionDep, till: AtTill, once: TerminalOnce
) -> ReturnResult:
    """Return lines of a receipt; points are reversed in proportion, never beyond the purchase."""

    async def work() -> ReturnResult:
        return await returns.process(
            session,
            purchase_id=purchase_id,
            body=body,
            terminal_id=till.terminal_id,
            actor=till.actor,
        )

    return await once(work, body=body)


@router.post("/redemptions", response_model=RedemptionRead, status_code=status.HTTP_201_CREATED)
async def reserve(
    body: RedemptionIn, session: SessionDep, settings: SettingsDep, till: AtTill, once: TerminalOnce
) -> RedemptionRead:
    """Reserve points to pay with (needs a rotating code or its till token); confirm or cancel."""

    async def work() -> RedemptionRead:
        return await redemptions.reserve(session, settings=settings, till=till, body=body)

    return await once(work, body=body, status_code=status.HTTP_201_CREATED)


@router.get("/redemptions/{redemption_id}", response_model=RedemptionRead)
async def read_redemption(redemption_id: int, session: SessionDep, till: AtTill) -> RedemptionRead:
    """A redemption of this store, for a reprint or to see whether it is still reserved."""
    return await redemptions.read_back(session, till=till, redemption_id=redemption_id)


@router.post("/redemptions/{redemption_id}/confirm", response_model=RedemptionSettledRead)
async def confirm(
    redemption_id: int, session: SessionDep, till: AtTill, once: TerminalOnce
) -> RedemptionSettledRead:
    """Spend the reserved points (409 ReservationExpired once the reservation has lapsed)."""

    async def work() -> RedemptionSettledRead:
        return await redemptions.confirm(session, till=till, redemption_id=redemption_id)

    return await once(work)


@router.post("/redemptions/{redemption_id}/cancel", response_model=RedemptionSettledRead)
async def cancel(
    redemption_id: int, session: SessionDep, till: AtTill, once: TerminalOnce
) -> RedemptionSettledRead:
    """Cancel a reservation; its points go back to the lots they came from."""

    async def work() -> RedemptionSettledRead:
        return await redemptions.cancel(session, till=till, redemption_id=redemption_id)

    return await once(work)


@router.post("/vehicles/confirm", response_model=VehicleConfirmed)
async def confirm_vehicle(
    body: VehicleConfirmIn,
    session: SessionDep,
    settings: SettingsDep,
    till: AtTill,
    once: TerminalOnce,
) -> VehicleConfirmed:
    """Staff confirm the car at the pump is the member's (their fresh QR): it earns by plate."""

    async def work() -> VehicleConfirmed:
        return await vehicles.confirm(session, settings=settings, till=till, body=body)

    return await once(work, body=body)


@me_router.post("/receipts/claim", response_model=PurchaseResult)
async def claim_receipt(
    body: ClaimReceiptIn,
    member: CurrentMember,
    session: SessionDep,
    settings: SettingsDep,
    once: MemberOnce,
) -> PurchaseResult:
    """Claim a receipt paid without the card with its printed claim code (throttled, once)."""
    return await claims.claim_counted(
        session, settings=settings, member=member, body=body, once=once
    )
