"""Domain errors and the JSON error envelope {"error", "detail", "request_id"}."""

import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("loyalty")


class DomainError(Exception):
    """Base for errors a service raises; the class name is the wire `error` code."""

    status_code = 400
    headers: dict[str, str] | None = None

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail or self.__class__.__doc__ or self.__class__.__name__
        self.extra = extra

    @property
    def code(self) -> str:
        return self.__class__.__name__


class NotFound(DomainError):
    """Not found."""

    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Unauthorized(DomainError):
    """Not authenticated."""

    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(DomainError):
    """Not allowed for this role."""

    status_code = 403


class InvalidInput(DomainError):
    status_code = 422


class TooManyRequests(DomainError):
    """Too many requests; try again later."""

    status_code = 429

    def __init__(self, detail: str = "", *, retry_after: int = 60, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers = {"Retry-After": str(max(1, retry_after))}


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(
    request: Request,
    status: int,
    error: str,
    detail: Any,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"error": error, "detail": detail, "request_id": request_id(request), **extra}
    return JSONResponse(body, status_code=status, headers=headers)


class RequestIdMiddleware:
    """Give each request an id (or keep the caller's X-Request-ID) and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming[:64] if incoming.isascii() and incoming.strip() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return error_response(
            request, exc.status_code, exc.code, exc.detail, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": e.get("msg", ""),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        return error_response(request, 422, "ValidationError", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        try:
            name = HTTPStatus(exc.status_code).phrase.replace(" ", "")
        except ValueError:
            name = "HTTPError"
        return error_response(
            request, exc.status_code, name, exc.detail, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error request_id=%s", request_id(request))
        return error_response(request, 500, "InternalError", "Unexpected server error.")
