"""Insights over HTTP: every figure comes from the stored refresh, scoped per staff role."""

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from api.core.access import PolicyRouter
from api.core.db import SessionDep
from api.core.errors import request_id
from api.core.pagination import Page, PageParams, page_params
from api.insights import service
from api.insights.dependencies import alert_in_scope
from api.insights.schemas import (
    AbcRead,
    AssignIn,
    ChurnRead,
    KpisRead,
    LapsedItem,
    LiabilityRead,
    OutcomeIn,
    PortfolioAssignIn,
    PortfolioRead,
    RefreshRead,
    RfmRead,
    SettingsRead,
    SettingsUpdate,
)
from api.org.dependencies import CurrentStaff, Managers, Marketing, StaffScope, current_staff

router = PolicyRouter(
    prefix="/v1/insights",
    tags=["insights"],
    dependencies=[Depends(current_staff)],
)


@router.post("/refresh", response_model=RefreshRead)
async def refresh(session: SessionDep, staff: Marketing) -> RefreshRead:
    """Recompute every stored insight now."""
    return RefreshRead.model_validate(await service.refresh_now(session, staff=staff))


@router.get("/refresh", response_model=RefreshRead | None)
async def last_refresh(session: SessionDep, _: Managers) -> RefreshRead | None:
    """The last refresh: when it ran, how long it took, what it counted."""
    last = await service.last_refresh(session)
    return RefreshRead.model_validate(last) if last else None


@router.get("/settings", response_model=SettingsRead)
async def get_settings(session: SessionDep, _: Managers) -> SettingsRead:
    """Thresholds: ABC shares, lapse grace days, churn days, portfolio size."""
    return SettingsRead.model_validate(await service.get_settings(session))


@router.put("/settings", response_model=SettingsRead)
async def put_settings(body: SettingsUpdate, session: SessionDep, _: Marketing) -> SettingsRead:
    """Change thresholds (fields left out stay); they apply at the next refresh."""
    return SettingsRead.model_validate(await service.change_settings(session, data=body))


@router.get("/abc", response_model=AbcRead, response_model_by_alias=True)
async def abc(session: SessionDep, _: Managers, scope: StaffScope) -> AbcRead:
    """ABC classes on trailing-12-month spend, with moves since the previous month."""
    return await service.abc_report(session, scope=scope)


@router.get("/rfm", response_model=RfmRead)
async def rfm(session: SessionDep, _: Managers, scope: StaffScope) -> RfmRead:
    """RFM segments (members, spend) and how many members hold each score."""
    return await service.rfm_report(session, scope=scope)


@router.get("/churn", response_model=ChurnRead)
async def churn(session: SessionDep, _: Managers, scope: StaffScope) -> ChurnRead:
    """Churned members, monthly churn rate and retention by enrolment cohort."""
    return await service.churn_report(session, scope=scope)


@router.get("/liability", response_model=LiabilityRead)
async def liability(session: SessionDep, _: Managers, scope: StaffScope) -> LiabilityRead:
    """Outstanding, pending and expiring points with their value, and breakage."""
    return await service.liability_report(session, scope=scope)


@router.get("/kpis", response_model=KpisRead)
async def kpis(session: SessionDep, _: Managers, scope: StaffScope) -> KpisRead:
    """Active members, member share of sales, repeat rate, baskets, member-day uplift, points."""
    return await service.kpis_report(session, scope=scope)


@router.get("/lapsed", response_model=Page[LapsedItem])
async def lapsed(
    request: Request,
    session: SessionDep,
    staff: Managers,
    scope: StaffScope,
    page: Annotated[PageParams, Depends(page_params)],
    status: Literal["open", "closed", "all"] = "open",
    assigned_staff_id: int | None = None,
    store_id: Annotated[int | None, Query(description="Members of this home store")] = None,
    mine: Annotated[bool, Query(description="Only alerts assigned to me")] = False,
) -> Page[LapsedItem]:
    """Lapse alerts of members in scope, newest first."""
    found = await service.list_lapsed(
        session,
        staff=staff,
        scope=scope,
        page=page,
        status=None if status == "all" else status,
        assigned_staff_id=staff.id if mine else assigned_staff_id,
        store_id=store_id,
        request_id=request_id(request),
    )
    return Page(items=found.items, next_cursor=found.next_cursor)


@router.post("/lapsed/{alert_id}/assign", response_model=LapsedItem)
async def assign(
    alert_id: int, body: AssignIn, session: SessionDep, staff: Managers, scope: StaffScope
) -> LapsedItem:
    """Give a lapse alert to a staff member of the member's home store."""
    return await service.assign_alert(
        session, alert_id=alert_id, staff_id=body.staff_id, scope=scope, by=staff
    )


@router.post(
    "/lapsed/{alert_id}/outcome",
    response_model=LapsedItem,
    dependencies=[Depends(alert_in_scope)],
)
async def outcome(
    alert_id: int, body: OutcomeIn, session: SessionDep, staff: CurrentStaff, scope: StaffScope
) -> LapsedItem:
    """Record a follow-up's outcome (the assignee, or a manager in scope)."""
    return await service.record_outcome(
        session, alert_id=alert_id, data=body, scope=scope, by=staff
    )


@router.get("/portfolio", response_model=PortfolioRead)
async def portfolio(
    request: Request,
    session: SessionDep,
    staff: CurrentStaff,
    scope: StaffScope,
    staff_id: Annotated[int | None, Query(description="Another staff member (managers)")] = None,
) -> PortfolioRead:
    """The members in my portfolio (or, for managers, a staff member's in scope)."""
    return await service.read_portfolio(
        session, caller=staff, staff_id=staff_id, scope=scope, request_id=request_id(request)
    )


@router.post("/portfolio", response_model=PortfolioRead)
async def place(
    body: PortfolioAssignIn, session: SessionDep, staff: Managers, scope: StaffScope
) -> PortfolioRead:
    """Put a member in a store staff member's portfolio (moving it from another)."""
    return await service.place_in_portfolio(
        session, staff_id=body.staff_id, member_id=body.member_id, scope=scope, caller=staff
    )
