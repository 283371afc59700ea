"""Admins: regions, stores, POS terminals (key shown once, revoke) and staff with roles."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from admin.forms import Form
from admin.web import AdminPage, Page, attempt
from api.core.db import SessionDep
from api.org import service as org_service
from api.org.models import Role
from api.org.schemas import RegionCreate, StaffCreate, StoreCreate, TerminalCreate
from api.org.service import CONSOLE_TERMINAL

router = APIRouter()
ROLE_LABELS = {
    Role.admin: "Admin — everything",
    Role.marketer: "Marketer — campaigns, rewards, rules, insights",
    Role.region_manager: "Region manager — one region",
    Role.store_manager: "Store manager — one store",
    Role.cashier: "Cashier — the till of one store",
}


async def _org_page(
    page: Page, db: SessionDep, form: Form | None = None, status_code: int = 200
) -> HTMLResponse:
    regions = await org_service.list_regions(db)
    return page.render(
        "org/index.html",
        regions=regions,
        region_names={r.id: r.name for r in regions},
        stores=await org_service.list_stores(db),
        form=form or Form(),
        status_code=status_code,
    )


@router.get("/org", response_class=HTMLResponse)
async def index(page: AdminPage, db: SessionDep) -> HTMLResponse:
    """Regions and their stores."""
    return await _org_page(page, db)


@router.post("/org/regions", response_model=None)
async def add_region(page: AdminPage, db: SessionDep) -> HTMLResponse | RedirectResponse:
    """Add a region."""
    form = Form(await page.request.form())
    body = form.validate(RegionCreate, {"name": form.get("region.name")}, "region.")
    if body is not None:
        done, error = await attempt(db, lambda: org_service.create_region(db, data=body))
        if error is None:
            return page.redirect("/org", ("success", f"Region {done.name} added."))
        form.errors["region.name"] = error.detail
    return await _org_page(page, db, form, 422)


@router.post("/org/stores", response_model=None)
async def add_store(page: AdminPage, db: SessionDep) -> HTMLResponse | RedirectResponse:
    """Add a store to a region."""
    form = Form(await page.request.form())
    data = {k: form.get(f"store.{k}") for k in ("code", "name", "region_id", "timezone", "kind")}
    body = form.validate(StoreCreate, data, "store.")
    if body is not None:
        done, error = await attempt(db, lambda: org_service.create_store(db, data=body))
        if error is None:
            return page.redirect(f"/org/stores/{done.id}", ("success", f"Store {done.name} added."))
        form.errors["store.code" if "code" in error.detail else "store.region_id"] = error.detail
    return await _org_page(page, db, form, 422)


async def _store_page(page: Page, db: SessionDep, store_id: int, **extra: Any) -> HTMLResponse:
    store = await org_service.get_store(db, store_id)
    return page.render(
        "org/store.html",
        store=store,
        region=await org_service.get_region(db, store.region_id),
        terminals=await org_service.list_terminals(db, store_id=store.id),
        console_name=CONSOLE_TERMINAL,
        **extra,
    )


@router.get("/org/stores/{store_id}", response_class=HTMLResponse)
async def store(store_id: int, page: AdminPage, db: SessionDep) -> HTMLResponse:
    """A store and its POS terminals."""
    return await _store_page(page, db, store_id)


@router.post("/org/stores/{store_id}/terminals", response_class=HTMLResponse)
async def add_terminal(store_id: int, page: AdminPage, db: SessionDep) -> HTMLResponse:
    """Register a POS terminal; its API key is shown on this page once and never again."""
    form = Form(await page.request.form())
    body = form.validate(TerminalCreate, {"name": form.get("name")})
    if body is None:
        return await _store_page(page, db, store_id, errors=form.errors, status_code=422)
    terminal, key = await org_service.create_terminal(db, store_id=store_id, name=body.name)
    return await _store_page(page, db, store_id, new_terminal=terminal, new_key=key)


@router.post("/org/terminals/{terminal_id}/revoke")
async def revoke_terminal(terminal_id: int, page: AdminPage, db: SessionDep) -> RedirectResponse:
    """Revoke a terminal; its key is refused from then on."""
    terminal = await org_service.revoke_terminal(db, terminal_id)
    return page.redirect(
        f"/org/stores/{terminal.store_id}", ("success", f"Terminal {terminal.name} revoked.")
    )


async def _staff_page(
    page: Page, db: SessionDep, form: Form | None = None, status_code: int = 200
) -> HTMLResponse:
    stores = await org_service.list_stores(db)
    regions = await org_service.list_regions(db)
    return page.render(
        "org/staff.html",
        people=await org_service.list_staff(db),
        stores=stores,
        regions=regions,
        store_names={s.id: s.name for s in stores},
        region_names={r.id: r.name for r in regions},
        roles=ROLE_LABELS,
        form=form or Form(),
        status_code=status_code,
    )


@router.get("/org/staff", response_class=HTMLResponse)
async def staff(page: AdminPage, db: SessionDep) -> HTMLResponse:
    """Staff accounts and their roles."""
    return await _staff_page(page, db)


@router.post("/org/staff", response_model=None)
async def add_staff(page: AdminPage, db: SessionDep) -> HTMLResponse | RedirectResponse:
    """Create a staff account with a role and, for managers and cashiers, a scope."""
    form = Form(await page.request.form())
    data = {k: form.text(k) for k in ("email", "password", "name", "role", "region_id", "store_id")}
    data["name"] = data["name"] or ""
    body = form.validate(StaffCreate, {k: v for k, v in data.items() if v is not None})
    if body is not None:
        done, error = await attempt(db, lambda: org_service.create_staff(db, data=body))
        if error is None:
            return page.redirect(
                "/org/staff", ("success", f"{done.email} can now sign in as {done.role}.")
            )
        key = (
            "email"
            if "e-mail" in error.detail
            else ("store_id" if "store" in error.detail else "region_id")
        )
        form.errors[key] = error.detail
    return await _staff_page(page, db, form, 422)
