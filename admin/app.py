"""The staff console, mounted at /admin. Imports services; nothing imports it."""

from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin import session
from admin.routes import auth, campaigns, imports, insights, members, org, rewards, rules, till
from admin.routes import settings as programme
from admin.web import HERE, templates
from api.core.config import Settings
from api.core.errors import DomainError, Unauthorized

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class ConsoleApp(FastAPI):
    """A FastAPI app that, once mounted, shares the main app's state (settings, sessionmaker)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parent = scope.get("app")
        if parent is not None and parent is not self and hasattr(parent, "state"):
            self.state = parent.state
        await super().__call__(scope, receive, send)


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    if request.headers.get("hx-request"):
        return templates.TemplateResponse(
            request,
            "partials/alert.html",
            {"level": "error", "message": detail},
            status_code=status,
        )
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail, "base": request.scope["root_path"]},
        status_code=status,
    )


def _install_handlers(console: FastAPI) -> None:
    @console.exception_handler(Unauthorized)
    async def _sign_in_first(request: Request, exc: Unauthorized) -> Response:
        base = request.scope.get("root_path", "")
        login = f"{base}/login?next={quote(request.url.path, safe='')}"
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": login})
        return RedirectResponse(login, status_code=303)

    @console.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        titles = {403: "Not for your role", 404: "Not found", 409: "Conflict"}
        return _error_page(
            request,
            exc.status_code,
            titles.get(exc.status_code, "Something went wrong"),
            exc.detail,
        )

    @console.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
        )
        return _error_page(request, 422, "That did not look right", problems)

    @console.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = "Not found" if exc.status_code == 404 else "Something went wrong"
        return _error_page(request, exc.status_code, title, str(exc.detail))


class SecurityHeaders:
    """CSP (only this origin: no CDN can be reached) and no caching of pages with member data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", CSP)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_admin_app(settings: Settings) -> FastAPI:
    console = ConsoleApp(
        title="Loyalty console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(session.verify_csrf)],
    )
    console.state.settings = settings
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (
        auth,
        till,
        members,
        campaigns,
        insights,
        programme,
        rules,
        rewards,
        org,
        imports,
    ):
        console.include_router(module.router)
    _install_handlers(console)
    console.add_middleware(SecurityHeaders)
    console.add_middleware(session.ConsoleSessionMiddleware, settings=settings)
    return console
