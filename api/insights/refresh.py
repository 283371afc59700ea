"""Recomputing every stored figure: on demand (POST /v1/insights/refresh) and by the worker
when the last refresh is more than 24 hours old. One refresh is one transaction, so readers
see the old figures until it commits; on PostgreSQL an advisory lock keeps replicas from
refreshing at the same time (SQLite's BEGIN IMMEDIATE already serialises writers)."""

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.db import is_postgres
from api.insights import (
    abc,
    churn,
    figures,
    kpis,
    lapse,
    liability,
    member_day,
    portfolio,
    rfm,
    stats,
)
from api.insights.models import Refresh
from api.insights.periods import last_months, month_start
from api.insights.settings import get_settings
from api.loyalty.program import service as program_service

log = logging.getLogger("loyalty.insights")

STALE_AFTER = timedelta(hours=24)
LOCK_KEY = 0x1A51_6875  # pg advisory lock for insight refreshes
# The refresh sorts and hashes every purchase of the year in a few statements; at millions of
# rows the 4 MB default (or a server's small setting) sends those to disk. Local to its transaction.
WORK_MEM = "256MB"


async def refresh(session: AsyncSession, *, trigger: str, staff_id: int | None = None) -> Refresh:
    """Recompute all member figures, classes, segments, store figures, portfolios and alerts."""
    if is_postgres(session):
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        await session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    started = time.perf_counter()
    now = clock.now()
    options = await get_settings(session)
    program = await program_service.get_program(session)
    months = last_months(now, program.timezone)
    counts: dict[str, int] = {}

    counts["members"] = await stats.rebuild_member_stats(
        session, now=now, churn_days=options.churn_days
    )
    await stats.update_purchase_cycles(session, now=now)
    counts["lapsed"] = await stats.update_lapsed(session, grace_days=options.lapse_grace_days)
    await abc.classify(session, a_percent=options.abc_a_percent, b_percent=options.abc_b_percent)
    await abc.record_month(session, month=month_start(now, program.timezone))
    await rfm.score(session)

    await figures.clear(session)
    await churn.compute_monthly_churn(
        session, now=now, months=months, churn_days=options.churn_days
    )
    await churn.compute_cohorts(session, now=now, months=months)
    await liability.compute(session, now=now)
    await kpis.compute_sales(session, now=now, months=months)
    await kpis.compute_points(session, now=now, months=months)
    counts["member_days"] = await member_day.compute(session, now=now)

    counts["portfolio_added"] = await portfolio.maintain(
        session, size=options.portfolio_size, now=now
    )
    counts["alerts_closed"] = await lapse.close_bought_again(session, now=now)
    counts["alerts_opened"] = await lapse.open_new(session, now=now)
    counts["alerts_assigned"] = await lapse.auto_assign(session, now=now)

    duration_ms = int((time.perf_counter() - started) * 1000)
    row = Refresh(
        trigger=trigger,
        staff_id=staff_id,
        started_at=now,
        finished_at=clock.now(),
        duration_ms=duration_ms,
        counts=counts,
    )
    session.add(row)
    await session.flush()
    log.info("insights refreshed by %s in %d ms: %s", trigger, duration_ms, counts)
    return row


async def last_refresh(session: AsyncSession) -> Refresh | None:
    """The most recent finished refresh."""
    stmt = (
        select(Refresh)
        .where(Refresh.finished_at.is_not(None))
        .order_by(Refresh.finished_at.desc(), Refresh.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def computed_at(session: AsyncSession) -> datetime | None:
    """When the stored figures were last refreshed (None before the first refresh)."""
    return await session.scalar(select(func.max(Refresh.finished_at)))


async def refresh_if_stale(session: AsyncSession) -> int:
    """Worker job: refresh when the last refresh is older than 24 h; returns 1 if it ran."""
    if is_postgres(session):
        got = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        if not got:
            return 0
    last = await computed_at(session)
    if last is not None and clock.now() - last < STALE_AFTER:
        return 0
    await refresh(session, trigger="worker")
    return 1
