"""The platform app plus the benchmark's bare endpoint: parse the receipt, one INSERT, return."""

import os

from fastapi import FastAPI, status
from sqlalchemy import insert

from api.core import clock
from api.core.db import SessionDep
from api.loyalty.till.models import Purchase
from api.loyalty.till.schemas import PurchaseIn
from api.main import create_app


def create() -> FastAPI:
    """uvicorn factory: the real app with POST /bench/bare added (never in production)."""
    app = create_app()
    store_id = int(os.environ["LOYALTY_BENCH_STORE_ID"])

    async def bare(body: PurchaseIn, session: SessionDep) -> dict[str, int]:
        """The stack's own limit: one INSERT in the request's transaction."""
        stmt = insert(Purchase).values(
            store_id=store_id,
            receipt_no=body.receipt_no,
            occurred_at=clock.now(),
            currency=body.currency,
            total=body.total,
            returned_total=0,
            points=0,
            bonus_points=0,
            points_reversed=0,
            created_at=clock.now(),
        )
        purchase_id = (await session.execute(stmt.returning(Purchase.id))).scalar_one()
        return {"purchase_id": purchase_id}

    app.add_api_route("/bench/bare", bare, methods=["POST"], status_code=status.HTTP_201_CREATED)
    return app
