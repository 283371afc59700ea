"""A campaign's audience compiled to one SQL condition over `member` (outer-joined to its home
store): the kind's base (birthdays today, lapsed, ...) and every filter, as correlated
EXISTS / IN subqueries. Nothing loops over members in Python.

Push reads other domains' tables here (members, stores, purchases, accounts, ledger) only to
select ids; all writes to them go through their services.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from sqlalchemy import ColumnElement, Select, and_, exists, false, func, literal, or_, select, true
from sqlalchemy.orm import aliased

from api.insights import audience as insights_audience
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.program import rules as loyalty_rules
from api.loyalty.till.models import Purchase, PurchaseLine
from api.members.models import Member
from api.org.models import Store
from api.push.models import CampaignRun, Delivery, Device
from api.push.schedule import Occurrence, birthday_dates
from api.push.schemas import Audience, Kind, parse_schedule

HomeStore = aliased(Store, name="home_store")
VisitedStore = aliased(Store, name="visited_store")


@dataclass(frozen=True)
class MemberDayRule:
    """The parts of a loyalty member_day rule that say when and where it applies."""

    rrule: str
    dtstart: date | None
    store_ids: Sequence[int] | None
    region_ids: Sequence[int] | None
    store_kind: str | None

    @classmethod
    def of(cls, rule: Any) -> "MemberDayRule":
        start = rule.params.get("dtstart")
        return cls(
            rule.params["rrule"],
            date.fromisoformat(start) if start else None,
            rule.store_ids,
            rule.region_ids,
            rule.store_kind,
        )

    def occurs_on(self, day: date) -> bool:
        return loyalty_rules.occurs_on(self.rrule, day, self.dtstart)


@dataclass(frozen=True)
class Target:
    """What an audience depends on besides the campaign: now, zones, the occurrence."""

    now: datetime
    program_tz: str
    zones: tuple[str, ...]
    occurrence: Occurrence | None = None  # None: a preview of a run now
    member_day_rules: tuple[MemberDayRule, ...] = field(default_factory=tuple)


def member_zone(program_tz: str) -> ColumnElement[str]:
    """The member's time zone: their home store's, else the programme's."""
    return func.coalesce(HomeStore.timezone, literal(program_tz))


def members() -> Select[tuple[int]]:
    """`member` outer-joined to its home store; add conditions and columns to it."""
    return (
        select(Member.id)
        .select_from(Member)
        .outerjoin(HomeStore, HomeStore.id == Member.home_store_id)
    )


def _purchased(*conditions: Any) -> ColumnElement[bool]:
    return exists().where(Purchase.member_id == Member.id, *conditions)


def _visited(store_condition: Any) -> ColumnElement[bool]:
    return (
        exists()
        .where(Purchase.member_id == Member.id)
        .where(VisitedStore.id == Purchase.store_id, store_condition)
    )


def _earlier_delivery(campaign_id: int, *conditions: Any) -> ColumnElement[bool]:
    return exists().where(
        Delivery.campaign_id == campaign_id,
        Delivery.member_id == Member.id,
        Delivery.is_test.is_(False),
        *conditions,
    )


def filter_conditions(audience: Audience, now: datetime) -> list[ColumnElement[bool]]:
    """One condition per filter given."""
    a = audience
    found: list[ColumnElement[bool]] = []
    if a.tiers:
        found.append(exists().where(Account.member_id == Member.id, Account.tier.in_(a.tiers)))
    if a.store_ids:
        found.append(
            or_(
                Member.home_store_id.in_(a.store_ids),
                _purchased(Purchase.store_id.in_(a.store_ids)),
            )
        )
    if a.region_ids:
        found.append(
            or_(
                HomeStore.region_id.in_(a.region_ids),
                _visited(VisitedStore.region_id.in_(a.region_ids)),
            )
        )
    if a.store_kind:
        found.append(
            or_(HomeStore.kind == a.store_kind, _visited(VisitedStore.kind == a.store_kind))
        )
    if a.last_purchase_within_days:
        found.append(
            _purchased(Purchase.occurred_at >= now - timedelta(days=a.last_purchase_within_days))
        )
    if a.last_purchase_before_days:
        since = now - timedelta(days=a.last_purchase_before_days)
        found.append(and_(_purchased(), ~_purchased(Purchase.occurred_at >= since)))
    if a.min_spend is not None or a.max_spend is not None:
        spend = (
            select(func.coalesce(func.sum(Purchase.total - Purchase.returned_total), 0))
            .where(
                Purchase.member_id == Member.id,
                Purchase.occurred_at > now - relativedelta(months=12),
            )
            .scalar_subquery()
        )
        if a.min_spend is not None:
            found.append(spend >= a.min_spend)
        if a.max_spend is not None:
            found.append(spend <= a.max_spend)
    if a.birthday_month:
        found.append(Member.birth_month == a.birthday_month)
    if a.bought_category:
        bought = a.bought_category
        found.append(
            exists()
            .where(Purchase.member_id == Member.id)
            .where(
                PurchaseLine.purchase_id == Purchase.id,
                PurchaseLine.category == bought.category,
                Purchase.occurred_at >= now - timedelta(days=bought.within_days),
            )
        )
    if a.has_device is not None:
        has = exists().where(Device.member_id == Member.id, Device.active.is_(True))
        found.append(has if a.has_device else ~has)
    if a.abc_class:
        found.append(Member.id.in_(insights_audience.members_in_abc_classes(a.abc_class)))
    if a.rfm_segment:
        found.append(Member.id.in_(insights_audience.members_in_rfm_segments(a.rfm_segment)))
    return found


def _birthday_today(campaign_id: int, zone: str, day: date, program_tz: str) -> ColumnElement[bool]:
    born = or_(
        *(and_(Member.birth_month == m, Member.birth_day == d) for m, d in birthday_dates(day))
    )
    once_a_year = _earlier_delivery(
        campaign_id,
        CampaignRun.id == Delivery.run_id,
        CampaignRun.period == str(day.year),
    )
    return and_(member_zone(program_tz) == zone, born, ~once_a_year)


def _store_scope(rule: MemberDayRule) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if rule.store_ids is not None:
        parts.append(Member.home_store_id.in_(list(rule.store_ids)))
    if rule.region_ids is not None:
        parts.append(HomeStore.region_id.in_(list(rule.region_ids)))
    if rule.store_kind is not None:
        parts.append(HomeStore.kind == rule.store_kind)
    return and_(true(), *parts)


def _member_day(target: Target, zone: str | None, day: date | None) -> ColumnElement[bool]:
    rules = [r for r in target.member_day_rules if day is None or r.occurs_on(day)]
    if not rules:
        return false()
    in_zone = member_zone(target.program_tz) == zone if zone is not None else true()
    return and_(in_zone, or_(*(_store_scope(r) for r in rules)))


def _local_day(target: Target, zone: str) -> date:
    return target.now.astimezone(ZoneInfo(zone)).date()


def kind_condition(
    campaign_id: int, kind: str, schedule: dict[str, Any], target: Target, *, since: datetime | None
) -> ColumnElement[bool]:
    """Who the kind itself reaches at this occurrence (or now, for a preview)."""
    occ = target.occurrence
    now = target.now
    if kind == Kind.birthday:
        if occ is not None:
            assert occ.zone and occ.local_date
            return _birthday_today(campaign_id, occ.zone, occ.local_date, target.program_tz)
        return or_(
            *(
                _birthday_today(campaign_id, z, _local_day(target, z), target.program_tz)
                for z in target.zones
            )
        )
    if kind == Kind.member_day:
        if occ is not None:
            return _member_day(target, occ.zone, occ.local_date)
        return _member_day(target, None, None)
    if kind == Kind.lapsed:
        last = select(func.max(Purchase.occurred_at)).where(Purchase.member_id == Member.id)
        last_purchase = last.scalar_subquery()
        sent_since = _earlier_delivery(
            campaign_id, or_(last_purchase.is_(None), Delivery.created_at >= last_purchase)
        )
        return and_(Member.id.in_(insights_audience.lapsed_members()), ~sent_since)
    if kind == Kind.points_expiring:
        days = parse_schedule(kind, schedule).days_before
        expiring = exists().where(
            LedgerEntry.member_id == Member.id,
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at > now,
            LedgerEntry.expires_at <= now + timedelta(days=days),
        )
        told = _earlier_delivery(campaign_id, Delivery.created_at > now - timedelta(days=days))
        return and_(expiring, ~told)
    if kind == Kind.welcome:
        joined = [Member.created_at <= (occ.due_at if occ is not None else now)]
        if since is not None:
            joined.append(Member.created_at >= since)
        return and_(*joined, ~_earlier_delivery(campaign_id))
    return true()


def condition(
    *,
    campaign_id: int,
    kind: str,
    schedule: dict[str, Any],
    audience: dict[str, Any],
    target: Target,
    since: datetime | None,
) -> ColumnElement[bool]:
    """The whole audience: active members, the kind's base, every filter."""
    return and_(
        Member.status == "active",
        kind_condition(campaign_id, kind, schedule, target, since=since),
        *filter_conditions(Audience.model_validate(audience), target.now),
    )
