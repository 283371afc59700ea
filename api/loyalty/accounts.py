"""Reading a member's points account."""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from api.loyalty.models import Account


@dataclass(frozen=True)
class Balance:
    available: int
    pending: int
    tier: str | None


async def balance_of(session: AsyncSession, member_id: int) -> Balance:
    account = await session.get(Account, member_id)
    if account is None:
        return Balance(0, 0, None)
    return Balance(account.available, account.pending, account.tier)
