"""Sign-in, sign-out and the landing redirect."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from admin import nav, session
from admin.web import read_flash, redirect, templates, url
from api.core.db import SessionDep
from api.core.deps import ClientIP
from api.org import service as org_service
from api.org import signin
from api.org import texts as t
from api.org.dependencies import CurrentStaff
from api.org.exceptions import BadCredentials, SignInLocked

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
    headers: dict[str, str] | None = None,
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
        headers=headers,
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
    ip: ClientIP,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=128)],
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Check e-mail and password (throttled like the API) and start a console session."""
    settings = request.app.state.settings
    try:
        staff = await signin.sign_in(
            db, settings=settings, email=email, password=password, client_ip=ip
        )
    except BadCredentials:
        return _login_page(
            request,
            error=t.text("bad_credentials"),
            email=email,
            next_path=next,
            status_code=401,
        )
    except SignInLocked as locked:
        return _login_page(
            request,
            error=locked.detail,
            email=email,
            next_path=next,
            status_code=429,
            headers=locked.headers,
        )
    lifetime = session.lifetime(settings)
    sid = await signin.start_console_session(db, staff=staff, lifetime=lifetime)
    target = _safe_next(request, next) or url(request, nav.home_for(staff.role))
    response = RedirectResponse(target, status_code=303)
    cookie = session.issue(settings, staff.id, sid)
    session.set_cookie(
        response, settings, session.SESSION_COOKIE, cookie, int(lifetime.total_seconds())
    )
    return response


@router.post("/logout")
async def logout(
    request: Request,
    db: SessionDep,
    everywhere: Annotated[str, Form(max_length=8)] = "",
) -> RedirectResponse:
    """End the console session (with `everywhere`, every session and API token too)."""
    sid = getattr(request.state, "console_sid", None)
    staff_id = getattr(request.state, "console_staff_id", None)
    message = "signed_out"
    if sid is not None and staff_id is not None:
        staff = await signin.staff_of_console_session(db, staff_id=staff_id, sid=sid)
        if staff is not None and everywhere:
            await org_service.end_everything(db, staff=staff)
            message = "signed_out_everywhere"
        else:
            await signin.end_console_session(db, sid=sid)
    request.state.console_signed_out = True
    response = redirect(request, "/login", ("info", t.text(message)))
    session.clear_cookie(response, request.app.state.settings, session.SESSION_COOKIE)
    return response
