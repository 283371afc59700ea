"""Fixtures for the points tests: a member with a card, and a receipt builder."""

from datetime import datetime
from typing import Any

import pytest

from tests import factories


@pytest.fixture
async def member(session, settings, org):
    m = await factories.make_member(session, settings, store=org.supermarket)
    await session.commit()
    return m


def receipt(
    receipt_no: str,
    *lines: tuple[str, int],
    member_code: str | None = None,
    member_id: int | None = None,
    occurred_at: datetime | None = None,
    currency: str = "CNY",
) -> dict[str, Any]:
    """A receipt body: lines are (category, amount) pairs."""
    body: dict[str, Any] = {
        "receipt_no": receipt_no,
        "currency": currency,
        "total": sum(amount for _, amount in lines),
        "lines": [
            {
                "line_no": i,
                "sku": f"SKU-{category}-{i}",
                "category": category,
                "quantity": 1,
                "amount": amount,
            }
            for i, (category, amount) in enumerate(lines, start=1)
        ],
    }
    if member_code:
        body["member_code"] = member_code
    if member_id:
        body["member_id"] = member_id
    if occurred_at:
        body["occurred_at"] = occurred_at.isoformat()
    return body
