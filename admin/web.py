"""Rendering for the console: templates, formatting filters, flash messages, and `Page`, the
per-request context (signed-in staff, programme currency and time zone, CSRF token, menu)."""

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from admin import nav, session
from api.core.config import Settings
from api.core.db import SessionDep
from api.loyalty.program import service as program_service
from api.org.dependencies import require_roles
from api.org.models import Role, Staff

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
FLASH_COOKIE = "loyalty_console_flash"
SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "HKD": "HK$", "JPY": "¥", "SGD": "S$"}
ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK"}


def exponent(currency: str) -> int:
    return 0 if currency in ZERO_DECIMAL else 2


def money(minor: int | None, currency: str = "CNY") -> str:
    """Minor units as text with the currency symbol: 123450 CNY → ¥1,234.50."""
    if minor is None:
        return "—"
    digits = exponent(currency)
    major = Decimal(minor).scaleb(-digits)
    sign = "−" if minor < 0 else ""
    return f"{sign}{SYMBOLS.get(currency, currency + ' ')}{abs(major):,.{digits}f}"


def parse_money(text: str, currency: str) -> int:
    """'12.5' → 1250 minor units; raises ValueError for anything that is not an amount."""
    try:
        value = Decimal(text.strip().replace(",", "").lstrip("¥$€£"))
    except InvalidOperation as e:
        raise ValueError(f"{text!r} is not an amount") from e
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not an amount")
    digits = exponent(currency)
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        raise ValueError(f"at most {digits} decimals")
    return int(minor.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def major(minor: int | None, currency: str = "CNY") -> str:
    """Minor units as a plain number for an input field: 1250 → '12.50'."""
    if minor is None:
        return ""
    digits = exponent(currency)
    return f"{Decimal(minor).scaleb(-digits):.{digits}f}"


def number(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,}"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def signed_percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f}%"


templates.env.filters.update(
    money=money, number=number, percent=percent, signed_percent=signed_percent, major=major
)


# ----------------------------------------------------------------------------- flash messages


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), f"flash:{payload}".encode(), hashlib.sha256).hexdigest()[:32]


def flash_cookie(settings: Settings, messages: list[tuple[str, str]]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(messages).encode()).decode()
    return f"{payload}.{_sign(settings.secret_key, payload)}"


def read_flash(request: Request) -> list[tuple[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE, "")
    payload, _, sig = raw.partition(".")
    settings: Settings = request.app.state.settings
    if not payload or not hmac.compare_digest(sig, _sign(settings.secret_key, payload)):
        return []
    try:
        return [tuple(m) for m in json.loads(base64.urlsafe_b64decode(payload))]  # type: ignore[misc]
    except ValueError:
        return []


def redirect(request: Request, url: str, *messages: tuple[str, str]) -> RedirectResponse:
    """303 to `url` (a path under /admin), carrying flash messages to the next page."""
    response = RedirectResponse(f"{request.scope.get('root_path', '')}{url}", status_code=303)
    if messages:
        settings: Settings = request.app.state.settings
        session.set_cookie(
            response, settings, FLASH_COOKIE, flash_cookie(settings, list(messages)), 60
        )
    return response


def url(request: Request, path: str) -> str:
    return f"{request.scope.get('root_path', '')}{path}"


# ----------------------------------------------------------------------------- page context


def local_time(value: datetime | date | None, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(tz)).strftime(fmt)
    return value.strftime("%Y-%m-%d")


@dataclass
class Page:
    """What every console page knows about the request it answers."""

    request: Request
    staff: Staff
    currency: str
    timezone: str

    @property
    def settings(self) -> Settings:
        return self.request.app.state.settings

    @property
    def csrf(self) -> str:
        return session.csrf_token(self.settings, session.session_id(self.request))

    def money(self, minor: int | None) -> str:
        return money(minor, self.currency)

    def parse_money(self, text: str) -> int:
        return parse_money(text, self.currency)

    def when(self, value: datetime | date | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return local_time(value, self.timezone, fmt)

    def url(self, path: str) -> str:
        return url(self.request, path)

    def render(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        flashes = read_flash(self.request)
        response = templates.TemplateResponse(
            self.request,
            template,
            {
                "page": self,
                "staff": self.staff,
                "menu": nav.menu_for(self.staff.role, self.request.url.path, self.url("")),
                "flashes": flashes,
                "csrf": self.csrf,
                "base": self.url(""),
                **values,
            },
            status_code=status_code,
        )
        if flashes:
            session.clear_cookie(response, self.settings, FLASH_COOKIE)
        return response

    def redirect(self, path: str, *messages: tuple[str, str]) -> RedirectResponse:
        return redirect(self.request, path, *messages)


def page_for(*roles: Role) -> Callable[..., Coroutine[Any, Any, Page]]:
    """Dependency: a Page for a signed-in staff member holding one of `roles` (else 403)."""
    check = require_roles(*roles)

    async def _page(
        request: Request, db: SessionDep, staff: Annotated[Staff, Depends(check)]
    ) -> Page:
        program = await program_service.get_program(db)
        return Page(request, staff, program.currency, program.timezone)

    return _page


ALL = tuple(Role)
MARKETING = (Role.admin, Role.marketer)
MANAGERS = (Role.admin, Role.marketer, Role.region_manager, Role.store_manager)
TILL = (Role.cashier, Role.store_manager)

AnyPage = Annotated[Page, Depends(page_for(*ALL))]
AdminPage = Annotated[Page, Depends(page_for(Role.admin))]
MarketerPage = Annotated[Page, Depends(page_for(*MARKETING))]
ManagerPage = Annotated[Page, Depends(page_for(*MANAGERS))]
TillPage = Annotated[Page, Depends(page_for(*TILL))]


def field_errors(error: ValidationError, prefix: str = "") -> dict[str, str]:
    """pydantic errors as {dotted field path: message}, for messages beside the fields."""
    found: dict[str, str] = {}
    for err in error.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        found.setdefault(f"{prefix}{loc}" if loc else "__all__", message)
    return found


def quoted(value: str) -> str:
    return quote(value, safe="")


async def attempt(db: Any, work: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[Any, Any]:
    """Run a service call in a savepoint: (result, None), or (None, the DomainError) with the
    call's writes undone. Hooks the call left for a failed request (e.g. counting a bad
    till code for the rate limit) run now, since the console shows the error and commits."""
    from api.core.errors import DomainError

    try:
        async with db.begin_nested():
            return await work(), None
    except DomainError as e:
        for hook in db.info.pop("failure_hooks", []):
            await hook(db)
        return None, e
