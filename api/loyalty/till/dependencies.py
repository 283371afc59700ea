"""Load-and-validate dependencies of the loyalty routers."""

from typing import Annotated

from fastapi import Depends

from api.core.db import SessionDep
from api.loyalty.till.context import Till
from api.loyalty.till.exceptions import PurchaseNotFound
from api.loyalty.till.models import Purchase
from api.org.dependencies import CurrentTerminal


def terminal_till(till: CurrentTerminal) -> Till:
    """The calling terminal as the till receipts, redemptions and coupons come from."""
    return Till.at_terminal(till.store, till.terminal.id)


AtTill = Annotated[Till, Depends(terminal_till)]


async def purchase_at_till(purchase_id: int, session: SessionDep, till: CurrentTerminal) -> None:
    """404 PurchaseNotFound unless the purchase was rung up at this terminal's store."""
    purchase = await session.get(Purchase, purchase_id)
    if purchase is None or purchase.store_id != till.store.id:
        raise PurchaseNotFound()
