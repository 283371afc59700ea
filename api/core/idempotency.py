"""Idempotency-Key: the same key and body replay the first response; another body is refused."""

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.errors import InvalidInput
from api.core.models import IdempotencyRecord

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retry-safe key: the same key with the same body returns the first response.",
    ),
]


class IdempotencyKeyReused(InvalidInput):
    """This Idempotency-Key was already used with a different request body."""


def request_fingerprint(request: Request, body: Any) -> str:
    payload = json.dumps(
        # exclude_unset: an explicit null (clear the field) is another body than a missing field
        [request.method, request.url.path, jsonable_encoder(body, exclude_unset=True)],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


async def _stored(session: AsyncSession, scope: str, key: str) -> IdempotencyRecord | None:
    stmt = select(IdempotencyRecord).where(
        IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def _replay(record: IdempotencyRecord, fingerprint: str) -> JSONResponse:
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    return JSONResponse(
        record.response_body,
        status_code=record.status_code or 200,
        headers={"Idempotent-Replayed": "true"},
    )


async def run_once(
    session: AsyncSession,
    request: Request,
    *,
    scope: str,
    key: str | None,
    body: Any,
    work: Callable[[], Awaitable[Any]],
    status_code: int = 200,
) -> Any:
    """Run `work` once per (scope, key); a retry gets the stored response.

    The key row is inserted before the work, inside the request's transaction: a concurrent
    retry blocks on the unique key until the first commits, then replays its response. If
    the first request fails, its row rolls back with it and a retry runs afresh.
    """
    if not key:
        return await work()
    fingerprint = request_fingerprint(request, body)
    existing = await _stored(session, scope, key)
    if existing is not None:
        return _replay(existing, fingerprint)
    record = IdempotencyRecord(
        scope=scope, key=key, request_hash=fingerprint, created_at=clock.now()
    )
    try:
        async with session.begin_nested():
            session.add(record)
    except IntegrityError:
        existing = await _stored(session, scope, key)
        if existing is None:
            raise
        return _replay(existing, fingerprint)
    result = await work()
    record.status_code = status_code
    record.response_body = jsonable_encoder(result)
    await session.flush()
    return JSONResponse(record.response_body, status_code=status_code)
