"""The insights domain's public face: reports from the stored figures, refresh, lapse
follow-up and portfolios, plus the audience building blocks campaigns use."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.pagination import PageParams, Slice
from api.insights import abc, churn, kpis, lapse, liability, portfolio, rfm
from api.insights import refresh as refresher
from api.insights.audience import (
    is_lapsed,
    is_lapsed_definition,
    lapsed_members,
    lapsed_predicate,
    members_in_abc_classes,
    members_in_rfm_segments,
)
from api.insights.models import InsightsSettings, Refresh
from api.insights.periods import Month, last_months
from api.insights.schemas import (
    AbcRead,
    ChurnRead,
    KpisRead,
    LapsedItem,
    LiabilityRead,
    OutcomeIn,
    PortfolioRead,
    RfmRead,
    SettingsUpdate,
)
from api.insights.settings import get_settings, update_settings
from api.loyalty.program import service as program_service
from api.members import service as members_service
from api.org.models import Staff
from api.org.scope import Scope

__all__ = [
    "get_settings",
    "is_lapsed",
    "is_lapsed_definition",
    "lapsed_members",
    "lapsed_predicate",
    "members_in_abc_classes",
    "members_in_rfm_segments",
    "update_settings",
]


async def refresh_now(session: AsyncSession, *, staff: Staff) -> Refresh:
    """Recompute every insight now (on demand)."""
    return await refresher.refresh(session, trigger="api", staff_id=staff.id)


async def refresh_if_stale(session: AsyncSession) -> int:
    """The worker's nightly job: refresh when the figures are older than 24 hours."""
    return await refresher.refresh_if_stale(session)


async def last_refresh(session: AsyncSession) -> Refresh | None:
    return await refresher.last_refresh(session)


async def change_settings(session: AsyncSession, *, data: SettingsUpdate) -> InsightsSettings:
    return await update_settings(session, data=data)


async def _as_of(session: AsyncSession) -> tuple[datetime | None, datetime]:
    """(computed_at, the 'now' the stored figures were computed at)."""
    last = await refresher.last_refresh(session)
    if last is None:
        return None, clock.now()
    return last.finished_at, last.started_at


async def _months(session: AsyncSession, at: datetime) -> list[Month]:
    program = await program_service.get_program(session)
    return last_months(at, program.timezone)


async def abc_report(session: AsyncSession, *, scope: Scope) -> AbcRead:
    """ABC classes within the scope."""
    result = await abc.report(session, scope=scope)
    result.computed_at, _ = await _as_of(session)
    return result


async def rfm_report(session: AsyncSession, *, scope: Scope) -> RfmRead:
    """RFM segments and score distribution within the scope."""
    result = await rfm.report(session, scope=scope)
    result.computed_at, _ = await _as_of(session)
    return result


async def churn_report(session: AsyncSession, *, scope: Scope) -> ChurnRead:
    """Churned members, monthly churn and cohort retention within the scope."""
    computed, at = await _as_of(session)
    options = await get_settings(session)
    result = await churn.report(
        session,
        scope=scope,
        months=await _months(session, at),
        churn_days=options.churn_days,
        now=at,
    )
    result.computed_at = computed
    return result


async def liability_report(session: AsyncSession, *, scope: Scope) -> LiabilityRead:
    """Points liability within the scope."""
    program = await program_service.get_program(session)
    result = await liability.report(session, scope=scope, program=program)
    result.computed_at, _ = await _as_of(session)
    return result


async def kpis_report(session: AsyncSession, *, scope: Scope) -> KpisRead:
    """Programme KPIs within the scope."""
    computed, at = await _as_of(session)
    result = await kpis.report(session, scope=scope, months=await _months(session, at), now=at)
    result.computed_at = computed
    return result


async def _log_reads(
    session: AsyncSession, staff: Staff, member_ids: list[int], action: str, request_id: str
) -> None:
    for member_id in dict.fromkeys(member_ids):  # one row per member shown on the page
        await members_service.log_access(
            session, staff_id=staff.id, member_id=member_id, action=action, request_id=request_id
        )


async def list_lapsed(
    session: AsyncSession,
    *,
    staff: Staff,
    scope: Scope,
    page: PageParams,
    status: str | None,
    assigned_staff_id: int | None,
    store_id: int | None,
    request_id: str,
) -> Slice[LapsedItem]:
    """Lapse alerts of members in scope (the names shown are logged as personal-data reads)."""
    found = await lapse.list_alerts(
        session,
        scope=scope,
        page=page,
        status=status,
        assigned_staff_id=assigned_staff_id,
        store_id=store_id,
    )
    await _log_reads(
        session, staff, [i.member_id for i in found.items], "insights lapsed", request_id
    )
    return found


async def assign_alert(
    session: AsyncSession, *, alert_id: int, staff_id: int, scope: Scope, by: Staff
) -> LapsedItem:
    """Give an alert to a staff member of the member's home store."""
    return await lapse.assign(session, alert_id=alert_id, staff_id=staff_id, scope=scope, by=by)


async def record_outcome(
    session: AsyncSession, *, alert_id: int, data: OutcomeIn, scope: Scope, by: Staff
) -> LapsedItem:
    """Record the outcome of a follow-up."""
    return await lapse.record_outcome(session, alert_id=alert_id, data=data, scope=scope, by=by)


async def read_portfolio(
    session: AsyncSession, *, caller: Staff, staff_id: int | None, scope: Scope, request_id: str
) -> PortfolioRead:
    """A staff member's portfolio (the caller's own by default)."""
    options = await get_settings(session)
    result = await portfolio.read(
        session, caller=caller, staff_id=staff_id, scope=scope, size=options.portfolio_size
    )
    await _log_reads(
        session, caller, [i.member_id for i in result.items], "insights portfolio", request_id
    )
    return result


async def place_in_portfolio(
    session: AsyncSession, *, staff_id: int, member_id: int, scope: Scope, caller: Staff
) -> PortfolioRead:
    """Put a member in a store staff member's portfolio by hand; returns that portfolio."""
    options = await get_settings(session)
    await portfolio.place(
        session, staff_id=staff_id, member_id=member_id, scope=scope, size=options.portfolio_size
    )
    return await portfolio.read(
        session, caller=caller, staff_id=staff_id, scope=scope, size=options.portfolio_size
    )
