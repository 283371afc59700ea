"""Sign-in, sign-out and the landing redirect."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from admin import nav, session
from admin.web import read_flash, redirect, templates, url
from api.core.db import SessionDep
from api.org import service as org_service
from api.org.dependencies import CurrentStaff
from api.org.exceptions import BadCredentials

router = APIRouter()


def _safe_next(request: Request, target: str | None) -> str | None:
    base = request.scope.get("root_path", "")
    if target and target.startswith(base + "/") and not target.startswith("//"):
        return target
    return None


def _login_page(
    request: Request,
    *,
    error: str | None = None,
    email: str = "",
    next_path: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = request.app.state.settings
    response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "csrf": session.csrf_token(settings, session.session_id(request)),
            "base": url(request, ""),
            "next": _safe_next(request, next_path or request.query_params.get("next")) or "",
            "email": email,
            "error": error,
            "flashes": read_flash(request),
            "minutes": settings.staff_token_minutes,
        },
        status_code=status_code,
    )
    return response


@router.get("/", include_in_schema=False)
async def home(staff: CurrentStaff, request: Request) -> RedirectResponse:
    """The signed-in staff member's start page (the till for cashiers)."""
    return redirect(request, nav.home_for(staff.role))


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    """The sign-in page."""
    return _login_page(request)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    db: SessionDep,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=128)],
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Check e-mail and password and start a console session."""
    try:
        staff = await org_service.authenticate_staff(db, email=email, password=password)
    except BadCredentials:
        return _login_page(
            request,
            error="Incorrect e-mail or password.",
            email=email,
            next_path=next,
            status_code=401,
        )
    settings = request.app.state.settings
    target = _safe_next(request, next) or url(request, nav.home_for(staff.role))
    response = RedirectResponse(target, status_code=303)
    max_age = int(session.lifetime(settings).total_seconds())
    session.set_cookie(
        response, settings, session.SESSION_COOKIE, session.issue(settings, staff.id), max_age
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    """End the console session."""
    request.state.console_signed_out = True
    response = redirect(request, "/login", ("info", "You are signed out."))
    session.clear_cookie(response, request.app.state.settings, session.SESSION_COOKIE)
    return response
