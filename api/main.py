"""create_app(settings) and app: wiring only."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from api import worker
from api.core.config import Settings, get_settings
from api.core.db import make_engine, make_sessionmaker, run_in_transaction
from api.core.errors import ERROR_RESPONSES, RequestIdMiddleware, install_error_handlers
from api.core.health import router as health_router
from api.core.limits import RequestLimitsMiddleware
from api.insights.router import router as insights_router
from api.loyalty.ledger import router as ledger_routes
from api.loyalty.program import router as program_routes
from api.loyalty.rewards import router as rewards_routes
from api.loyalty.till import router as till_routes
from api.members.auth_router import router as member_auth_router
from api.members.router import me_router
from api.members.router import router as members_router
from api.members.sms import sender_for
from api.org import service as org_service
from api.org.router import auth_router as staff_auth_router
from api.org.router import router as org_router
from api.push import transport as push_transport
from api.push.me_router import router as push_me_router
from api.push.router import router as campaigns_router

log = logging.getLogger("loyalty")

TAGS = [
    {"name": "auth", "description": "Staff password sign-in; member phone + one-time code."},
    {"name": "organisation", "description": "Regions, stores, POS terminals and staff."},
    {"name": "members", "description": "Member enrolment and lookup (scoped per staff role)."},
    {"name": "me", "description": "The companion app: profile, QR member card, vehicles."},
    {"name": "pos", "description": "The till: identify, receipts, returns, redemptions, coupons."},
    {"name": "loyalty", "description": "Programme settings, earning rules, tiers, adjustments."},
    {"name": "rewards", "description": "The rewards catalogue members spend points on."},
    {"name": "insights", "description": "ABC, RFM, lapse follow-up, churn, liability and KPIs."},
    {"name": "campaigns", "description": "Push campaigns: audience, schedule, report and lift."},
    {"name": "operations", "description": "Health and readiness probes."},
]


async def _bootstrap(app: FastAPI, settings: Settings) -> None:
    if not (settings.bootstrap_admin_email and settings.bootstrap_admin_password):
        return

    async def work(session):  # type: ignore[no-untyped-def]
        return await org_service.bootstrap_admin(
            session,
            email=settings.bootstrap_admin_email,
            password=settings.bootstrap_admin_password,
        )

    if await run_in_transaction(app.state.sessionmaker, work):
        log.info("created the first admin from LOYALTY_BOOTSTRAP_ADMIN_EMAIL")


def _announce_test_phones(settings: Settings) -> None:
    if settings.test_phone_codes.strip() and settings.env == "production":
        log.warning(
            "LOYALTY_TEST_PHONE_CODES is allowed in production (LOYALTY_ALLOW_TEST_PHONE_CODES):"
            " %d phone(s) sign in with a fixed code; remove them after the app-store review",
            len(settings.test_phone_code_map),
        )


def create_app(settings: Settings | None = None, *, engine=None) -> FastAPI:  # type: ignore[no-untyped-def]
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _bootstrap(app, settings)
        push_transport.announce(settings)
        _announce_test_phones(settings)
        background = None
        if settings.run_worker_in_process:
            background = asyncio.create_task(worker.loop(app.state.sessionmaker, settings))
            log.info("worker runs in-process (embedded SQLite)")
        yield
        if background is not None:
            background.cancel()
            with suppress(asyncio.CancelledError):
                await background
        if owns_engine:
            await app.state.engine.dispose()

    app = FastAPI(
        title="Loyalty platform",
        version="1.0",
        description="Member cards, points, campaigns and insights for retail and fuel networks.",
        openapi_tags=TAGS,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    owns_engine = engine is None
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.database_url)
    app.state.sessionmaker = make_sessionmaker(app.state.engine)
    app.state.sms_sender = sender_for(settings)

    app.add_middleware(RequestLimitsMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: refusals carry the request id too
    install_error_handlers(app)
    for router in (
        health_router,
        staff_auth_router,
        member_auth_router,
        org_router,
        members_router,
        me_router,
        ledger_routes.me_router,
        till_routes.me_router,
        till_routes.router,
        rewards_routes.router,
        program_routes.router,
        ledger_routes.router,
        insights_router,
        push_me_router,
        campaigns_router,
    ):
        app.include_router(router, responses=ERROR_RESPONSES)

    from admin.app import create_admin_app

    app.mount("/admin", create_admin_app(settings))
    return app


def __getattr__(name: str) -> FastAPI:
    """`api.main:app` for uvicorn, built on first access so importing this module is cheap."""
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
