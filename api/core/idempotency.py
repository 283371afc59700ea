"""Idempotency-Key: the same key and body replay the first response; another body is refused."""

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.db import insert_unless_exists
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


@dataclass(frozen=True)
class Once:
    """One mutation of one caller, run once per Idempotency-Key (see `run_once`); routers get
    it from the caller's dependency (`TerminalOnce`, `MemberOnce`), which fixes the scope."""

    session: AsyncSession
    request: Request
    scope: str
    key: str | None

    async def __call__(
        self, work: Callable[[], Awaitable[Any]], *, body: Any = None, status_code: int = 200
    ) -> Any:
        return await run_once(
            self.session,
            self.request,
            scope=self.scope,
            key=self.key,
            body=body,
            work=work,
            status_code=status_code,
        )


class IdempotencyKeyReused(InvalidInput):
    """This Idempotency-Key was already used with a different request body."""


def _encode(value: Any, *, exclude_unset: bool = False) -> Any:
    if isinstance(value, BaseModel):  # pydantic's own serialiser is far cheaper
        return value.model_dump(mode="json", exclude_unset=exclude_unset)
    return jsonable_encoder(value, exclude_unset=exclude_unset)


def request_fingerprint(request: Request, body: Any) -> str:
    payload = json.dumps(
        # exclude_unset: an explicit null (clear the field) is another body than a missing field
        [request.method, request.url.path, _encode(body, exclude_unset=True)],
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
    A conflicting insert does nothing (no savepoint); the stored record is read only then.
    """
    if not key:
        return await work()
    fingerprint = request_fingerprint(request, body)
    claim = insert_unless_exists(session, IdempotencyRecord, "scope", "key")
    values = {"scope": scope, "key": key, "request_hash": fingerprint, "created_at": clock.now()}
    for _ in range(3):  # the conflicting row may be pruned between our INSERT and SELECT
        record_id = (
            await session.execute(claim.returning(IdempotencyRecord.id), values)
        ).scalar_one_or_none()
        if record_id is not None:
            break
        existing = await _stored(session, scope, key)
        if existing is not None:
            return _replay(existing, fingerprint)
    else:  # pragma: no cover - pruned three times over
        raise RuntimeError("idempotency key kept conflicting without a stored record")
    result = await work()
    response_body = _encode(result)
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id)
        .values(status_code=status_code, response_body=response_body)
    )
    return JSONResponse(response_body, status_code=status_code)
