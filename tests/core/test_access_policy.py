"""Every API route's access policy, generated from the route table.

The declared policies must equal EXPECTED (written from DESIGN.md and API.md), and every route
behaves as declared: no credentials → 401, a caller the policy does not admit → 403, an admitted
caller gets past the checks, and another store's or member's object → 404 like a missing one."""

import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import access, clock
from api.core.access import Policy, PolicyError, PolicyRoute, Public, policy_of
from api.core.config import Settings
from api.insights.models import LapseAlert
from api.members.dependencies import CurrentMember
from api.org.dependencies import ANY_STAFF, Admin, CurrentStaff
from api.org.models import Role
from api.push import campaigns
from tests.factories import Org, make_member, make_org, make_staff, make_till, member_headers
from tests.push.helpers import make_campaign

MEMBER, TERMINAL = access.MEMBER, access.TERMINAL
MARKETING = ("admin", "marketer")
MANAGERS = (*MARKETING, "region_manager", "store_manager")
POLICIES: dict[str, Policy] = {
    "public": Policy.of(access.PUBLIC),
    "member": Policy.of(MEMBER),
    "terminal": Policy.of(TERMINAL),
    "staff": ANY_STAFF,
    "staff|terminal": ANY_STAFF | Policy.of(TERMINAL),
    "admin": Policy.staff("admin"),
    "marketing": Policy.staff(*MARKETING),
    "managers": Policy.staff(*MANAGERS),
}
PRINCIPALS = (MEMBER, TERMINAL, *(f"staff:{role}" for role in Role))

EXPECTED = {
    "GET /healthz": "public",
    "GET /readyz": "public",
    "POST /v1/auth/token": "public",
    "POST /v1/auth/otp": "public",
    "POST /v1/auth/otp/verify": "public",
    "POST /v1/auth/refresh": "public",
    "POST /v1/auth/logout": "member",
    "GET /v1/staff/me": "staff",
    "POST /v1/staff/me/signout": "staff",
    "POST /v1/regions": "admin",
    "GET /v1/regions": "staff",
    "POST /v1/stores": "admin",
    "GET /v1/stores": "staff",
    "GET /v1/stores/{store_id}": "staff",
    "PATCH /v1/stores/{store_id}": "admin",
    "POST /v1/stores/{store_id}/terminals": "admin",
    "GET /v1/stores/{store_id}/terminals": "admin",
    "DELETE /v1/terminals/{terminal_id}": "admin",
    "POST /v1/staff": "admin",
    "GET /v1/staff": "admin",
    "PATCH /v1/staff/{staff_id}": "admin",
    "POST /v1/members": "staff|terminal",
    "GET /v1/members": "staff",
    "GET /v1/members/{member_id}": "staff",
    "POST /v1/members/{member_id}/adjustments": "marketing",
    "PUT /v1/members/{member_id}/tier": "admin",
    "GET /v1/me": "member",
    "PATCH /v1/me": "member",
    "GET /v1/me/card": "member",
    "GET /v1/me/card/qr.png": "member",
    "GET /v1/me/card/qr.svg": "member",
    "GET /v1/me/vehicles": "member",
    "POST /v1/me/vehicles": "member",
    "DELETE /v1/me/vehicles/{vehicle_id}": "member",
    "GET /v1/me/points": "member",
    "GET /v1/me/points/history": "member",
    "POST /v1/me/receipts/claim": "member",
    "GET /v1/me/rewards": "member",
    "POST /v1/me/rewards/{reward_id}/claim": "member",
    "GET /v1/me/coupons": "member",
    "GET /v1/me/coupons/{coupon_id}/qr.png": "member",
    "POST /v1/me/coupons/{coupon_id}/cancel": "member",
    "POST /v1/me/devices": "member",
    "GET /v1/me/devices": "member",
    "DELETE /v1/me/devices/{token:path}": "member",
    "GET /v1/me/inbox": "member",
    "POST /v1/me/inbox/{item_id}/read": "member",
    "POST /v1/pos/identify": "terminal",
    "POST /v1/pos/purchases/quote": "terminal",
    "POST /v1/pos/purchases": "terminal",
    "POST /v1/pos/purchases/batch": "terminal",
    "GET /v1/pos/purchases/{purchase_id}": "terminal",
    "POST /v1/pos/purchases/{purchase_id}/returns": "terminal",
    "GET /v1/pos/redemptions/{redemption_id}": "terminal",
    "POST /v1/pos/vehicles/confirm": "terminal",
    "POST /v1/pos/redemptions": "terminal",
    "POST /v1/pos/redemptions/{redemption_id}/confirm": "terminal",
    "POST /v1/pos/redemptions/{redemption_id}/cancel": "terminal",
    "POST /v1/pos/coupons/redeem": "terminal",
    "GET /v1/rewards": "staff",
    "POST /v1/rewards": "marketing",
    "GET /v1/rewards/{reward_id}": "staff",
    "PATCH /v1/rewards/{reward_id}": "marketing",
    "GET /v1/loyalty/program": "marketing",
    "PUT /v1/loyalty/program": "marketing",
    "GET /v1/loyalty/rules": "marketing",
    "PUT /v1/loyalty/rules": "marketing",
    "POST /v1/loyalty/rules": "marketing",
    "PATCH /v1/loyalty/rules/{rule_id}": "marketing",
    "GET /v1/loyalty/tiers": "marketing",
    "PUT /v1/loyalty/tiers": "marketing",
    "POST /v1/insights/refresh": "marketing",
    "GET /v1/insights/refresh": "managers",
    "GET /v1/insights/settings": "managers",
    "PUT /v1/insights/settings": "marketing",
    "GET /v1/insights/abc": "managers",
    "GET /v1/insights/rfm": "managers",
    "GET /v1/insights/churn": "managers",
    "GET /v1/insights/liability": "managers",
    "GET /v1/insights/kpis": "managers",
    "GET /v1/insights/lapsed": "managers",
    "POST /v1/insights/lapsed/{alert_id}/assign": "managers",
    # the assignee (any store staff) records the outcome; the service checks who
    "POST /v1/insights/lapsed/{alert_id}/outcome": "staff",
    "GET /v1/insights/portfolio": "staff",
    "POST /v1/insights/portfolio": "managers",
    "POST /v1/campaigns": "marketing",
    "GET /v1/campaigns": "marketing",
    "GET /v1/campaigns/{campaign_id}": "marketing",
    "PATCH /v1/campaigns/{campaign_id}": "marketing",
    "POST /v1/campaigns/{campaign_id}/preview": "marketing",
    "POST /v1/campaigns/{campaign_id}/test": "marketing",
    "POST /v1/campaigns/{campaign_id}/schedule": "marketing",
    "POST /v1/campaigns/{campaign_id}/pause": "marketing",
    "POST /v1/campaigns/{campaign_id}/cancel": "marketing",
    "GET /v1/campaigns/{campaign_id}/report": "marketing",
}

# Objects every admitted caller may reach (the catalogue, programme settings, campaigns, and
# organisation objects only an admin touches): no out-of-scope case exists for them.
UNSCOPED_PARAMS = {"reward_id", "rule_id", "campaign_id", "terminal_id", "staff_id"}
# Routes that end the caller's own credentials: swept last, so the others still have them.
SIGNS_OUT = {"POST /v1/staff/me/signout"}
ADMIN_ONLY_STORE_ROUTES = {
    "PATCH /v1/stores/{store_id}",
    "POST /v1/stores/{store_id}/terminals",
    "GET /v1/stores/{store_id}/terminals",
}
GLOBAL_MEMBER_ROUTES = {  # marketing and admin see every member
    "POST /v1/members/{member_id}/adjustments",
    "PUT /v1/members/{member_id}/tier",
}
NON_API_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/admin"}
MISSING_ID = 987654321
UNAUTHENTICATED = {"NotAuthenticated", "MemberNotAuthenticated"}
REFUSED = {"RoleNotAllowed", "CallerNotAllowed"}


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    policy: Policy
    has_body: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    def url(self, ids: dict[str, Any]) -> str:
        return re.sub(r"{(\w+)(?::\w+)?}", lambda m: str(ids[m.group(1)]), self.path)


def route_table(app: FastAPI) -> list[Op]:
    """One Op per APIRoute × method, with the policy read from its effective dependency tree."""
    ops = []
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            policy = policy_of(ctx.dependant, ctx.path)
            for method in sorted(ctx.methods):
                ops.append(Op(method, ctx.path, policy, ctx.body_field is not None))
    return ops


def name_of(policy: Policy) -> str:
    return next((name for name, p in POLICIES.items() if p == policy), repr(policy))


# --- the table -------------------------------------------------------------------------------


def test_every_route_declares_the_expected_policy(app):
    declared = {op.key: name_of(op.policy) for op in route_table(app)}
    assert declared == EXPECTED
    others = {getattr(c.original_route, "path", None) for c in iter_route_contexts(app.routes)}
    assert others - set(EXPECTED_PATHS) == NON_API_ROUTES


EXPECTED_PATHS = {key.split(" ", 1)[1] for key in EXPECTED}


async def test_openapi_publishes_each_operations_policy(client, app):
    spec = (await client.get("/openapi.json")).json()
    for op in route_table(app):
        operation = spec["paths"][op.path.replace(":path", "")][op.method.lower()]
        assert operation["x-access"] == op.policy.describe(), op.key


def test_a_route_without_a_policy_cannot_be_built():
    router = APIRouter(route_class=PolicyRoute)
    with pytest.raises(PolicyError, match="no access policy"):

        @router.get("/open")
        async def forgot() -> None:
            """No auth dependency."""


def test_public_is_declared_not_assumed():
    router = APIRouter(route_class=PolicyRoute)

    @router.get("/ok", dependencies=[Public])
    async def fine() -> None:
        """Anyone."""

    route = router.routes[-1]
    assert isinstance(route, PolicyRoute) and route.access.is_public
    assert route.openapi_extra == {"x-access": ["public"]}


def test_contradicting_policies_cannot_be_built():
    router = APIRouter(route_class=PolicyRoute)
    with pytest.raises(PolicyError, match="no caller can satisfy"):

        @router.get("/both")
        async def both(staff: CurrentStaff, member: CurrentMember) -> None:
            """Staff and member at once: nobody."""

    with pytest.raises(PolicyError, match="declared public but also requires"):

        @router.get("/public-admin", dependencies=[Public])
        async def public_admin(staff: Admin) -> None:
            """Public yet admin-only."""


def test_roles_narrow_to_what_every_dependency_admits():
    router = APIRouter(route_class=PolicyRoute, dependencies=[Depends(lambda: None)])

    @router.get("/narrow")
    async def narrow(staff: CurrentStaff, admin: Admin) -> None:
        """Any staff, and an admin: an admin."""

    assert router.routes[-1].access == Policy.staff("admin")


# --- the world the sweeps run in ----------------------------------------------------------------


@dataclass
class World:
    org: Org
    headers: dict[str, dict[str, str]]
    ids: dict[str, Any]  # path params naming objects the admitted callers may touch
    other: dict[str, Any] = field(default_factory=dict)  # the same kinds, out of scope


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, f"{response.request.url}: {response.text}"
    return response.json()


def _receipt(receipt_no: str, member_id: int) -> dict[str, Any]:
    line = {"line_no": 1, "sku": "SKU-1", "category": "grocery", "quantity": 1, "amount": 100_000}
    return {
        "receipt_no": receipt_no,
        "member_id": member_id,
        "currency": "CNY",
        "total": 100_000,
        "lines": [line],
    }


async def _member_things(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, world: World, **kw: Any
) -> dict[str, Any]:
    """A member of `store` with a purchase, a reservation, a coupon, a vehicle, a device, an
    inbox item and a lapse alert; returns their ids by path parameter name."""
    store, till, reward_id = kw["store"], kw["till"], kw["reward_id"]
    member = await make_member(session, settings, store=store, plate=kw["plate"])
    await session.commit()
    me = member_headers(settings, member)
    bought = await _ok(
        await client.post(
            "/v1/pos/purchases", json=_receipt(f"R-{member.id}", member.id), headers=till
        )
    )
    code = (await _ok(await client.get("/v1/me/card", headers=me)))["code"]
    held = await _ok(
        await client.post(
            "/v1/pos/redemptions", json={"member_code": code, "points": 100}, headers=till
        )
    )
    coupon = await _ok(await client.post(f"/v1/me/rewards/{reward_id}/claim", headers=me))
    vehicle = (await _ok(await client.get("/v1/me/vehicles", headers=me)))[0]
    token = f"fcm-{member.id}"
    await _ok(
        await client.post("/v1/me/devices", json={"token": token, "platform": "ios"}, headers=me)
    )
    delivery = await campaigns.send_test(
        session, world.ids["_campaign"], member_id=member.id, settings=settings
    )
    await session.commit()
    now = clock.now()
    alert = LapseAlert(
        member_id=member.id,
        home_store_id=store.id,
        last_purchase_at=now - timedelta(days=90),
        usual_interval_days=Decimal(30),
        days_since_last=90,
        opened_at=now,
    )
    session.add(alert)
    await session.commit()
    items = (await _ok(await client.get("/v1/me/inbox", headers=me)))["items"]
    assert items and delivery is not None
    return {
        "_member": member,
        "_headers": me,
        "member_id": member.id,
        "purchase_id": bought["purchase_id"],
        "redemption_id": held["id"],
        "coupon_id": coupon["id"],
        "vehicle_id": vehicle["id"],
        "token": token,
        "item_id": items[0]["id"],
        "alert_id": alert.id,
    }


@pytest.fixture
async def world(client, session, settings) -> World:
    """Two members: one at the supermarket (the scope of the store manager, cashier, region
    manager and the supermarket's till), one at the south fuel station (nobody's but admin's)."""
    org = await make_org(session, settings)
    spare = await make_till(session, org.fuel_a)
    _, south_cashier = await make_staff(session, settings, Role.cashier, store_id=org.fuel_b.id)
    campaign = await make_campaign(session, start=False, staff_id=org.staff["marketer"].id)
    await session.commit()
    world = World(org=org, headers=dict(org.headers), ids={"_campaign": campaign})
    reward = await _ok(
        await client.post(
            "/v1/rewards",
            json={"name": "Coffee", "points_cost": 10},
            headers=org.headers["marketer"],
        )
    )
    rule = await _ok(
        await client.post(
            "/v1/loyalty/rules",
            json={
                "code": "policy-test",
                "name": "Fresh produce",
                "kind": "multiplier",
                "params": {"categories": ["produce"], "multiplier_percent": 200},
            },
            headers=org.headers["admin"],
        )
    )
    mine = await _member_things(
        client,
        session,
        settings,
        world,
        store=org.supermarket,
        till=org.terminal(org.supermarket),
        reward_id=reward["id"],
        plate="沪A10001",
    )
    theirs = await _member_things(
        client,
        session,
        settings,
        world,
        store=org.fuel_b,
        till=org.terminal(org.fuel_b),
        reward_id=reward["id"],
        plate="粤B10002",
    )
    world.headers[MEMBER] = mine["_headers"]
    world.headers[TERMINAL] = org.terminal(org.supermarket)
    world.headers["_south_cashier"] = south_cashier
    world.ids |= mine | {
        "store_id": org.supermarket.id,
        "terminal_id": spare.terminal_id,
        "reward_id": reward["id"],
        "rule_id": rule["id"],
        "campaign_id": campaign.id,
        "staff_id": org.staff["cashier"].id,
    }
    world.other = theirs | {"store_id": org.fuel_b.id}
    return world


def headers_of(world: World, principal: str) -> dict[str, str]:
    return world.headers[principal.removeprefix("staff:")]


# --- the sweeps ------------------------------------------------------------------------------


async def test_without_credentials_every_route_is_401(client, app, world):
    for op in route_table(app):
        url = op.url(world.ids)
        # `{}` fails every body schema: 401 must still come first
        r = await client.request(op.method, url, json={} if op.has_body else None)
        if op.policy.is_public:
            assert r.status_code not in (401, 403), f"{op.key}: {r.text}"
            continue
        assert r.status_code == 401, f"{op.key}: {r.text}"
        assert r.json()["error"] in UNAUTHENTICATED and r.headers["www-authenticate"]
        if op.has_body:
            broken = await client.request(
                op.method, url, content=b"{not json", headers={"content-type": "application/json"}
            )
            assert broken.status_code == 401, f"{op.key} with malformed JSON: {broken.text}"


async def test_callers_the_policy_does_not_admit_get_403(client, app, world):
    for op in route_table(app):
        for principal in PRINCIPALS:
            if op.policy.admits(principal):
                continue
            r = await client.request(
                op.method,
                op.url(world.ids),
                json={} if op.has_body else None,
                headers=headers_of(world, principal),
            )
            assert r.status_code == 403, f"{principal} {op.key}: {r.text}"
            assert r.json()["error"] in REFUSED, f"{principal} {op.key}: {r.text}"


async def test_admitted_callers_get_past_the_checks(client, app, world):
    for op in sorted(route_table(app), key=lambda op: op.key in SIGNS_OUT):
        for principal in PRINCIPALS:
            if not op.policy.admits(principal):
                continue
            r = await client.request(
                op.method,
                op.url(world.ids),
                json={} if op.has_body else None,
                headers=headers_of(world, principal),
            )
            assert r.status_code not in (401, 403, 404), f"{principal} {op.key}: {r.text}"


async def test_a_malformed_body_is_still_422_for_an_admitted_caller(client, world):
    r = await client.post(
        "/v1/pos/purchases",
        content=b"{not json",
        headers=world.headers[TERMINAL] | {"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


ASSIGNEE = "{cashier}"  # replaced by the supermarket cashier's id

# (principal, body) tries per route with a path parameter naming a scoped object
SCOPE_CASES: dict[str, list[tuple[str, dict[str, Any] | None]]] = {
    "GET /v1/stores/{store_id}": [
        ("staff:store_manager", None),
        ("staff:region_manager", None),
        ("staff:cashier", None),
    ],
    "GET /v1/members/{member_id}": [
        ("staff:store_manager", None),
        ("staff:region_manager", None),
        ("staff:cashier", None),
    ],
    "POST /v1/pos/purchases/{purchase_id}/returns": [
        (TERMINAL, {"return_no": "RET-1", "lines": [{"line_no": 1}]}),
    ],
    "GET /v1/pos/purchases/{purchase_id}": [(TERMINAL, None)],
    "GET /v1/pos/redemptions/{redemption_id}": [(TERMINAL, None)],
    "POST /v1/pos/redemptions/{redemption_id}/confirm": [(TERMINAL, None)],
    "POST /v1/pos/redemptions/{redemption_id}/cancel": [(TERMINAL, None)],
    "DELETE /v1/me/vehicles/{vehicle_id}": [(MEMBER, None)],
    "GET /v1/me/coupons/{coupon_id}/qr.png": [(MEMBER, None)],
    "POST /v1/me/coupons/{coupon_id}/cancel": [(MEMBER, None)],
    "DELETE /v1/me/devices/{token:path}": [(MEMBER, None)],
    "POST /v1/me/inbox/{item_id}/read": [(MEMBER, None)],
    "POST /v1/insights/lapsed/{alert_id}/assign": [
        ("staff:store_manager", {"staff_id": ASSIGNEE}),
        ("staff:region_manager", {"staff_id": ASSIGNEE}),
    ],
    "POST /v1/insights/lapsed/{alert_id}/outcome": [
        ("staff:store_manager", {"outcome": "reached"}),
        ("staff:cashier", {"outcome": "reached"}),
    ],
}


def test_every_route_naming_an_object_has_an_out_of_scope_case(app):
    for op in route_table(app):
        scoped = [p for p in op.params if p not in UNSCOPED_PARAMS]
        if not scoped or op.key in ADMIN_ONLY_STORE_ROUTES | GLOBAL_MEMBER_ROUTES:
            continue
        assert op.key in SCOPE_CASES, f"{op.key}: add an out-of-scope case or declare it global"


async def test_out_of_scope_is_404_like_a_missing_object(client, app, world):
    ops = {op.key: op for op in route_table(app)}
    missing = {name: MISSING_ID for name in world.other} | {"token": "no-such-token"}
    for key, tries in SCOPE_CASES.items():
        op = ops[key]
        for principal, body in tries:
            headers = headers_of(world, principal)
            if body and body.get("staff_id") == ASSIGNEE:
                body = body | {"staff_id": world.org.staff["cashier"].id}
            hidden = await client.request(
                op.method, op.url(world.other), json=body, headers=headers
            )
            absent = await client.request(op.method, op.url(missing), json=body, headers=headers)
            assert hidden.status_code == 404, f"{principal} {key}: {hidden.text}"
            assert (absent.status_code, absent.json()["error"]) == (
                404,
                hidden.json()["error"],
            ), f"{principal} {key}"


async def test_objects_in_a_body_or_query_are_scoped_too(client, world):
    other = world.other
    mine = world.ids["member_id"]
    manager = world.headers["store_manager"]
    south_cashier_id = (
        await client.get("/v1/staff/me", headers=world.headers["_south_cashier"])
    ).json()["id"]
    own_cashier_id = world.org.staff["cashier"].id
    tries = [
        ("POST", "/v1/insights/portfolio", {"staff_id": south_cashier_id, "member_id": mine}),
        # an in-scope staff member with an out-of-scope member: the member must not show
        (
            "POST",
            "/v1/insights/portfolio",
            {"staff_id": own_cashier_id, "member_id": world.other["member_id"]},
        ),
        ("GET", f"/v1/insights/portfolio?staff_id={south_cashier_id}", None),
        ("POST", "/v1/members", {"phone": "13800138777", "home_store_id": other["store_id"]}),
    ]
    for method, url, body in tries:
        r = await client.request(method, url, json=body, headers=manager)
        assert r.status_code == 404, f"{method} {url} {body}: {r.text}"
    till = await client.post(
        "/v1/members",
        json={"phone": "13800138778", "home_store_id": other["store_id"]},
        headers=world.headers[TERMINAL],
    )
    assert till.status_code == 404
