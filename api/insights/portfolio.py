"""Portfolios: each staff member of a store (store manager or cashier) looks after up to N of
the store's members (insights_settings.portfolio_size, default 15).

At every refresh, entries whose staff member left or whose member moved to another home store
are dropped, portfolios over N are trimmed (automatic entries go first), and free places are
filled with the store's highest-spending members not yet in a portfolio: staff in id order,
members by trailing-12-month spend, as one INSERT … SELECT matching running capacity to rank.
Managers can also place a member by hand (source "manual").
"""

from datetime import datetime

from sqlalchemy import and_, case, delete, exists, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.insights import exceptions as exc
from api.insights.models import LapseAlert, MemberStats, PortfolioEntry
from api.insights.schemas import PortfolioItem, PortfolioRead
from api.insights.sql import utc
from api.members.models import Member
from api.org import service as org_service
from api.org.models import Role, Staff, Store
from api.org.scope import Scope

STORE_ROLES = (Role.store_manager.value, Role.cashier.value)


def store_staff() -> object:
    """Conditions for an active staff member who works at one store."""
    return and_(Staff.active.is_(True), Staff.store_id.is_not(None), Staff.role.in_(STORE_ROLES))


async def maintain(session: AsyncSession, *, size: int, now: datetime) -> int:
    """Drop stale entries, trim to `size`, fill free places; returns entries added."""
    P = PortfolioEntry
    still_valid = exists().where(
        Member.id == P.member_id,
        Staff.id == P.staff_id,
        store_staff(),
        Staff.store_id == Member.home_store_id,
    )
    await session.execute(delete(P).where(~still_valid))
    order = (case((P.source == "manual", 0), else_=1), P.assigned_at, P.member_id)
    ranked = select(
        P.member_id, func.row_number().over(partition_by=P.staff_id, order_by=order).label("rn")
    ).subquery("ranked")
    over = select(ranked.c.member_id).where(ranked.c.rn > size)
    await session.execute(delete(P).where(P.member_id.in_(over)))

    free = (
        select(
            Staff.id.label("staff_id"),
            Staff.store_id.label("store_id"),
            (size - func.count(P.member_id)).label("free"),
        )
        .outerjoin(P, P.staff_id == Staff.id)
        .where(store_staff())
        .group_by(Staff.id, Staff.store_id)
        .having(func.count(P.member_id) < size)
        .subquery("free")
    )
    upto = func.sum(free.c.free).over(
        partition_by=free.c.store_id, order_by=free.c.staff_id, rows=(None, 0)
    )
    slots = select(
        free.c.staff_id, free.c.store_id, (upto - free.c.free).label("after"), upto.label("upto")
    ).subquery("slots")
    candidates = (
        select(
            MemberStats.member_id,
            MemberStats.home_store_id,
            func.row_number()
            .over(
                partition_by=MemberStats.home_store_id,
                order_by=(MemberStats.spend_12m.desc(), MemberStats.member_id),
            )
            .label("rn"),
        )
        .where(
            MemberStats.spend_12m > 0,
            MemberStats.home_store_id.is_not(None),
            ~exists().where(P.member_id == MemberStats.member_id),
        )
        .subquery("candidates")
    )
    rows = select(
        candidates.c.member_id,
        slots.c.staff_id,
        candidates.c.home_store_id,
        literal("auto"),
        utc(now),
    ).join(
        slots,
        and_(
            slots.c.store_id == candidates.c.home_store_id,
            candidates.c.rn > slots.c.after,
            candidates.c.rn <= slots.c.upto,
        ),
    )
    result = await session.execute(
        insert(P).from_select(["member_id", "staff_id", "store_id", "source", "assigned_at"], rows)
    )
    return int(result.rowcount or 0)


async def staff_in_scope(session: AsyncSession, staff_id: int, scope: Scope) -> Staff:
    """A staff member of a store in the scope (404 otherwise)."""
    staff = await session.get(Staff, staff_id)
    store = await session.get(Store, staff.store_id) if staff and staff.store_id else None
    if staff is None or store is None or not org_service.in_scope(scope, store):
        raise exc.StaffNotFound()
    return staff


async def read(
    session: AsyncSession, *, caller: Staff, staff_id: int | None, scope: Scope, size: int
) -> PortfolioRead:
    """A staff member's portfolio: the caller's own, or (for managers) a staff member's in scope."""
    owner_id = staff_id if staff_id is not None else caller.id
    if owner_id != caller.id:
        if caller.role not in (Role.admin, Role.marketer, Role.region_manager, Role.store_manager):
            raise exc.NotYourPortfolio()
        await staff_in_scope(session, owner_id, scope)
    open_alert = (
        select(func.max(LapseAlert.id))
        .where(LapseAlert.member_id == PortfolioEntry.member_id, LapseAlert.status == "open")
        .scalar_subquery()
    )
    stmt = (
        select(PortfolioEntry.member_id, Member, MemberStats, open_alert)
        .join(Member, Member.id == PortfolioEntry.member_id)
        .outerjoin(MemberStats, MemberStats.member_id == PortfolioEntry.member_id)
        .where(PortfolioEntry.staff_id == owner_id)
        .order_by(MemberStats.spend_12m.desc(), PortfolioEntry.member_id)
    )
    items = []
    for member_id, member, stats, alert_id in (await session.execute(stmt)).all():
        items.append(
            PortfolioItem(
                member_id=member_id,
                name=member.name,
                home_store_id=member.home_store_id,
                abc_class=stats.abc_class if stats else None,
                rfm_segment=stats.rfm_segment if stats else None,
                last_purchase_at=stats.last_purchase_at if stats else None,
                days_since_last=stats.days_since_last if stats else None,
                usual_interval_days=stats.usual_interval_days if stats else None,
                lapsed=bool(stats and stats.lapsed),
                open_alert_id=alert_id,
            )
        )
    return PortfolioRead(staff_id=owner_id, capacity=size, items=items)


async def place(
    session: AsyncSession, *, staff_id: int, member_id: int, scope: Scope, size: int
) -> PortfolioEntry:
    """Put a member in a store staff member's portfolio by hand (moving it from another)."""
    member = await session.get(Member, member_id)
    home = (
        await session.get(Store, member.home_store_id) if member and member.home_store_id else None
    )
    if home is None or not org_service.in_scope(scope, home):
        raise exc.MemberNotFound()  # out of scope looks like missing
    staff = await staff_in_scope(session, staff_id, scope)
    if member.home_store_id != staff.store_id or not staff.active or staff.role not in STORE_ROLES:
        raise exc.StaffNotInStore()
    held = await session.scalar(
        select(func.count()).where(
            PortfolioEntry.staff_id == staff_id, PortfolioEntry.member_id != member_id
        )
    )
    if int(held or 0) >= size:
        raise exc.PortfolioFull()
    await session.execute(delete(PortfolioEntry).where(PortfolioEntry.member_id == member_id))
    entry = PortfolioEntry(
        member_id=member_id,
        staff_id=staff_id,
        store_id=staff.store_id,
        source="manual",
        assigned_at=clock.now(),
    )
    session.add(entry)
    await session.flush()
    return entry
