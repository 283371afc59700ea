"""Why a member in the audience gets nothing: a registry of set-based checks.

Each check is a function of the run's context returning a SQL condition on `member` (true =
suppress) or None when it does not apply; the first check that holds names the reason. A later
domain adds one with::

    @suppression.register("open_complaint")
    def _open_complaint(ctx: CheckContext) -> ColumnElement[bool] | None:
        return exists().where(Complaint.member_id == ctx.member_id, Complaint.open)

Registration order is the order reasons are tried in.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, null, select

from api.members.models import Member, MemberConsent
from api.push.models import DELIVERY_STATUSES, Delivery

# Statuses of a delivery the member received (inbox and push, or inbox alone).
RECEIVED = ("queued", "sending", "sent", "failed", "no_transport", "no_device", "inbox_only")
NOT_RECEIVED = tuple(s for s in DELIVERY_STATUSES if s not in RECEIVED)
CAP_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class CheckContext:
    campaign_id: int | None
    marketing: bool
    now: datetime
    frequency_cap: int

    @property
    def member_id(self) -> ColumnElement[int]:
        """The member being checked (the audience query selects from `member`)."""
        return Member.id  # type: ignore[return-value]


Condition = Callable[[CheckContext], ColumnElement[bool] | None]


@dataclass(frozen=True)
class SuppressionCheck:
    reason: str
    condition: Condition


CHECKS: list[SuppressionCheck] = []


def register(reason: str) -> Callable[[Condition], Condition]:
    """Decorator: add a suppression check under `reason`."""

    def add(condition: Condition) -> Condition:
        if any(check.reason == reason for check in CHECKS):
            raise ValueError(f"suppression reason {reason!r} is registered already")
        CHECKS.append(SuppressionCheck(reason, condition))
        return condition

    return add


def push_consent(member_id: ColumnElement[int]) -> ColumnElement[bool]:
    return exists().where(
        MemberConsent.member_id == member_id,
        MemberConsent.channel == "push",
        MemberConsent.granted.is_(True),
    )


@register("no_consent")
def _no_consent(ctx: CheckContext) -> ColumnElement[bool] | None:
    """Marketing needs push consent; transactional notices reach the inbox without it."""
    return ~push_consent(ctx.member_id) if ctx.marketing else None


@register("frequency_cap")
def _frequency_cap(ctx: CheckContext) -> ColumnElement[bool] | None:
    """At most `frequency_cap` marketing messages per member in any 7 days."""
    if not ctx.marketing or ctx.frequency_cap <= 0:
        return None
    recent = (
        select(func.count(Delivery.id))
        .where(
            Delivery.member_id == ctx.member_id,
            Delivery.is_marketing.is_(True),
            Delivery.is_test.is_(False),
            # the same set as RECEIVED, written so the planner never picks the status index
            # (with stale statistics it did, per member: 24 s instead of 0.3 s for 20,000)
            Delivery.status.not_in(NOT_RECEIVED),
            Delivery.created_at > ctx.now - CAP_WINDOW,
        )
        .scalar_subquery()
    )
    return recent >= ctx.frequency_cap


def applicable(ctx: CheckContext) -> list[tuple[str, ColumnElement[bool]]]:
    found = []
    for check in CHECKS:
        cond = check.condition(ctx)
        if cond is not None:
            found.append((check.reason, cond))
    return found


def reason(ctx: CheckContext) -> ColumnElement[str | None]:
    """SQL: the first reason that holds for the member, else NULL."""
    checks = applicable(ctx)
    if not checks:
        return null()
    return case(*((cond, literal(name)) for name, cond in checks), else_=null())


def not_suppressed(ctx: CheckContext) -> ColumnElement[bool]:
    return and_(*(~cond for _, cond in applicable(ctx)))
