from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from api.core.access import PolicyRouter
from api.core.db import SessionDep
from api.core.deps import SettingsDep
from api.core.errors import request_id
from api.core.idempotency import IdempotencyKey, run_once
from api.core.pagination import Page, PageParams, page_params
from api.members import identity, qr, service
from api.members.dependencies import CurrentMember, MemberOnce, ScopedMember
from api.members.schemas import (
    CardRead,
    MemberCreate,
    MemberRead,
    MemberSummary,
    MeUpdate,
    VehicleCreate,
    VehicleRead,
)
from api.org import service as org_service
from api.org.dependencies import CurrentStaff, StaffOrTerminal, StaffScope

router = PolicyRouter(prefix="/v1/members", tags=["members"])
me_router = PolicyRouter(prefix="/v1/me", tags=["me"])


@router.post("", response_model=MemberRead, status_code=status.HTTP_201_CREATED)
async def enrol_member(
    body: MemberCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: StaffOrTerminal,
    idempotency_key: IdempotencyKey = None,
) -> MemberRead:
    """Enrol a member at the till or by staff; 409 MemberExists for a known phone."""
    if body.home_store_id is not None:
        await org_service.get_store(session, body.home_store_id, scope=actor.scope)

    async def work() -> MemberRead:
        via = "pos" if actor.kind == "terminal" else "staff"
        member = await service.enrol(
            session, settings=settings, data=body, via=via, store_id=actor.store_id
        )
        return await service.read_model(session, member)

    return await run_once(
        session,
        request,
        scope=actor.label,
        key=idempotency_key,
        body=body,
        work=work,
        status_code=status.HTTP_201_CREATED,
    )


@router.get("", response_model=Page[MemberSummary])
async def search_members(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    staff: CurrentStaff,
    scope: StaffScope,
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str | None, Query(max_length=64, description="Phone, card, plate or name")] = None,
) -> Page[MemberSummary]:
    """Find members in the caller's region or store by phone, card number, plate or name."""
    found = await service.search(session, settings=settings, q=q, scope=scope, page=page)
    for member in found.items:
        await service.log_access(
            session,
            staff_id=staff.id,
            member_id=member.id,
            action="search",
            request_id=request_id(request),
        )
    return Page(
        items=[MemberSummary.model_validate(m) for m in found.items], next_cursor=found.next_cursor
    )


@router.get("/{member_id}", response_model=MemberRead)
async def get_member(member: ScopedMember, session: SessionDep) -> MemberRead:
    """One member's profile (404 outside the caller's scope); the read is logged."""
    return await service.read_model(session, member)


@me_router.get("", response_model=MemberRead)
async def get_me(member: CurrentMember, session: SessionDep) -> MemberRead:
    """The signed-in member's profile, consents and vehicles."""
    return await service.read_model(session, member)


@me_router.patch("", response_model=MemberRead)
async def update_me(
    body: MeUpdate, member: CurrentMember, session: SessionDep, once: MemberOnce
) -> MemberRead:
    """Change name, birthday, gender, e-mail, home store or consents."""

    async def work() -> MemberRead:
        await service.update_profile(session, member, data=body, source="app")
        return await service.read_model(session, member)

    return await once(work, body=body)


@me_router.get("/card", response_model=CardRead)
async def get_card(member: CurrentMember, settings: SettingsDep, response: Response) -> CardRead:
    """The member card: number, current rotating QR payload and TOTP parameters."""
    response.headers["Cache-Control"] = "no-store"
    return identity.card_view(settings, member)


@me_router.get(
    "/card/qr.png", response_class=Response, responses={200: {"content": {"image/png": {}}}}
)
async def card_qr_png(member: CurrentMember, settings: SettingsDep) -> Response:
    """The current rotating QR code as a PNG image."""
    card = identity.card_view(settings, member)
    return Response(
        await qr.render(card.code, "png"),
        media_type="image/png",
        headers={"Cache-Control": "no-store"},
    )


@me_router.get(
    "/card/qr.svg", response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}}
)
async def card_qr_svg(member: CurrentMember, settings: SettingsDep) -> Response:
    """The current rotating QR code as an SVG image."""
    card = identity.card_view(settings, member)
    return Response(
        await qr.render(card.code, "svg"),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store"},
    )


@me_router.get("/vehicles", response_model=list[VehicleRead])
async def list_vehicles(member: CurrentMember, session: SessionDep) -> list[VehicleRead]:
    """The member's registered plates."""
    return [VehicleRead.model_validate(v) for v in await service.vehicles_of(session, member.id)]


@me_router.post("/vehicles", response_model=VehicleRead, status_code=status.HTTP_201_CREATED)
async def add_vehicle(
    body: VehicleCreate, member: CurrentMember, session: SessionDep, once: MemberOnce
) -> VehicleRead:
    """Register a licence plate so fuel stations know the driver by plate."""

    async def work() -> VehicleRead:
        return VehicleRead.model_validate(
            await service.add_vehicle(session, member, plate=body.plate)
        )

    return await once(work, body=body, status_code=status.HTTP_201_CREATED)


@me_router.delete("/vehicles/{vehicle_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_vehicle(vehicle_id: int, member: CurrentMember, session: SessionDep) -> None:
    """Remove a registered plate."""
    await service.remove_vehicle(session, member, vehicle_id=vehicle_id)
