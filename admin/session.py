"""The console's staff session cookie (a short signed JWT) and CSRF tokens bound to it.

The cookie holds `{sub: staff id, typ: "console", sid: random}`; it is HttpOnly, SameSite=Lax,
and Secure outside development. `sid` names a server-side session row (`org_staff_session`,
stored as a digest) that every request checks, so sign-out, "sign out everywhere" and
deactivation end the session even for someone who kept a copy of the cookie. Its lifetime is
short and slides: a request in the second half of it (whose session is still live) gets a fresh
cookie with the same `sid`, and the row's expiry moves with it, so forms already open stay
valid. Each form carries `csrf_token = HMAC(secret, sid)` (htmx sends it as `X-CSRF-Token`);
before sign-in the sign-in form is bound the same way to a random pre-session cookie.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core import clock, security
from api.core.config import Settings
from api.core.errors import Forbidden

SESSION_COOKIE = "loyalty_console"
PRE_SESSION_COOKIE = "loyalty_console_pre"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_KIND = "console"


class CsrfRejected(Forbidden):
    """The form was not sent from this console session; reload the page and try again."""


def lifetime(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.staff_token_minutes)


def issue(settings: Settings, staff_id: int, sid: str) -> str:
    """The cookie of the console session `sid` (see api.org.signin.start_console_session)."""
    claims = {"sub": str(staff_id), "typ": TOKEN_KIND, "sid": sid}
    return security.encode_jwt(settings.secret_key, claims, lifetime(settings))


def csrf_token(settings: Settings, sid: str) -> str:
    return hmac.new(
        settings.secret_key.encode(), f"csrf:{sid}".encode(), hashlib.sha256
    ).hexdigest()


def cookie_header(settings: Settings, name: str, value: str, *, max_age: int) -> str:
    parts = [f"{name}={value}", "Path=/admin", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if settings.env != "development":
        parts.append("Secure")
    return "; ".join(parts)


def set_cookie(response: Any, settings: Settings, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/admin",
        httponly=True,
        samesite="lax",
        secure=settings.env != "development",
    )


def clear_cookie(response: Any, settings: Settings, name: str) -> None:
    response.delete_cookie(
        name, path="/admin", httponly=True, samesite="lax", secure=settings.env != "development"
    )


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header: treat as no cookies
                return {}
    return {k: m.value for k, m in jar.items()}


class ConsoleSessionMiddleware:
    """Reads the session cookie into request.state (console_staff_id, console_sid), renews a
    cookie past half its life, and gives a browser without a session a pre-session id."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        state = scope.setdefault("state", {})
        renew: str | None = None
        claims = security.decode_jwt(
            self.settings.secret_key, cookies.get(SESSION_COOKIE, ""), kind=TOKEN_KIND
        )
        if claims is not None and claims.get("sid"):
            state["console_staff_id"] = int(claims["sub"])
            state["console_sid"] = claims["sid"]
            half = lifetime(self.settings).total_seconds() / 2
            if claims["exp"] - clock.now().timestamp() < half:
                renew = issue(self.settings, int(claims["sub"]), claims["sid"])
                state["console_renew_for"] = lifetime(self.settings)
        pre = cookies.get(PRE_SESSION_COOKIE)
        new_pre = None
        if not pre or len(pre) > 64:
            pre = new_pre = secrets.token_urlsafe(16)
        state["console_pre_sid"] = pre

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # only a session the request found live (api.org.dependencies) is renewed
                if (
                    renew
                    and state.get("console_session_ok")
                    and not state.get("console_signed_out")
                ):
                    max_age = int(lifetime(self.settings).total_seconds())
                    headers.append(
                        "set-cookie",
                        cookie_header(self.settings, SESSION_COOKIE, renew, max_age=max_age),
                    )
                if new_pre:
                    headers.append(
                        "set-cookie",
                        cookie_header(self.settings, PRE_SESSION_COOKIE, new_pre, max_age=86400),
                    )
            await send(message)

        await self.app(scope, receive, send_with_cookies)


def session_id(request: Request) -> str:
    """The id CSRF tokens are bound to: the session's, else the pre-session's."""
    return getattr(request.state, "console_sid", None) or request.state.console_pre_sid


async def verify_csrf(request: Request) -> None:
    """Every state-changing request must carry this session's CSRF token (else 403)."""
    if request.method in SAFE_METHODS:
        return
    settings: Settings = request.app.state.settings
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    expected = csrf_token(settings, session_id(request))
    if not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRejected()
