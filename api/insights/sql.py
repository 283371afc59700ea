"""Dialect helpers for set-based insight SQL that runs on PostgreSQL and SQLite alike.

Time arithmetic is done on whole seconds since the epoch, so day counts are exact on both
engines (SQLite's julianday() is a float and may give 6.9999… days for a week).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Date,
    Integer,
    Numeric,
    case,
    literal,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from api.core.db import UTCDateTime
from api.insights.periods import Month

SECONDS_PER_DAY = 86400


class epoch_seconds(FunctionElement[int]):
    """Whole seconds since 1970-01-01 UTC of a UTC timestamp."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_seconds)
def _epoch_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch_seconds, "postgresql")
def _epoch_postgresql(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


def seconds_between(a: Any, b: Any) -> Any:
    """Whole seconds from `b` to `a` (a − b)."""
    return epoch_seconds(a) - epoch_seconds(b)


def whole_days(a: Any, b: Any) -> Any:
    """Full days from `b` to `a` (a ≥ b), an integer."""
    return seconds_between(a, b) // SECONDS_PER_DAY


def as_days(seconds: Any) -> Any:
    """Seconds as days with fractions (a decimal)."""
    days = seconds / literal(float(SECONDS_PER_DAY), Numeric(12, 1))
    return type_coerce(days, Numeric(16, 6))


def fractional_days(a: Any, b: Any) -> Any:
    """Days from `b` to `a` with fractions."""
    return as_days(seconds_between(a, b))


def utc(value: datetime) -> Any:
    """A typed UTC timestamp parameter."""
    return literal(value, UTCDateTime())


def values_cte(name: str, columns: dict[str, Any], rows: Sequence[Sequence[Any]]) -> CTE:
    """Literal rows as a CTE (a UNION ALL of one-row SELECTs: portable to both engines)."""
    selects = [
        select(
            *(
                literal(value, type_).label(column)
                for (column, type_), value in zip(columns.items(), row, strict=True)
            )
        )
        for row in rows
    ]
    return union_all(*selects).cte(name)


def months_cte(months: Sequence[Month], name: str = "months") -> CTE:
    """The months as rows: idx (0 = oldest), period (first day), starts_at, ends_at."""
    columns = {
        "idx": Integer(),
        "period": Date(),
        "starts_at": UTCDateTime(),
        "ends_at": UTCDateTime(),
    }
    return values_cte(name, columns, [(m.idx, m.period, m.starts_at, m.ends_at) for m in months])


def month_index(moment: Any, months: Sequence[Month]) -> Any:
    """Which of `months` a timestamp falls in (its idx), NULL outside them: a CASE, so a scan
    of many rows needs no join. Newest first: recent rows match after fewest tests."""
    whens = [(moment >= utc(m.starts_at), literal(m.idx, Integer)) for m in reversed(months)]
    inside = (moment >= utc(months[0].starts_at)) & (moment < utc(months[-1].ends_at))
    return case((~inside, None), *whens)


def month_period(moment: Any, months: Sequence[Month]) -> Any:
    """The first day of the month (of `months`) a timestamp falls in, NULL outside them."""
    whens = [(moment >= utc(m.starts_at), literal(m.period, Date)) for m in reversed(months)]
    inside = (moment >= utc(months[0].starts_at)) & (moment < utc(months[-1].ends_at))
    return case((~inside, None), *whens)
