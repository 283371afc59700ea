"""A campaign's results: reach, suppression by reason, sends, reads, conversions and lift.

A member converted when they bought anything within the attribution window (default 7 days,
LOYALTY_PUSH_ATTRIBUTION_DAYS, fixed per delivery when it is written) after the delivery was
due; the holdout's window starts when theirs would have. Lift = treated conversion rate ÷
holdout conversion rate − 1 (None without holdout conversions). Test sends are left out.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.loyalty.till.models import Purchase
from api.push.models import Campaign, CampaignRun, Delivery, InboxItem
from api.push.schemas import HoldoutRead, ReportRead
from api.push.suppression import RECEIVED


def _rate(converted: int, size: int) -> float | None:
    return converted / size if size else None


async def campaign_report(
    session: AsyncSession, campaign: Campaign, *, settings: Settings
) -> ReportRead:
    """Everything the report shows, computed from the deliveries in a few grouped queries."""
    own = and_(Delivery.campaign_id == campaign.id, Delivery.is_test.is_(False))
    bought = exists().where(
        Purchase.member_id == Delivery.member_id,
        Purchase.occurred_at >= Delivery.not_before,
        Purchase.occurred_at < Delivery.convert_until,
    )
    stmt = (
        select(
            Delivery.status,
            Delivery.reason,
            func.count(),
            func.sum(case((bought, 1), else_=0)),
            func.sum(Delivery.points_granted),
        )
        .where(own)
        .group_by(Delivery.status, Delivery.reason)
    )
    by_status: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    converted = {"treated": 0, "holdout": 0}
    points_cost = 0
    for status, reason, n, conv, points in await session.execute(stmt):
        by_status[status] = by_status.get(status, 0) + n
        points_cost += int(points or 0)
        if status == "suppressed":
            suppressed[reason or "unknown"] = suppressed.get(reason or "unknown", 0) + n
        elif status == "holdout":
            converted["holdout"] += int(conv or 0)
        elif status in RECEIVED:
            converted["treated"] += int(conv or 0)
    read_stmt = (
        select(func.count(InboxItem.id))
        .join(Delivery, Delivery.id == InboxItem.delivery_id)
        .where(own, InboxItem.read_at.is_not(None))
    )
    read = (await session.execute(read_stmt)).scalar_one()
    runs_stmt = select(func.count(CampaignRun.id)).where(
        CampaignRun.campaign_id == campaign.id, CampaignRun.is_test.is_(False)
    )
    treated = sum(by_status.get(s, 0) for s in RECEIVED)
    holdout = by_status.get("holdout", 0)
    rate, holdout_rate = _rate(converted["treated"], treated), _rate(converted["holdout"], holdout)
    lift = rate / holdout_rate - 1 if rate is not None and holdout_rate else None
    return ReportRead(
        targeted=sum(by_status.values()),
        suppressed=suppressed,
        sent=by_status.get("sent", 0),
        failed=by_status.get("failed", 0),
        read=read,
        converted=converted["treated"],
        holdout=HoldoutRead(size=holdout, converted=converted["holdout"]),
        lift=round(lift, 4) if lift is not None else None,
        points_cost=points_cost,
        treated=treated,
        pending=by_status.get("queued", 0) + by_status.get("sending", 0),
        inbox_only=by_status.get("inbox_only", 0),
        no_transport=by_status.get("no_transport", 0),
        no_device=by_status.get("no_device", 0),
        conversion_rate=rate,
        holdout_conversion_rate=holdout_rate,
        attribution_days=settings.push_attribution_days,
        runs=(await session.execute(runs_stmt)).scalar_one(),
    )


MAX_TIMELINE_DAYS = 60


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
