"""Member-day uplift: sales on member days against the same weekdays in other weeks.

For each store, the last 26 complete weeks of store-local days are tested against the active
member_day rules (their RRULE in store-local time, and the rule's store/region/kind/validity
filters). Member days are compared with the days that fall on the same weekdays but were not
member days. Stored per store: the number of member days and base days and their sales (all
and with a member); uplift = (member-day sales ÷ member days) ÷ (base sales ÷ base days) − 1.
The day calendar is built in Python (a loop over stores and days); the sales are summed in SQL,
one statement per distinct calendar (stores in one time zone under the same rules share one).
"""

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from sqlalchemy import Integer, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.db import UTCDateTime
from api.insights import figures
from api.insights.periods import local_days
from api.insights.schemas import MemberDayRead
from api.insights.sql import values_cte
from api.loyalty.program import rules
from api.loyalty.program import service as program_service
from api.loyalty.till.models import Purchase
from api.org import service as org_service
from api.org.models import Store

WINDOW_DAYS = 26 * 7
RRULE_EPOCH = date(2000, 1, 1)  # rules.occurs_on's dtstart when a rule names none
MEASURES = (
    "md_days",
    "md_sales",
    "md_member_sales",
    "md_base_days",
    "md_base_sales",
    "md_base_member_sales",
)


def occurrence_days(rule: rules.Rule, first: date, last: date) -> set[date]:
    """The local days from `first` to `last` on which a member-day RRULE occurs: the same
    answer as rules.occurs_on for each day, from one pass over the recurrence."""
    start = rule.params.get("dtstart")
    dtstart = datetime.combine(date.fromisoformat(start) if start else RRULE_EPOCH, time.min)
    recurrence = rrulestr(rule.params["rrule"], dtstart=dtstart)
    window = recurrence.between(
        datetime.combine(first, time.min), datetime.combine(last, time.max), inc=True
    )
    return {moment.date() for moment in window}


def _applies(rule: rules.Rule, store: Store, day: date) -> bool:
    noon = clock.as_utc(datetime.combine(day, time(12), tzinfo=ZoneInfo(store.timezone)))
    ctx = rules.Context(
        occurred_at=noon,
        store_id=store.id,
        region_id=store.region_id,
        store_kind=store.kind,
        timezone=store.timezone,
        total=0,
    )
    return rules.applies(rule, ctx)


async def compute(session: AsyncSession, *, now: datetime) -> int:
    """Store the member-day and base-day sales of every store; returns the member days found."""
    member_days = [
        program_service.engine_rule(r)
        for r in await program_service.list_rules(session, active_only=True)
        if r.kind == rules.RuleKind.member_day
    ]
    if not member_days:
        return 0
    found = 0
    rows = []
    occurrences: dict[tuple[int, date], set[date]] = {}
    calendars: dict[tuple[tuple[datetime, datetime, int], ...], list[Store]] = {}
    for store in await org_service.list_stores(session):
        local = local_days(now, store.timezone, WINDOW_DAYS)
        first, last = local[0][0], local[-1][0]
        for rule in member_days:
            if (rule.id, first) not in occurrences:
                occurrences[(rule.id, first)] = occurrence_days(rule, first, last)
        days = [
            (
                day,
                start,
                end,
                any(
                    day in occurrences[(rule.id, first)] and _applies(rule, store, day)
                    for rule in member_days
                ),
            )
            for day, start, end in local
        ]
        weekdays = {day.weekday() for day, _, _, md in days if md}
        if weekdays:
            chosen = tuple((s, e, int(md)) for day, s, e, md in days if day.weekday() in weekdays)
            calendars.setdefault(chosen, []).append(store)
    for chosen, stores in calendars.items():  # stores sharing a calendar: one statement
        sales = await _sales(session, [store.id for store in stores], list(chosen))
        md_days = sum(flag for _, _, flag in chosen)
        for store in stores:
            found += md_days
            values = {
                "md_days": md_days,
                "md_sales": sales.get((store.id, 1), (0, 0))[0],
                "md_member_sales": sales.get((store.id, 1), (0, 0))[1],
                "md_base_days": len(chosen) - md_days,
                "md_base_sales": sales.get((store.id, 0), (0, 0))[0],
                "md_base_member_sales": sales.get((store.id, 0), (0, 0))[1],
            }
            rows.extend(
                {"measure": k, "period": None, "bucket": None, "store_id": store.id, "value": v}
                for k, v in values.items()
            )
    await figures.add_rows(session, rows)
    return found


async def _sales(
    session: AsyncSession, store_ids: list[int], days: list[tuple[datetime, datetime, int]]
) -> dict[tuple[int, int], tuple[int, int]]:
    cal = values_cte(
        "days",
        {"starts_at": UTCDateTime(), "ends_at": UTCDateTime(), "member_day": Integer()},
        days,
    )
    net = Purchase.total - Purchase.returned_total
    stmt = (
        select(
            Purchase.store_id,
            cal.c.member_day,
            func.sum(net),
            func.sum(case((Purchase.member_id.is_not(None), net), else_=0)),
        )
        .join(
            Purchase,
            and_(
                Purchase.store_id.in_(store_ids),
                Purchase.occurred_at >= cal.c.starts_at,
                Purchase.occurred_at < cal.c.ends_at,
            ),
        )
        .group_by(Purchase.store_id, cal.c.member_day)
    )
    return {
        (int(store_id), int(flag)): (int(total or 0), int(members or 0))
        for store_id, flag, total, members in (await session.execute(stmt)).all()
    }


def _uplift(sales: int, days: int, base_sales: int, base_days: int) -> float | None:
    if not days or not base_days or not base_sales:
        return None
    return round((sales / days) / (base_sales / base_days) - 1, 4)


def summary(got: dict[figures.Key, int]) -> MemberDayRead:
    """The member-day figures summed over the stores in scope."""
    v = {m: got.get((m, None, None), 0) for m in MEASURES}
    days, base_days = v["md_days"], v["md_base_days"]
    return MemberDayRead(
        member_days=days,
        base_days=base_days,
        sales_per_member_day=v["md_sales"] // days if days else None,
        sales_per_base_day=v["md_base_sales"] // base_days if base_days else None,
        uplift=_uplift(v["md_sales"], days, v["md_base_sales"], base_days),
        member_sales_uplift=_uplift(
            v["md_member_sales"], days, v["md_base_member_sales"], base_days
        ),
    )
