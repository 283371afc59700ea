"""Load-and-validate dependencies of the loyalty routers."""

from api.core.db import SessionDep
from api.loyalty.exceptions import PurchaseNotFound
from api.loyalty.models import Purchase
from api.org.dependencies import CurrentTerminal


async def purchase_at_till(purchase_id: int, session: SessionDep, till: CurrentTerminal) -> None:
    """404 PurchaseNotFound unless the purchase was rung up at this terminal's store."""
    purchase = await session.get(Purchase, purchase_id)
    if purchase is None or purchase.store_id != till.store.id:
        raise PurchaseNotFound()
