"""Calendar months and days in the programme's (or a store's) time zone, as UTC bounds."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from api.core import clock


@dataclass(frozen=True)
class Month:
    idx: int
    period: date
    starts_at: datetime
    ends_at: datetime


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which `day` starts in `tz`."""
    return clock.as_utc(datetime.combine(day, time.min, tzinfo=tz))


def month_start(now: datetime, timezone: str) -> date:
    """The first day of the month `now` falls in, in `timezone`."""
    return now.astimezone(ZoneInfo(timezone)).date().replace(day=1)


def last_months(now: datetime, timezone: str, count: int = 12) -> list[Month]:
    """The `count` months up to and including the current one, oldest first (idx 0)."""
    tz = ZoneInfo(timezone)
    current = month_start(now, timezone)
    months = []
    for i in range(count):
        first = current - relativedelta(months=count - 1 - i)
        following = first + relativedelta(months=1)
        months.append(Month(i, first, local_midnight(first, tz), local_midnight(following, tz)))
    return months


def trailing_year_start(now: datetime) -> datetime:
    """The start of the trailing-12-month window that ends now."""
    return now - relativedelta(months=12)


def local_days(now: datetime, timezone: str, days: int) -> list[tuple[date, datetime, datetime]]:
    """The last `days` complete local days before today: (day, starts_at, ends_at) in UTC."""
    tz = ZoneInfo(timezone)
    today = now.astimezone(tz).date()
    out = []
    for back in range(days, 0, -1):
        day = today - timedelta(days=back)
        out.append((day, local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)))
    return out
