"""The push domain's worker jobs (api.worker JOBS): schedule due runs, dispatch deliveries.

Both read the process settings (environment), like `loyalty worker` does.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from api.core.config import get_settings
from api.core.db import make_sessionmaker
from api.push import dispatcher, scheduler, transport


async def schedule_runs(session: AsyncSession) -> int:
    """Materialise every due campaign occurrence."""
    return await scheduler.schedule_due(session, settings=get_settings())


async def dispatch(session: AsyncSession) -> int:
    """Send queued deliveries. Sending must happen outside a transaction, so this job leaves
    the pass's session unused and runs its own short claim and record transactions on the
    same engine."""
    settings = get_settings()
    maker = make_sessionmaker(session.bind)  # type: ignore[arg-type]
    return await dispatcher.dispatch_due(
        maker, settings=settings, transport=transport.process_transport(settings)
    )
