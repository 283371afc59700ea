"""Lockouts for guessable secrets (staff passwords), and per-key row locks that make a
check-then-act (a rate limit, a resend wait) atomic across replicas.

Each (scope, key) has one `core_auth_throttle` row. `lock_rows` creates the rows if needed and
locks them (`SELECT … FOR UPDATE` on PostgreSQL; SQLite runs one writer at a time anyway), so
concurrent requests for the same key queue instead of all passing the same check.

`reserve` counts an attempt *before* the secret is compared, in a transaction of its own
(`api.core.db.run_apart`) that commits at once: a thousand parallel guesses can start only as
many comparisons as the limit allows. The attempt that reaches the limit sets the lockout
(`lockout_seconds`, doubling with each lockout up to `max_seconds`); `succeeded` then undoes
what a correct guess was charged.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.db import insert_unless_exists
from api.core.models import AuthThrottle

Key = tuple[str, str]  # (scope, key)


@dataclass(frozen=True)
class Limit:
    """At most `failures` counted attempts for `key` before it is locked out."""

    scope: str
    key: str
    failures: int

    @property
    def id(self) -> Key:
        return (self.scope, self.key)


@dataclass(frozen=True)
class Lockout:
    seconds: int
    max_seconds: int
    forget_after: timedelta

    def length(self, lockouts: int) -> timedelta:
        """The n-th lockout (1-based): seconds, 2 × seconds, 4 × seconds, … capped."""
        return timedelta(seconds=min(self.seconds * 2 ** max(lockouts - 1, 0), self.max_seconds))


class Locked(Exception):
    """A key is locked out; `retry_after` seconds until it may try again."""

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(scope)
        self.scope = scope
        self.retry_after = max(1, retry_after)


@dataclass
class Reservation:
    """What one counted attempt did, so that a correct guess can be given back."""

    limits: Sequence[Limit]
    locked_now: set[Key] = field(default_factory=set)


async def lock_rows(session: AsyncSession, keys: Sequence[Key]) -> dict[Key, AuthThrottle]:
    """The throttle rows of `keys`, created when missing and locked until the transaction ends
    (always in the same order, so two requests locking the same keys cannot deadlock)."""
    wanted = sorted(set(keys))
    claim = insert_unless_exists(session, AuthThrottle, "scope", "key")
    now = clock.now()
    for scope, key in wanted:
        values = {"scope": scope, "key": key, "failures": 0, "lockouts": 0, "updated_at": now}
        await session.execute(claim, values)
    stmt = (
        select(AuthThrottle)
        .where(tuple_(AuthThrottle.scope, AuthThrottle.key).in_(wanted))
        .order_by(AuthThrottle.scope, AuthThrottle.key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    rows = (await session.execute(stmt)).scalars().all()
    return {(row.scope, row.key): row for row in rows}


async def reserve(session: AsyncSession, limits: Sequence[Limit], lockout: Lockout) -> Reservation:
    """Count one attempt against every limit, or raise Locked (counting nothing) while any of
    them is locked out. Run it with run_apart, before comparing the secret."""
    rows = await lock_rows(session, [limit.id for limit in limits])
    now = clock.now()
    waits = [
        (math.ceil((row.locked_until - now).total_seconds()), row.scope)
        for row in rows.values()
        if row.locked_until is not None and row.locked_until > now
    ]
    if waits:
        wait, scope = max(waits)
        raise Locked(scope, wait)
    reservation = Reservation(limits)
    for limit in limits:
        row = rows[limit.id]
        if now - row.updated_at > lockout.forget_after:  # a quiet day wipes the slate
            row.failures, row.lockouts = 0, 0
        row.failures += 1
        row.updated_at = now
        if row.failures >= limit.failures:
            row.lockouts += 1
            row.locked_until = now + lockout.length(row.lockouts)
            row.failures = 0
            reservation.locked_now.add(limit.id)
    await session.flush()
    return reservation


async def succeeded(
    session: AsyncSession, reservation: Reservation, *, reset: Sequence[str] = ()
) -> None:
    """The attempt was right: scopes in `reset` start over (e.g. the account), the others
    (e.g. the client address) only lose the attempt this one was charged."""
    rows = await lock_rows(session, [limit.id for limit in reservation.limits])
    for limit in reservation.limits:
        row = rows[limit.id]
        if limit.scope in reset:
            row.failures, row.lockouts, row.locked_until = 0, 0, None
        elif limit.id in reservation.locked_now:
            row.failures, row.lockouts = limit.failures - 1, max(row.lockouts - 1, 0)
            row.locked_until = None
        else:
            row.failures = max(row.failures - 1, 0)
    await session.flush()


async def prune(session: AsyncSession, *, older_than: timedelta = timedelta(days=7)) -> int:
    """Forget keys with no attempt for `older_than` and no lockout running."""
    now = clock.now()
    result = await session.execute(
        delete(AuthThrottle).where(
            AuthThrottle.updated_at < now - older_than,
            or_(AuthThrottle.locked_until.is_(None), AuthThrottle.locked_until < now),
        )
    )
    return result.rowcount or 0
