"""Member search and the member profile (every view of personal data is logged)."""

from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from admin.web import ManagerPage, MarketerPage, field_errors
from api.core.db import SessionDep
from api.core.errors import DomainError, request_id
from api.core.pagination import PageParams
from api.loyalty.ledger import accounts
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.schemas import AdjustmentIn
from api.loyalty.rewards import service as rewards_service
from api.loyalty.till import purchases
from api.members import service as members_service
from api.org import service as org_service
from api.org.models import Role
from api.push import devices, inbox

router = APIRouter()


@router.get("/members", response_class=HTMLResponse)
async def search(
    page: ManagerPage,
    db: SessionDep,
    q: Annotated[str, Query(max_length=64)] = "",
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """Find members in your scope by phone, card number, plate or name."""
    scope = org_service.scope_of(page.staff)
    found = await members_service.search(
        db,
        settings=page.settings,
        q=q or None,
        scope=scope,
        page=PageParams(cursor=cursor, limit=25),
    )
    for member in found.items:
        await members_service.log_access(
            db,
            staff_id=page.staff.id,
            member_id=member.id,
            action="console search",
            request_id=request_id(page.request),
        )
    stores = {s.id: s.name for s in await org_service.list_stores(db)}
    balances = {m.id: await accounts.balance_of(db, m.id) for m in found.items}
    return page.render(
        "members/search.html",
        q=q,
        members=found.items,
        balances=balances,
        next_cursor=found.next_cursor,
        stores=stores,
    )


async def _profile(
    page: ManagerPage, db: SessionDep, member_id: int, **extra: object
) -> HTMLResponse:
    member = await members_service.get_member(db, member_id, scope=org_service.scope_of(page.staff))
    await members_service.log_access(
        db,
        staff_id=page.staff.id,
        member_id=member.id,
        action="console profile",
        request_id=request_id(page.request),
    )
    history = await ledger.history(db, member.id, page=PageParams(limit=30))
    coupons = await rewards_service.list_coupons(db, member.id, page=PageParams(limit=20))
    messages = await inbox.list_items(db, member_id=member.id, page=PageParams(limit=20))
    reward_names = {r.id: r.name for r in await rewards_service.list_rewards(db)}
    stores = {s.id: s.name for s in await org_service.list_stores(db)}
    return page.render(
        "members/profile.html",
        member=await members_service.read_model(db, member),
        points=await accounts.points_view(db, member.id),
        entries=history.items,
        purchases=await purchases.member_purchases(db, member.id),
        coupons=coupons.items,
        reward_names=reward_names,
        devices=await devices.list_devices(db, member_id=member.id),
        messages=[inbox.read_model(i) for i in messages.items],
        stores=stores,
        can_adjust=page.staff.role in (Role.admin, Role.marketer),
        **extra,
    )


@router.get("/members/{member_id}", response_class=HTMLResponse)
async def profile(member_id: int, page: ManagerPage, db: SessionDep) -> HTMLResponse:
    """A member's profile: points, ledger, receipts, vehicles, consents, devices and inbox."""
    return await _profile(page, db, member_id)


@router.post("/members/{member_id}/adjust", response_model=None)
async def adjust(
    member_id: int,
    page: MarketerPage,
    db: SessionDep,
    points: Annotated[str, Form(max_length=12)],
    reason: Annotated[str, Form(max_length=255)],
) -> HTMLResponse | RedirectResponse:
    """Add or remove points by hand, with a reason the member sees in their history."""
    try:
        body = AdjustmentIn(points=points.strip() or "0", reason=reason)  # type: ignore[arg-type]
    except ValidationError as e:
        return await _profile(
            page, db, member_id, errors=field_errors(e), form={"points": points, "reason": reason}
        )
    member = await members_service.get_member(db, member_id)
    try:
        await accounts.adjust(
            db,
            member_id=member.id,
            points=body.points,
            reason=body.reason,
            actor=f"staff:{page.staff.id}",
        )
    except DomainError as e:
        return await _profile(
            page,
            db,
            member_id,
            errors={"points": e.detail},
            form={"points": points, "reason": reason},
        )
    return page.redirect(
        f"/members/{member.id}", ("success", f"{body.points:+,} points recorded: {body.reason}")
    )
