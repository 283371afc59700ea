from fastapi import APIRouter

from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.loyalty import accounts
from api.loyalty.schemas import BalanceRead, IdentifyRequest, IdentifyResult
from api.members import identity
from api.members import service as members_service
from api.org.dependencies import CurrentTerminal

router = APIRouter(prefix="/v1/pos", tags=["pos"])


@router.post("/identify", response_model=IdentifyResult)
async def identify(
    body: IdentifyRequest, session: SessionDep, settings: SettingsDep, till: CurrentTerminal
) -> IdentifyResult:
    """Scan: a rotating QR payload, card number, phone or plate → the member and a till token."""
    found = await identity.identify(
        session, settings=settings, terminal_id=till.terminal.id, code=body.code
    )
    balance = await accounts.balance_of(session, found.member.id)
    return IdentifyResult(
        member_id=found.member.id,
        display_name=members_service.display_name(found.member),
        tier=balance.tier,
        balance=BalanceRead(available=balance.available, pending=balance.pending),
        can_redeem=found.can_redeem,
        method=found.method,
        till_token=identity.issue_till_token(settings, terminal_id=till.terminal.id, found=found),
        till_token_expires_in=settings.till_token_seconds,
    )
