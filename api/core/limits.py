"""Refuse hostile requests before they are parsed: bodies over the size limit (413) and NUL
characters in the path, query string or body (422; PostgreSQL cannot store them in text)."""

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BATCH_PATHS = ("/v1/pos/purchases/batch",)
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


def _limit(scope: Scope, content_type: bytes) -> int:
    settings = scope["app"].state.settings
    if content_type.startswith(b"multipart/form-data"):
        return int(settings.max_upload_bytes)
    if scope["path"] in BATCH_PATHS:
        return int(settings.max_batch_body_bytes)
    return int(settings.max_body_bytes)


def _has_nul(body: bytes, content_type: bytes) -> bool:
    if content_type.startswith(b"multipart/form-data"):
        return False  # uploaded files are checked by their importer
    if b"\x00" in body:
        return True
    if content_type.startswith(b"application/x-www-form-urlencoded"):
        return b"%00" in body
    return b"\\u0000" in body and _JSON_NUL.search(body) is not None


def _nul_in_url(scope: Scope) -> str | None:
    if "\x00" in scope["path"] or b"%00" in scope.get("raw_path", b""):
        return "path"
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        return "query"
    return None


async def _reply(scope: Scope, send: Send, status: int, error: str, detail: Any) -> None:
    request_id = scope.get("state", {}).get("request_id", "")
    body = json.dumps({"error": error, "detail": detail, "request_id": request_id}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _nul_detail(where: str) -> list[dict[str, Any]]:
    return [{"loc": [where], "msg": "text may not contain NUL (\\u0000)", "type": "nul_character"}]


class RequestLimitsMiddleware:
    """Reads the body up to the limit (Content-Length first, then counted as it streams) and
    hands it on in one piece; nothing is parsed or stored for a refused request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = _nul_in_url(scope)
        if where is not None:
            await _reply(scope, send, 422, "ValidationError", _nul_detail(where))
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return

        content_type = _header(scope, b"content-type").lower()
        limit = _limit(scope, content_type)
        too_large = f"The request body is larger than {limit} bytes."
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await _reply(scope, send, 413, "PayloadTooLarge", too_large)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _reply(scope, send, 413, "PayloadTooLarge", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _has_nul(body, content_type):
            await _reply(scope, send, 422, "ValidationError", _nul_detail("body"))
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
