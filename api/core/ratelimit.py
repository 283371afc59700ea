"""Sliding-window rate limits kept in the database, so every replica sees the same counts."""

from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.db import on_failure
from api.core.errors import TooManyRequests
from api.core.models import RateHit

# Built once: on hot paths (every scan at the till) building the statement costs more than
# running it.
_COUNT = select(func.count()).where(
    RateHit.bucket == bindparam("bucket"),
    RateHit.key == bindparam("key"),
    RateHit.created_at > bindparam("since", type_=RateHit.created_at.type),
)


async def count(session: AsyncSession, bucket: str, key: str, window: timedelta) -> int:
    params = {"bucket": bucket, "key": key, "since": clock.now() - window}
    return int((await session.execute(_COUNT, params)).scalar_one())


async def enforce(
    session: AsyncSession, bucket: str, key: str, *, limit: int, window: timedelta, detail: str
) -> None:
    """Raise TooManyRequests when `key` already has `limit` hits in the window."""
    if await count(session, bucket, key, window) >= limit:
        raise TooManyRequests(detail, retry_after=int(window.total_seconds()))


async def hit(session: AsyncSession, bucket: str, key: str) -> int:
    """Record a hit inside the current transaction; returns its id."""
    row = RateHit(bucket=bucket, key=key, created_at=clock.now())
    session.add(row)
    await session.flush()
    return row.id


async def latest(session: AsyncSession, bucket: str, key: str) -> datetime | None:
    """When `key` was last hit in `bucket` (within the last two days, which prune keeps)."""
    stmt = select(func.max(RateHit.created_at)).where(
        RateHit.bucket == bucket,
        RateHit.key == key,
        RateHit.created_at > clock.now() - timedelta(days=2),
    )
    value = (await session.execute(stmt)).scalar_one_or_none()
    return None if value is None else clock.as_utc(value)


def hit_even_if_request_fails(session: AsyncSession, bucket: str, key: str) -> None:
    """Record a hit that survives the request's rollback (failed attempts must count)."""
    at = clock.now()

    async def _record(fresh: AsyncSession) -> None:
        fresh.add(RateHit(bucket=bucket, key=key, created_at=at))

    on_failure(session, _record)


async def prune(session: AsyncSession, *, older_than: timedelta = timedelta(days=2)) -> int:
    result = await session.execute(
        delete(RateHit).where(RateHit.created_at < clock.now() - older_than)
    )
    return result.rowcount or 0
