"""Lapse alerts: follow-up tasks for members past their purchase cycle.

The rule itself is api.insights.audience.is_lapsed_definition (stored as
insights_member_stats.lapsed). At each refresh:
1. open alerts of members who bought again are closed;
2. each lapsed member gets one alert per lapse episode (UNIQUE(member, last purchase));
3. new alerts go to the member's portfolio owner, else round-robin to the store staff of the
   member's home store, starting with whoever has the fewest open alerts.
Managers in scope can reassign an alert to staff of the member's home store; the assignee or a
manager records the outcome (reached / not reached, with a reason).
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, exists, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.pagination import PageParams, Slice, make_page
from api.insights import exceptions as exc
from api.insights.models import LapseAlert, MemberStats, PortfolioEntry
from api.insights.portfolio import store_staff
from api.insights.schemas import LapsedItem, OutcomeIn
from api.insights.scoping import in_scope
from api.insights.sql import utc
from api.members.models import Member
from api.org.models import Role, Staff
from api.org.scope import Scope

MANAGER_ROLES = (Role.admin, Role.marketer, Role.region_manager, Role.store_manager)


async def close_bought_again(session: AsyncSession, *, now: datetime) -> int:
    """Close open alerts of members whose last purchase is newer than the alert's."""
    bought = exists().where(
        MemberStats.member_id == LapseAlert.member_id,
        MemberStats.last_purchase_at > LapseAlert.last_purchase_at,
    )
    result = await session.execute(
        update(LapseAlert)
        .where(LapseAlert.status == "open", bought)
        .values(status="closed", closed_at=utc(now))
    )
    return int(result.rowcount or 0)


async def open_new(session: AsyncSession, *, now: datetime) -> int:
    """One alert per lapsed member and episode (INSERT … SELECT of those without one)."""
    known = exists().where(
        LapseAlert.member_id == MemberStats.member_id,
        LapseAlert.last_purchase_at == MemberStats.last_purchase_at,
    )
    rows = select(
        MemberStats.member_id,
        MemberStats.home_store_id,
        MemberStats.last_purchase_at,
        MemberStats.usual_interval_days,
        MemberStats.days_since_last,
        utc(now),
        literal("open"),
    ).where(MemberStats.lapsed.is_(True), ~known)
    columns = [
        "member_id",
        "home_store_id",
        "last_purchase_at",
        "usual_interval_days",
        "days_since_last",
        "opened_at",
        "status",
    ]
    result = await session.execute(insert(LapseAlert).from_select(columns, rows))
    return int(result.rowcount or 0)


async def auto_assign(session: AsyncSession, *, now: datetime) -> int:
    """Give unassigned open alerts to the portfolio owner, else round-robin to store staff."""
    unassigned = (LapseAlert.status == "open", LapseAlert.assigned_staff_id.is_(None))
    owners = await session.execute(
        update(LapseAlert)
        .where(*unassigned, PortfolioEntry.member_id == LapseAlert.member_id)
        .values(
            assigned_staff_id=PortfolioEntry.staff_id, assigned_at=utc(now), assigned_by="portfolio"
        )
    )
    load = (
        select(
            Staff.id.label("staff_id"),
            Staff.store_id.label("store_id"),
            func.count(LapseAlert.id).label("open_alerts"),
        )
        .outerjoin(
            LapseAlert,
            and_(LapseAlert.assigned_staff_id == Staff.id, LapseAlert.status == "open"),
        )
        .where(store_staff())
        .group_by(Staff.id, Staff.store_id)
        .subquery("load")
    )
    staff = select(
        load.c.staff_id,
        load.c.store_id,
        (
            func.row_number().over(
                partition_by=load.c.store_id, order_by=(load.c.open_alerts, load.c.staff_id)
            )
            - 1
        ).label("pos"),
        func.count().over(partition_by=load.c.store_id).label("k"),
    ).subquery("staff")
    queue = (
        select(
            LapseAlert.id.label("alert_id"),
            Member.home_store_id.label("store_id"),
            (
                func.row_number().over(partition_by=Member.home_store_id, order_by=LapseAlert.id)
                - 1
            ).label("seq"),
        )
        .join(Member, Member.id == LapseAlert.member_id)
        .where(*unassigned, Member.home_store_id.is_not(None))
        .subquery("queue")
    )
    rest = await session.execute(
        update(LapseAlert)
        .where(
            LapseAlert.id == queue.c.alert_id,
            staff.c.store_id == queue.c.store_id,
            staff.c.pos == queue.c.seq % staff.c.k,
        )
        .values(
            assigned_staff_id=staff.c.staff_id, assigned_at=utc(now), assigned_by="least_loaded"
        )
    )
    return int(owners.rowcount or 0) + int(rest.rowcount or 0)


def _visible(scope: Scope) -> Sequence[object]:
    return (in_scope(Member.home_store_id, scope),)


async def list_alerts(
    session: AsyncSession,
    *,
    scope: Scope,
    page: PageParams,
    status: str | None,
    assigned_staff_id: int | None,
    store_id: int | None,
) -> Slice[LapsedItem]:
    """Alerts of members in scope, newest first (cursor page)."""
    stmt = (
        select(LapseAlert, Member.name, Member.home_store_id, MemberStats.days_since_last)
        .join(Member, Member.id == LapseAlert.member_id)
        .outerjoin(MemberStats, MemberStats.member_id == LapseAlert.member_id)
        .where(*_visible(scope))
    )
    if status is not None:
        stmt = stmt.where(LapseAlert.status == status)
    if assigned_staff_id is not None:
        stmt = stmt.where(LapseAlert.assigned_staff_id == assigned_staff_id)
    if store_id is not None:
        stmt = stmt.where(Member.home_store_id == store_id)
    if page.before_id is not None:
        stmt = stmt.where(LapseAlert.id < page.before_id)
    rows = (await session.execute(stmt.order_by(LapseAlert.id.desc()).limit(page.limit + 1))).all()
    items = [_item(alert, name, home, days) for alert, name, home, days in rows]
    return make_page(items, page.limit, lambda i: i.alert_id)


def _item(alert: LapseAlert, name: str | None, home: int | None, days: int | None) -> LapsedItem:
    return LapsedItem(
        alert_id=alert.id,
        member_id=alert.member_id,
        name=name,
        home_store_id=home,
        days_since_last=days if days is not None else alert.days_since_last,
        usual_interval_days=alert.usual_interval_days,
        last_purchase_at=alert.last_purchase_at,
        opened_at=alert.opened_at,
        status=alert.status,
        assigned_staff_id=alert.assigned_staff_id,
        assigned_by=alert.assigned_by,
        outcome=alert.outcome,
        outcome_reason=alert.outcome_reason,
        outcome_at=alert.outcome_at,
    )


async def _alert(session: AsyncSession, alert_id: int) -> tuple[LapseAlert, Member]:
    row = (
        await session.execute(
            select(LapseAlert, Member)
            .join(Member, Member.id == LapseAlert.member_id)
            .where(LapseAlert.id == alert_id)
        )
    ).first()
    if row is None:
        raise exc.AlertNotFound()
    return row[0], row[1]


async def _in_scope(session: AsyncSession, member: Member, scope: Scope) -> bool:
    if scope.is_global:
        return True
    stmt = select(Member.id).where(Member.id == member.id, *_visible(scope))
    return (await session.execute(stmt)).first() is not None


async def _read(session: AsyncSession, alert: LapseAlert, member: Member) -> LapsedItem:
    days = await session.scalar(
        select(MemberStats.days_since_last).where(MemberStats.member_id == alert.member_id)
    )
    return _item(alert, member.name, member.home_store_id, days)


async def assign(
    session: AsyncSession, *, alert_id: int, staff_id: int, scope: Scope, by: Staff
) -> LapsedItem:
    """Give an open alert to a staff member of the member's home store."""
    alert, member = await _alert(session, alert_id)
    if not await _in_scope(session, member, scope):
        raise exc.AlertNotFound()
    if alert.status != "open":
        raise exc.AlertClosed()
    target = await session.get(Staff, staff_id)
    if (
        target is None
        or not target.active
        or target.role not in (Role.store_manager, Role.cashier)
        or target.store_id is None
        or target.store_id != member.home_store_id
    ):
        raise exc.StaffNotInStore()
    alert.assigned_staff_id = target.id
    alert.assigned_at = clock.now()
    alert.assigned_by = f"staff:{by.id}"
    await session.flush()
    return await _read(session, alert, member)


async def record_outcome(
    session: AsyncSession, *, alert_id: int, data: OutcomeIn, scope: Scope, by: Staff
) -> LapsedItem:
    """Record how the follow-up went: the assignee or a manager in scope."""
    alert, member = await _alert(session, alert_id)
    if by.role in MANAGER_ROLES:
        if not await _in_scope(session, member, scope):
            raise exc.AlertNotFound()
    elif alert.assigned_staff_id != by.id:
        raise exc.NotYourAlert()
    alert.outcome = data.outcome
    alert.outcome_reason = data.reason
    alert.outcome_at = clock.now()
    alert.outcome_staff_id = by.id
    await session.flush()
    return await _read(session, alert, member)
