"""A campaign's results: reach, suppression by reason, sends, reads, conversions and lift.

A member converted when they bought anything within the attribution window (default 7 days,
LOYALTY_PUSH_ATTRIBUTION_DAYS, fixed per delivery when it is written) after the delivery was
due; the holdout's window starts when theirs would have. Lift = treated conversion rate ÷
holdout conversion rate − 1 (None without holdout conversions). Test sends are left out.
"""

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.config import Settings
from api.loyalty.models import Purchase
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
