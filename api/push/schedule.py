"""When a campaign's occurrences fall: pure functions of the schedule, the zones and 'now'.

Every occurrence has a key, unique per campaign, so materialising it twice is a no-op:
- one_off: ``once``;  recurring: the local start, ``2027-03-31T09:00``;
- birthday, member_day: one per store time zone and local day, ``2027-02-28@Asia/Shanghai``
  (members are reached at the local time of their home store, or the programme's zone);
- lapsed, points_expiring: the programme's local day;  welcome: the UTC slot it closes.

Only occurrences due within the catch-up window (and after the campaign was scheduled) are
returned: a worker that was down does not send yesterday's reminders today.
"""

import calendar
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from api.push.schemas import Kind, local_time, parse_schedule


@dataclass(frozen=True)
class Occurrence:
    key: str
    due_at: datetime
    zone: str | None = None
    local_date: date | None = None
    period: str | None = None


def at_local(day: date, clock_time: time, zone: str) -> datetime:
    """That wall-clock time in `zone`, as UTC (a time skipped by DST lands just after the gap)."""
    return datetime.combine(day, clock_time, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def birthday_dates(day: date) -> list[tuple[int, int]]:
    """(month, day) of the birthdays celebrated on `day`: 29 February counts on 28 February
    in common years."""
    found = [(day.month, day.day)]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        found.append((2, 29))
    return found


def quiet_until(moment: datetime, zone: str, quiet_hours: str) -> datetime | None:
    """End of the quiet hours ("21:00-08:00", local) that `moment` falls in, else None."""
    if not quiet_hours:
        return None
    start_text, end_text = quiet_hours.split("-")
    start, end = local_time(start_text), local_time(end_text)
    local = moment.astimezone(ZoneInfo(zone))
    now = local.time()
    inside = start <= now < end if start < end else (now >= start or now < end)
    if not inside:
        return None
    day = local.date() if now < end else local.date() + timedelta(days=1)
    return at_local(day, end, zone)


def _recurrence(schedule: dict, default_start: datetime):  # type: ignore[no-untyped-def]
    parsed = parse_schedule(Kind.recurring, schedule)
    zone = ZoneInfo(parsed.timezone)
    start = parsed.dtstart or default_start.astimezone(zone).replace(
        hour=0, minute=0, second=0, microsecond=0, tzinfo=None
    )
    return rrulestr(parsed.rrule, dtstart=start), parsed.timezone


def _naive_local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def recurring_due(
    schedule: dict, *, scheduled_at: datetime, since: datetime, now: datetime
) -> list[Occurrence]:
    """The latest occurrence in (since, now], if any (older missed ones are skipped)."""
    rule, zone = _recurrence(schedule, scheduled_at)
    hits = rule.between(_naive_local(since, zone), _naive_local(now, zone), inc=True)
    for local in reversed(hits):
        due = at_local(local.date(), local.time(), zone)
        if since < due <= now:
            return [Occurrence(local.strftime("%Y-%m-%dT%H:%M"), due, zone=zone)]
    return []


def recurring_finished(schedule: dict, *, scheduled_at: datetime, now: datetime) -> bool:
    """A COUNT/UNTIL rule with no occurrence left after now."""
    rule, zone = _recurrence(schedule, scheduled_at)
    return rule.after(_naive_local(now, zone)) is None


def daily_due(
    zones: Iterable[str],
    clock_time: time,
    *,
    since: datetime,
    now: datetime,
    on_day: Callable[[date], bool] = lambda _: True,
    with_zone_in_key: bool = True,
    period_of: Callable[[date], str | None] = lambda _: None,
) -> list[Occurrence]:
    """Today's (or a caught-up yesterday's) local occurrence per zone in (since, now]."""
    found = []
    for zone in sorted(set(zones)):
        today = now.astimezone(ZoneInfo(zone)).date()
        for day in (today, today - timedelta(days=1)):
            due = at_local(day, clock_time, zone)
            if since < due <= now and on_day(day):
                key = f"{day.isoformat()}@{zone}" if with_zone_in_key else day.isoformat()
                found.append(Occurrence(key, due, zone, day, period_of(day)))
                break
    return found


def welcome_slot(now: datetime, minutes: int) -> Occurrence:
    """The last closed slot of `minutes`: its run covers enrolments up to the slot's end."""
    step = minutes * 60
    end = datetime.fromtimestamp(int(now.timestamp()) // step * step, UTC)
    return Occurrence(end.strftime("%Y-%m-%dT%H:%MZ"), end)
