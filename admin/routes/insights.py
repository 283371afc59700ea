"""Managers: the programme dashboard and the lapse follow-up list."""

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse

from admin import charts
from admin.web import ManagerPage, MarketerPage, Page
from api.core.db import SessionDep
from api.core.errors import DomainError, request_id
from api.core.pagination import PageParams
from api.insights import service as insights
from api.insights.schemas import OutcomeIn
from api.org import service as org_service
from api.org.models import Role
from api.org.scope import Scope

router = APIRouter()


async def scope_label(db: SessionDep, scope: Scope) -> str:
    if scope.store_id is not None:
        return (await org_service.get_store(db, scope.store_id)).name
    if scope.region_id is not None:
        return (await org_service.get_region(db, scope.region_id)).name
    return "All stores"


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(page: ManagerPage, db: SessionDep) -> HTMLResponse:
    """KPIs, ABC Pareto curve, points issued vs redeemed, liability and member-day uplift."""
    scope = org_service.scope_of(page.staff)
    kpis = await insights.kpis_report(db, scope=scope)
    abc = await insights.abc_report(db, scope=scope)
    liability = await insights.liability_report(db, scope=scope)
    return page.render(
        "insights/dashboard.html",
        kpis=kpis,
        abc=abc,
        liability=liability,
        scope_name=await scope_label(db, scope),
        can_refresh=page.staff.role in (Role.admin, Role.marketer),
        charts={
            "pareto": charts.pareto(abc),
            "points": charts.points_by_month(kpis),
            "liability": charts.liability(liability),
            "member_day": charts.member_day(kpis, page.currency),
        },
    )


@router.post("/insights/refresh")
async def refresh(page: MarketerPage, db: SessionDep) -> RedirectResponse:
    """Recompute every insight now."""
    done = await insights.refresh_now(db, staff=page.staff)
    took = f" in {done.duration_ms / 1000:.1f} s" if done.duration_ms else ""
    return page.redirect("/dashboard", ("success", f"Figures refreshed{took}."))


async def _assignable(db: SessionDep, page: Page) -> dict[int, list[tuple[int, str]]]:
    """Store staff who may take an alert, by store (managers see their scope's stores)."""
    stores = {
        s.id for s in await org_service.list_stores(db, scope=org_service.scope_of(page.staff))
    }
    by_store: dict[int, list[tuple[int, str]]] = {}
    for person in await org_service.list_staff(db):
        if (
            person.active
            and person.store_id in stores
            and person.role
            in (
                Role.store_manager,
                Role.cashier,
            )
        ):
            by_store.setdefault(person.store_id, []).append(
                (person.id, person.name or person.email)
            )
    return by_store


@router.get("/insights/lapsed", response_class=HTMLResponse)
async def lapsed(
    page: ManagerPage,
    db: SessionDep,
    status: Annotated[Literal["open", "closed", "all"], Query()] = "open",
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """Lapsing members: assign each alert to store staff and record how the call went."""
    scope = org_service.scope_of(page.staff)
    found = await insights.list_lapsed(
        db,
        staff=page.staff,
        scope=scope,
        page=PageParams(cursor=cursor, limit=50),
        status=None if status == "all" else status,
        assigned_staff_id=None,
        store_id=None,
        request_id=request_id(page.request),
    )
    stores = {s.id: s.name for s in await org_service.list_stores(db, scope=scope)}
    staff_names = {p.id: p.name or p.email for p in await org_service.list_staff(db)}
    return page.render(
        "insights/lapsed.html",
        items=found.items,
        next_cursor=found.next_cursor,
        status=status,
        stores=stores,
        staff_names=staff_names,
        assignable=await _assignable(db, page),
        scope_name=await scope_label(db, scope),
    )


@router.post("/insights/lapsed/{alert_id}/assign")
async def assign(
    alert_id: int,
    page: ManagerPage,
    db: SessionDep,
    staff_id: Annotated[int, Form()],
) -> RedirectResponse:
    """Give a lapse alert to a staff member of the member's home store."""
    scope = org_service.scope_of(page.staff)
    try:
        await insights.assign_alert(
            db, alert_id=alert_id, staff_id=staff_id, scope=scope, by=page.staff
        )
    except DomainError as e:
        return page.redirect("/insights/lapsed", ("error", e.detail))
    return page.redirect("/insights/lapsed", ("success", "Alert assigned."))


@router.post("/insights/lapsed/{alert_id}/outcome")
async def outcome(
    alert_id: int,
    page: ManagerPage,
    db: SessionDep,
    result: Annotated[Literal["reached", "not_reached"], Form()],
    reason: Annotated[str, Form(max_length=255)] = "",
) -> RedirectResponse:
    """Record how the follow-up call went."""
    scope = org_service.scope_of(page.staff)
    data = OutcomeIn(outcome=result, reason=reason.strip() or None)
    try:
        await insights.record_outcome(db, alert_id=alert_id, data=data, scope=scope, by=page.staff)
    except DomainError as e:
        return page.redirect("/insights/lapsed", ("error", e.detail))
    return page.redirect("/insights/lapsed", ("success", "Outcome recorded."))
