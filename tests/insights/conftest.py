"""Insights fixtures: a frozen 'now', fast direct inserts of members, purchases and ledger
rows (answers are known by construction), and a refresh helper."""

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.insights import refresh as refresher
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.till.models import Purchase
from api.members.models import Member
from api.org import service as org_service
from api.org.models import Store

# 12:00 in Shanghai (the programme's default time zone) on Monday 15 June 2026.
NOW = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)
_seq = count(1)


@pytest.fixture(autouse=True)
def frozen():
    with clock.frozen(NOW) as c:
        yield c


def days_ago(days: float) -> datetime:
    return clock.now() - timedelta(days=days)


async def add_members(
    session: AsyncSession,
    store: Store | None,
    n: int = 1,
    *,
    created_at: datetime | None = None,
    name: str = "Member",
) -> list[Member]:
    """`n` members whose home store is `store`, inserted directly."""
    members = []
    for _ in range(n):
        k = next(_seq)
        at = created_at or clock.now() - timedelta(days=400)
        members.append(
            Member(
                phone=f"+86137{k:08d}",
                card_number=f"99{k:014d}",
                name=f"{name} {k}",
                home_store_id=store.id if store else None,
                status="active",
                enrolled_via="staff",
                totp_secret="JBSWY3DPEHPK3PXP",
                created_at=at,
                updated_at=at,
            )
        )
    session.add_all(members)
    await session.flush()
    return members


async def buy(
    session: AsyncSession,
    store: Store,
    at: datetime,
    total: int,
    *,
    member: Member | None = None,
    returned: int = 0,
) -> Purchase:
    """A receipt inserted directly (no points engine)."""
    purchase = Purchase(
        store_id=store.id,
        receipt_no=f"T-{next(_seq)}",
        member_id=member.id if member else None,
        occurred_at=at,
        currency="CNY",
        total=total,
        returned_total=returned,
        points=0,
        bonus_points=0,
        points_reversed=0,
        created_at=at,
    )
    session.add(purchase)
    return purchase


async def cycle(
    session: AsyncSession, store: Store, member: Member, *, every: float, last: float, n: int
) -> None:
    """`n` purchases `every` days apart, the last one `last` days ago."""
    for i in range(n):
        await buy(session, store, days_ago(last + every * i), 1000, member=member)


async def ledger_row(session: AsyncSession, member: Member, kind: str, points: int, **kw: Any):
    entry = LedgerEntry(
        member_id=member.id,
        kind=kind,
        points=points,
        remaining=kw.pop("remaining", 0),
        matured=kw.pop("matured", True),
        source_type="test",
        actor="test",
        created_at=kw.pop("created_at", clock.now()),
        **kw,
    )
    session.add(entry)
    return entry


async def account(session: AsyncSession, member: Member, available: int, pending: int = 0):
    session.add(
        Account(member_id=member.id, available=available, pending=pending, updated_at=clock.now())
    )


def fresh_headers(settings, staff) -> dict[str, str]:
    """A bearer header issued at the current (frozen) time."""
    token, _ = org_service.issue_staff_token(settings, staff)
    return {"Authorization": f"Bearer {token}"}


async def refresh(session: AsyncSession) -> dict[str, int]:
    """Recompute the stored figures as the worker would, and commit (a savepoint in tests)."""
    await session.flush()
    row = await refresher.refresh(session, trigger="api")
    await session.commit()
    return row.counts or {}
