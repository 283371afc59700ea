"""Writing and reading the additive per-store figures (insights_store_figure)."""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Date,
    Integer,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from api.insights.models import StoreFigure
from api.insights.scoping import in_scope
from api.org.scope import Scope

COLUMNS = ["measure", "period", "bucket", "store_id", "value"]


async def clear(session: AsyncSession) -> None:
    await session.execute(delete(StoreFigure))


async def insert_from(
    session: AsyncSession,
    source: CTE,
    measures: Mapping[str, str],
    *,
    store: str = "store_id",
    period: str | None = None,
    bucket: str | None = None,
) -> None:
    """One INSERT … SELECT: a row per source row and measure (measure name → value column)."""
    selects = [
        select(
            literal(measure).label("measure"),
            source.c[period] if period else null().cast(Date),
            source.c[bucket] if bucket else null().cast(Integer),
            source.c[store],
            func.coalesce(source.c[column], 0).cast(BigInteger),
        )
        for measure, column in measures.items()
    ]
    stmt = selects[0] if len(selects) == 1 else union_all(*selects)
    await session.execute(insert(StoreFigure).from_select(COLUMNS, stmt))


async def add_rows(session: AsyncSession, rows: Iterable[dict[str, Any]]) -> None:
    """Figures computed outside SQL (member-day sales per store)."""
    batch = list(rows)
    if batch:
        await session.execute(insert(StoreFigure), batch)


Key = tuple[str, date | None, int | None]


async def totals(session: AsyncSession, measures: Iterable[str], scope: Scope) -> dict[Key, int]:
    """SUM(value) per (measure, period, bucket) over the stores in scope."""
    stmt = (
        select(
            StoreFigure.measure,
            StoreFigure.period,
            StoreFigure.bucket,
            func.sum(StoreFigure.value),
        )
        .where(StoreFigure.measure.in_(list(measures)), in_scope(StoreFigure.store_id, scope))
        .group_by(StoreFigure.measure, StoreFigure.period, StoreFigure.bucket)
    )
    out: dict[Key, int] = defaultdict(int)
    for measure, period, bucket, value in (await session.execute(stmt)).all():
        out[(measure, period, bucket)] = int(value or 0)
    return out


def ratio(part: int, whole: int, digits: int = 4) -> float | None:
    """part ÷ whole rounded, or None when there is nothing to divide by."""
    return round(part / whole, digits) if whole else None
