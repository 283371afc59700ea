"""Store-local calendars for the earning rules: birthdays, RFC 5545 member days, cap periods.

Pure functions, no database; `api.loyalty.rules` re-exports them.
"""

import calendar
import functools
from datetime import date, datetime, time, timedelta

from dateutil.rrule import rrulebase, rrulestr

RRULE_ANCHOR = date(2000, 1, 1)


def birthday_in_year(birthday: date, year: int) -> date:
    """The birthday's date in `year`; 29 February counts on 28 February in common years."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def is_birthday(birthday: date | None, local_day: date, window: str) -> bool:
    if birthday is None:
        return False
    this_year = birthday_in_year(birthday, local_day.year)
    if window == "day":
        return local_day == this_year
    if window == "week":
        # The ISO week holding the birthday can straddle New Year (31 Dec → week 1 of next
        # year, 1 Jan → week 52/53 of the last), so look at the neighbouring years' birthdays too.
        week = local_day.isocalendar()[:2]
        return any(
            birthday_in_year(birthday, year).isocalendar()[:2] == week
            for year in (local_day.year - 1, local_day.year, local_day.year + 1)
        )
    if window == "month":
        return local_day.month == this_year.month
    raise ValueError(f"unknown birthday window {window!r}")


@functools.lru_cache(maxsize=4096)
def occurs_on(rrule_text: str, local_day: date, dtstart: date | str | None = None) -> bool:
    """Whether an RFC 5545 RRULE has an occurrence on this local calendar day.

    Without ``dtstart`` the rule starts on 1 January 2000 (which fixes the defaults RFC 5545
    takes from DTSTART, e.g. ``FREQ=WEEKLY`` alone means Saturdays). The answer for a day never
    changes, so it is memoised: walking the recurrence costs milliseconds, the till has none.
    """
    if isinstance(dtstart, str):
        dtstart = date.fromisoformat(dtstart)
    start = _iteration_start(rrule_text, dtstart or RRULE_ANCHOR, local_day)
    day_start = datetime.combine(local_day, time.min)
    upcoming = _recurrence(rrule_text, start).after(day_start, inc=True)
    return upcoming is not None and upcoming < day_start + timedelta(days=1)


@functools.lru_cache(maxsize=512)
def _recurrence(rrule_text: str, start: date) -> rrulebase:
    return rrulestr(rrule_text, dtstart=datetime.combine(start, time.min))


def _iteration_start(rrule_text: str, dtstart: date, local_day: date) -> date:
    """A later DTSTART with the same occurrences from there on, so lookups stay fast.

    dateutil walks every occurrence from DTSTART; a daily rule anchored in 2000 costs
    ~10,000 steps per lookup and grows each year. For a single RRULE with INTERVAL=1 and no
    COUNT, a start on the same month, day and weekday in a later year (still before the day
    asked about) yields the same occurrences from there on: every period is visited either
    way and the defaults taken from DTSTART are unchanged.
    """
    body = rrule_text.strip().upper().removeprefix("RRULE:")
    if ":" in body or any(ch.isspace() for ch in body):
        return dtstart  # DTSTART/RDATE/EXDATE lines: leave it to dateutil
    try:
        parts = dict(part.split("=", 1) for part in body.split(";") if part)
        interval = int(parts.get("INTERVAL", "1"))
    except ValueError:
        return dtstart
    if interval != 1 or "COUNT" in parts:
        return dtstart
    for year in range(local_day.year - 1, dtstart.year, -1):
        try:
            candidate = dtstart.replace(year=year)
        except ValueError:  # 29 February in a common year
            continue
        if candidate.weekday() == dtstart.weekday():
            return candidate
    return dtstart


def period_bounds(local: datetime, period: str) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of the local day/week/month/year, as aware times."""
    day = datetime.combine(local.date(), time.min, tzinfo=local.tzinfo)
    if period == "day":
        return day, _add_days(day, 1)
    if period == "week":
        start = _add_days(day, -day.weekday())
        return start, _add_days(start, 7)
    if period == "month":
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start, end
    if period == "year":
        start = day.replace(month=1, day=1)
        return start, start.replace(year=start.year + 1)
    raise ValueError(period)


def _add_days(moment: datetime, days: int) -> datetime:
    """Calendar days in local time (DST-safe: wall clock stays at midnight)."""
    return datetime.combine(moment.date() + timedelta(days=days), time.min, tzinfo=moment.tzinfo)
