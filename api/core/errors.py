"""Domain errors and the JSON error envelope {"error", "detail", "request_id"}."""

import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, StatementError
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


class TokenExpired(Unauthorized):
    """The access token expired; get a new one (members: POST /v1/auth/refresh)."""

    headers = {
        "WWW-Authenticate": (
            'Bearer error="invalid_token", error_description="The access token expired"'
        )
    }


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


class FieldError(BaseModel):
    """One validation failure: where in the request, and why."""

    loc: list[str]
    msg: str
    type: str | None = None


class ErrorBody(BaseModel):
    """The error envelope of every non-2xx answer; some errors add fields (e.g. `purchase_id`)."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Machine-readable error code, e.g. `InsufficientPoints`.")
    detail: str | list[FieldError]
    request_id: str


# The error answers any route may give, documented once and applied to every router.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Bad request"),
        (401, "Not authenticated"),
        (403, "Not allowed for this role"),
        (404, "Not found"),
        (409, "Conflicts with the current state"),
        (413, "Request body too large"),
        (422, "Validation error (with field paths) or a refused value"),
        (429, "Too many requests; see Retry-After"),
    )
}


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


# SQLSTATEs that only a value sent by the client can cause: out of range, NUL, too long.
_BAD_VALUE_SQLSTATES = frozenset({"22001", "22003", "22021", "22P05"})
_OUT_OF_RANGE = "A number or text in the request is outside what the platform stores."


def _is_bad_client_value(exc: Exception) -> bool:
    """A database error caused by an unchecked value the client sent (a schema missed a bound)."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, OverflowError):  # SQLite: int beyond 64 bits
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(orig, "sqlstate", None)
    # asyncpg refuses out-of-range arguments itself (SQLSTATE 22000, "invalid input for ...")
    return sqlstate in _BAD_VALUE_SQLSTATES or (
        sqlstate == "22000" and "invalid input for query argument" in str(orig)
    )


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

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        log.warning("value out of range request_id=%s: %s", request_id(request), exc)
        return error_response(request, 422, "ValueOutOfRange", _OUT_OF_RANGE)

    @app.exception_handler(StatementError)
    async def _statement(request: Request, exc: StatementError) -> JSONResponse:
        if _is_bad_client_value(exc):
            log.warning("value refused by the database request_id=%s: %s", request_id(request), exc)
            return error_response(request, 422, "ValueOutOfRange", _OUT_OF_RANGE)
        raise exc  # a server error: on to the 500 handler, logged there

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error request_id=%s", request_id(request))
        return error_response(request, 500, "InternalError", "Unexpected server error.")
