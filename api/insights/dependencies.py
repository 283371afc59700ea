"""Load-and-validate dependencies of the insights router."""

from api.core.db import SessionDep
from api.insights.exceptions import AlertNotFound
from api.insights.models import LapseAlert
from api.members import service as members_service
from api.members.exceptions import MemberNotFound
from api.org.dependencies import StaffScope


async def alert_in_scope(alert_id: int, session: SessionDep, scope: StaffScope) -> None:
    """404 AlertNotFound unless the alert's member is in the caller's scope, whatever the role."""
    alert = await session.get(LapseAlert, alert_id)
    if alert is None:
        raise AlertNotFound()
    try:
        await members_service.get_member(session, alert.member_id, scope=scope)
    except MemberNotFound:
        raise AlertNotFound() from None
