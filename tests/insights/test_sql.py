"""Dialect helpers give the same, exact answers on SQLite and PostgreSQL; calendar months."""

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

from sqlalchemy import select

from api.insights.periods import last_months, local_days, month_start
from api.insights.sql import fractional_days, utc, whole_days

T = datetime(2026, 1, 1, tzinfo=UTC)


async def test_day_arithmetic_is_exact(session):
    for later, whole, fraction in (
        (T + timedelta(days=7), 7, 7.0),
        (T + timedelta(days=7) - timedelta(seconds=1), 6, 6.99999),
        (T + timedelta(days=1, hours=12), 1, 1.5),
        (T + timedelta(days=400), 400, 400.0),
    ):
        got_whole, got_fraction = (
            await session.execute(
                select(whole_days(utc(later), utc(T)), fractional_days(utc(later), utc(T)))
            )
        ).one()
        assert got_whole == whole
        assert round(float(got_fraction), 5) == fraction


def test_months_follow_the_programme_time_zone():
    now = datetime(2026, 2, 28, 17, tzinfo=UTC)  # already 1 March in Shanghai
    assert month_start(now, "Asia/Shanghai") == date(2026, 3, 1)
    months = last_months(now, "Asia/Shanghai", 12)
    assert [m.idx for m in months] == list(range(12))
    assert months[0].period == date(2025, 4, 1) and months[-1].period == date(2026, 3, 1)
    assert months[-1].starts_at == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert all(a.ends_at == b.starts_at for a, b in pairwise(months))


def test_local_days_are_complete_days_before_today():
    days = local_days(datetime(2026, 6, 15, 4, tzinfo=UTC), "Europe/Berlin", 3)
    assert [d for d, _, _ in days] == [date(2026, 6, 12), date(2026, 6, 13), date(2026, 6, 14)]
    assert days[0][1] == datetime(2026, 6, 11, 22, tzinfo=UTC)
    assert all(end - start == timedelta(days=1) for _, start, end in days)
