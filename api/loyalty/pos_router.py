from fastapi import APIRouter, Depends, status

from api.core.access import PolicyRoute
from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.loyalty import accounts, purchases, returns
from api.loyalty.dependencies import AtTill, purchase_at_till
from api.loyalty.schemas import (
    BalanceRead,
    BatchIn,
    BatchResult,
    IdentifyRequest,
    IdentifyResult,
    PurchaseIn,
    PurchaseResult,
    QuoteResult,
    ReturnIn,
    ReturnResult,
)
from api.members import identity
from api.members import service as members_service
from api.org.dependencies import CurrentTerminal, TerminalOnce

router = APIRouter(prefix="/v1/pos", tags=["pos"], route_class=PolicyRoute)


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
