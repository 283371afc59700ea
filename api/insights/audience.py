"""Audience building blocks for campaigns: member-id subqueries over the stored figures,
and the one definition of a lapsed member that insights and the `lapsed` campaign share."""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select

from api.insights.models import MemberStats

DEFAULT_GRACE_DAYS = 3
MIN_PURCHASES_FOR_CYCLE = 3


def members_in_abc_classes(classes: Sequence[str]) -> Select[tuple[int]]:
    """Members whose current ABC class is one of `classes` ("A", "B", "C")."""
    return select(MemberStats.member_id).where(MemberStats.abc_class.in_(list(classes)))


def members_in_rfm_segments(segments: Sequence[str]) -> Select[tuple[int]]:
    """Members whose current RFM segment is one of `segments` (e.g. "champions", "at_risk")."""
    return select(MemberStats.member_id).where(MemberStats.rfm_segment.in_(list(segments)))


def lapsed_members() -> Select[tuple[int]]:
    """Members past their own purchase cycle plus grace days (as of the last refresh)."""
    return select(MemberStats.member_id).where(MemberStats.lapsed.is_(True))


def is_lapsed_definition(grace_days: int = DEFAULT_GRACE_DAYS) -> str:
    """The lapse rule in words, as shown to marketers and used by the `lapsed` campaign."""
    return (
        "A member is lapsed when the whole days since their last purchase exceed their usual "
        f"interval plus {grace_days} grace days. The usual interval is the median of the days "
        "between consecutive purchases over the trailing 12 months and needs at least "
        f"{MIN_PURCHASES_FOR_CYCLE} purchases; members with fewer are never lapsed. Figures "
        "are as of the last refresh (insights_member_stats.lapsed)."
    )


def is_lapsed(
    days_since_last: int | None, usual_interval_days: Decimal | float | None, grace_days: int
) -> bool:
    """The lapse rule for one member (the same test `lapsed_predicate` applies in SQL)."""
    if days_since_last is None or usual_interval_days is None:
        return False
    return Decimal(days_since_last) > Decimal(str(usual_interval_days)) + grace_days


def lapsed_predicate(grace_days: int) -> Any:
    """The lapse rule as an SQL condition over insights_member_stats."""
    return MemberStats.days_since_last > MemberStats.usual_interval_days + grace_days
