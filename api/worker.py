"""The background worker: one pass runs every due job; the loop repeats passes."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core import ratelimit, throttle
from api.core.config import Settings
from api.core.db import make_engine, make_sessionmaker, run_in_transaction
from api.insights import service as insights_service
from api.loyalty.ledger import jobs as ledger_jobs
from api.loyalty.rewards import service as rewards
from api.loyalty.till import redemptions
from api.members import identity
from api.org import signin as staff_signin
from api.push import jobs as push_jobs
from api.push import transport as push_transport

log = logging.getLogger("loyalty.worker")

Job = Callable[[AsyncSession], Awaitable[int]]


async def _housekeeping(session: AsyncSession) -> int:
    return (
        await ratelimit.prune(session)
        + await identity.prune_used_codes(session)
        + await throttle.prune(session)
        + await staff_signin.prune_console_sessions(session)
    )


JOBS: list[tuple[str, Job]] = [
    ("housekeeping", _housekeeping),
    ("release_lapsed_redemptions", redemptions.release_lapsed),
    ("expire_coupons", rewards.expire_coupons),
    ("mature_pending_points", ledger_jobs.mature_pending),
    ("expire_points", ledger_jobs.expire_lots),
    ("review_tiers", ledger_jobs.review_tiers),
    ("insights_refresh", insights_service.refresh_if_stale),
    ("push_schedule_runs", push_jobs.schedule_runs),
    ("push_dispatch", push_jobs.dispatch),
]


async def run_once(maker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """One pass over every job, each in its own transaction; returns rows touched per job."""
    done: dict[str, int] = {}
    for name, job in JOBS:
        try:
            done[name] = await run_in_transaction(maker, job)
        except Exception:
            log.exception("worker job %s failed; it will run again next pass", name)
    return done


async def loop(maker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Run passes forever, `worker_interval_seconds` apart."""
    while True:
        await run_once(maker)
        await asyncio.sleep(settings.worker_interval_seconds)


async def run(settings: Settings, *, once: bool = False) -> None:
    """`loyalty worker`: its own engine; one pass with --once, else the loop."""
    engine = make_engine(settings.database_url)
    maker = make_sessionmaker(engine)
    push_transport.announce(settings)
    try:
        if once:
            await run_once(maker)
        else:
            await loop(maker, settings)
    finally:
        await engine.dispose()
