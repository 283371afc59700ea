"""What the console needs that no domain service offers yet: a member's receipts, a campaign's
conversions over time (both read-only, reading those domains' tables), and the console's own
till terminal per store. Each is a candidate to move into its domain's service module
(loyalty.purchases, push.report, org.service).
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.models import Purchase
from api.org import service as org_service
from api.org.models import Store, Terminal
from api.push.models import Campaign, Delivery
from api.push.suppression import RECEIVED

CONSOLE_TERMINAL = "Console till"
MAX_TIMELINE_DAYS = 60


async def member_purchases(
    session: AsyncSession, member_id: int, *, limit: int = 50
) -> list[Purchase]:
    """The member's latest receipts, newest first."""
    stmt = (
        select(Purchase)
        .where(Purchase.member_id == member_id)
        .order_by(Purchase.occurred_at.desc(), Purchase.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


@dataclass(frozen=True)
class Timeline:
    days: list[date]
    treated: list[float]
    holdout: list[float]
    treated_size: int
    holdout_size: int


async def conversion_timeline(session: AsyncSession, campaign: Campaign, *, tz: str) -> Timeline:
    """Cumulative share of members who bought within their attribution window, by day."""
    first_purchase = (
        select(func.min(Purchase.occurred_at))
        .where(
            Purchase.member_id == Delivery.member_id,
            Purchase.occurred_at >= Delivery.not_before,
            Purchase.occurred_at < Delivery.convert_until,
        )
        .correlate(Delivery)
        .scalar_subquery()
    )
    stmt = select(Delivery.status, Delivery.not_before, first_purchase).where(
        Delivery.campaign_id == campaign.id,
        Delivery.is_test.is_(False),
        Delivery.status.in_((*RECEIVED, "holdout")),
    )
    zone = ZoneInfo(tz)
    sizes = {"treated": 0, "holdout": 0}
    converted: dict[str, dict[date, int]] = {"treated": {}, "holdout": {}}
    start: datetime | None = None
    for status, not_before, bought_at in await session.execute(stmt):
        group = "holdout" if status == "holdout" else "treated"
        sizes[group] += 1
        start = not_before if start is None else min(start, not_before)
        if bought_at is not None:
            day = clock.as_utc(bought_at).astimezone(zone).date()
            converted[group][day] = converted[group].get(day, 0) + 1
    if start is None:
        return Timeline([], [], [], 0, 0)
    first = clock.as_utc(start).astimezone(zone).date()
    last = max([clock.now().astimezone(zone).date(), *converted["treated"], *converted["holdout"]])
    last = min(last, first + timedelta(days=MAX_TIMELINE_DAYS - 1))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    series: dict[str, list[float]] = {}
    for group in ("treated", "holdout"):
        running, values = 0, []
        for day in days:
            running += converted[group].get(day, 0)
            values.append(round(running / sizes[group], 4) if sizes[group] else 0.0)
        series[group] = values
    return Timeline(days, series["treated"], series["holdout"], sizes["treated"], sizes["holdout"])


async def console_terminal(session: AsyncSession, store: Store) -> Terminal:
    """The store's terminal row for the console's cashier screen, created on first use.

    The till services (identify, till tokens, redemptions) are keyed by terminal, so the console
    acts as one terminal per store. Its API key is generated and thrown away unseen: only the
    console, which calls the services directly, ever acts as it. Revoking it in Organisation
    makes the next till action create a fresh one.
    """
    terminals = await org_service.list_terminals(session, store_id=store.id)
    terminal = next(
        (t for t in terminals if t.name == CONSOLE_TERMINAL and t.revoked_at is None), None
    )
    if terminal is None:
        terminal, _unseen_key = await org_service.create_terminal(
            session, store_id=store.id, name=CONSOLE_TERMINAL
        )
    return terminal
