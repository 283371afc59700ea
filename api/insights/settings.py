"""Thresholds of the insight measures (one row); changes apply at the next refresh."""

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.insights.exceptions import InvalidThresholds
from api.insights.models import InsightsSettings
from api.insights.schemas import SettingsUpdate

SETTINGS_ID = 1


async def get_settings(session: AsyncSession) -> InsightsSettings:
    """The insight thresholds, created with the defaults on first use."""
    row = await session.get(InsightsSettings, SETTINGS_ID)
    if row is None:
        try:
            async with session.begin_nested():
                session.add(InsightsSettings(id=SETTINGS_ID, updated_at=clock.now()))
        except IntegrityError:
            pass
        row = await session.get(InsightsSettings, SETTINGS_ID)
    assert row is not None
    return row


async def update_settings(session: AsyncSession, *, data: SettingsUpdate) -> InsightsSettings:
    """Change thresholds (fields left out stay); they apply at the next refresh."""
    row = await get_settings(session)
    changes = data.model_dump(exclude_unset=True)
    a = changes.get("abc_a_percent", row.abc_a_percent)
    b = changes.get("abc_b_percent", row.abc_b_percent)
    if not 0 < a < b < 100:
        raise InvalidThresholds()
    for field, value in changes.items():
        setattr(row, field, value)
    row.updated_at = clock.now()
    await session.flush()
    return row
