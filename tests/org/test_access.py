"""Role × endpoint: no credentials 401, wrong role 403, out of scope 404; the error envelope."""

import pytest
from sqlalchemy import func, select

from api.org.models import Region, Store
from tests.factories import Org, make_member, member_headers

ROLES = ("admin", "marketer", "region_manager", "store_manager", "cashier")
STAFF_ROLES = set(ROLES)


def assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    body = response.json()
    assert set(body) >= {"error", "detail", "request_id"}
    assert body["error"] == error
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def org_endpoints(org: Org) -> list[tuple[str, str, dict | None, set[str]]]:
    """(method, path, json body, roles allowed) for every organisation endpoint."""
    admin = {"admin"}
    store = org.supermarket.id
    return [
        ("GET", "/v1/staff/me", None, STAFF_ROLES),
        ("POST", "/v1/regions", {"name": "West"}, admin),
        ("GET", "/v1/regions", None, STAFF_ROLES),
        (
            "POST",
            "/v1/stores",
            {
                "code": "NEW-1",
                "name": "New",
                "region_id": org.north.id,
                "timezone": "Asia/Shanghai",
                "kind": "supermarket",
            },
            admin,
        ),
        ("GET", "/v1/stores", None, STAFF_ROLES),
        ("GET", f"/v1/stores/{store}", None, STAFF_ROLES),
        ("PATCH", f"/v1/stores/{store}", {"name": "Renamed"}, admin),
        ("POST", f"/v1/stores/{store}/terminals", {"name": "Till 9"}, admin),
        ("GET", f"/v1/stores/{store}/terminals", None, admin),
        ("DELETE", "/v1/terminals/1", None, admin),
        (
            "POST",
            "/v1/staff",
            {"email": "x@example.com", "password": "long-enough-pw", "role": "marketer"},
            admin,
        ),
        ("GET", "/v1/staff", None, admin),
    ]


def staff_member_endpoints(member_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("POST", "/v1/members", {"phone": "13800138555"}),
        ("GET", "/v1/members", None),
        ("GET", "/v1/members?q=138", None),
        ("GET", f"/v1/members/{member_id}", None),
    ]


def me_endpoints() -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", "/v1/me", None),
        ("PATCH", "/v1/me", {"name": "X"}),
        ("GET", "/v1/me/card", None),
        ("GET", "/v1/me/card/qr.png", None),
        ("GET", "/v1/me/card/qr.svg", None),
        ("GET", "/v1/me/vehicles", None),
        ("POST", "/v1/me/vehicles", {"plate": "沪A12345"}),
        ("DELETE", "/v1/me/vehicles/1", None),
        ("POST", "/v1/auth/logout", {"refresh_token": "rt_0123456789abcdef"}),
    ]


# --- 401 without credentials -------------------------------------------------------------------


async def test_every_org_endpoint_needs_staff_credentials(client, org):
    for method, path, body, _ in org_endpoints(org):
        r = await client.request(method, path, json=body)
        assert_error(r, 401, "NotAuthenticated")
        assert r.headers["www-authenticate"] == "Bearer"


async def test_every_member_endpoint_needs_credentials(client, org, session, settings):
    member = await make_member(session, settings, store=org.supermarket)
    await session.commit()
    for method, path, body in staff_member_endpoints(member.id):
        assert_error(await client.request(method, path, json=body), 401, "NotAuthenticated")
    for method, path, body in me_endpoints():
        assert_error(await client.request(method, path, json=body), 401, "MemberNotAuthenticated")


async def test_tokens_of_one_kind_do_not_open_the_other(client, org, session, settings):
    member = await make_member(session, settings, store=org.supermarket)
    await session.commit()
    as_member = member_headers(settings, member)
    for method, path, body, _ in org_endpoints(org):
        r = await client.request(method, path, json=body, headers=as_member)
        assert_error(r, 401, "NotAuthenticated")
    for method, path, body in staff_member_endpoints(member.id):
        r = await client.request(method, path, json=body, headers=as_member)
        assert_error(r, 401, "NotAuthenticated")
    for method, path, body in me_endpoints():
        r = await client.request(method, path, json=body, headers=org.headers["admin"])
        assert_error(r, 401, "MemberNotAuthenticated")


async def test_a_terminal_key_opens_only_till_endpoints(client, org, session, settings):
    member = await make_member(session, settings, store=org.supermarket)
    await session.commit()
    till = org.terminal(org.supermarket)
    for method, path, body, _ in org_endpoints(org):
        r = await client.request(method, path, json=body, headers=till)
        assert_error(r, 401, "NotAuthenticated")
    for method, path, body in staff_member_endpoints(member.id)[1:]:
        assert_error(
            await client.request(method, path, json=body, headers=till), 401, "NotAuthenticated"
        )
    enrol = await client.post("/v1/members", json={"phone": "13800138556"}, headers=till)
    assert enrol.status_code == 201


# --- 403 for the wrong role --------------------------------------------------------------------


async def test_wrong_role_is_403_on_every_org_endpoint(client, org, session):
    regions_before = await session.scalar(select(func.count()).select_from(Region))
    stores_before = await session.scalar(select(func.count()).select_from(Store))
    for method, path, body, allowed in org_endpoints(org):
        for role in sorted(STAFF_ROLES - allowed):
            r = await client.request(method, path, json=body, headers=org.headers[role])
            body_ = assert_error(r, 403, "RoleNotAllowed")
            assert "role" in body_["detail"]
    assert await session.scalar(select(func.count()).select_from(Region)) == regions_before
    assert await session.scalar(select(func.count()).select_from(Store)) == stores_before
    renamed = (
        await client.get(f"/v1/stores/{org.supermarket.id}", headers=org.headers["admin"])
    ).json()
    assert renamed["name"] != "Renamed"


async def test_allowed_roles_pass_every_org_endpoint(client, org):
    for method, path, body, allowed in org_endpoints(org):
        for role in sorted(allowed):
            r = await client.request(method, path, json=body, headers=org.headers[role])
            assert r.status_code not in (401, 403), f"{role} {method} {path}: {r.text}"


@pytest.mark.parametrize("role", ["marketer", "cashier", "store_manager", "region_manager"])
async def test_only_admin_creates_stores(client, org, role):
    r = await client.post(
        "/v1/stores",
        json={
            "code": f"X-{role}",
            "name": "X",
            "region_id": org.north.id,
            "timezone": "Asia/Shanghai",
            "kind": "fuel_station",
        },
        headers=org.headers[role],
    )
    assert_error(r, 403, "RoleNotAllowed")


# --- 404 out of scope --------------------------------------------------------------------------


async def test_stores_are_scoped(client, org):
    seen = {
        role: {s["id"] for s in (await client.get("/v1/stores", headers=org.headers[role])).json()}
        for role in ROLES
    }
    everything = {org.supermarket.id, org.fuel_a.id, org.fuel_b.id}
    assert seen["admin"] >= everything and seen["marketer"] >= everything
    assert seen["region_manager"] == {org.supermarket.id, org.fuel_a.id}
    assert seen["store_manager"] == seen["cashier"] == {org.supermarket.id}

    for role, hidden in [
        ("region_manager", org.fuel_b),
        ("store_manager", org.fuel_a),
        ("store_manager", org.fuel_b),
        ("cashier", org.fuel_b),
    ]:
        r = await client.get(f"/v1/stores/{hidden.id}", headers=org.headers[role])
        assert_error(r, 404, "StoreNotFound")
    ok = await client.get(f"/v1/stores/{org.fuel_a.id}", headers=org.headers["region_manager"])
    assert ok.status_code == 200


async def test_out_of_scope_looks_like_missing(client, org):
    """404 for another region's store is indistinguishable from an id that does not exist."""
    hidden = await client.get(f"/v1/stores/{org.fuel_b.id}", headers=org.headers["region_manager"])
    missing = await client.get("/v1/stores/999999", headers=org.headers["region_manager"])
    assert (hidden.status_code, hidden.json()["error"], hidden.json()["detail"]) == (
        missing.status_code,
        missing.json()["error"],
        missing.json()["detail"],
    )


async def test_regions_are_scoped(client, org):
    for role, expected in [("region_manager", org.north.id), ("store_manager", org.north.id)]:
        regions = (await client.get("/v1/regions", headers=org.headers[role])).json()
        assert [r["id"] for r in regions] == [expected]


async def test_member_reads_are_scoped(client, org, session, settings):
    home = {
        "supermarket": await make_member(session, settings, store=org.supermarket),
        "fuel_a": await make_member(session, settings, store=org.fuel_a),
        "fuel_b": await make_member(session, settings, store=org.fuel_b),
        "none": await make_member(session, settings),
    }
    await session.commit()
    visible = {
        "admin": set(home),
        "marketer": set(home),
        "region_manager": {"supermarket", "fuel_a"},
        "store_manager": {"supermarket"},
        "cashier": {"supermarket"},
    }
    for role, keys in visible.items():
        for key, member in home.items():
            r = await client.get(f"/v1/members/{member.id}", headers=org.headers[role])
            if key in keys:
                assert r.status_code == 200, (role, key, r.text)
                assert r.json()["phone"] == member.phone
            else:
                body = assert_error(r, 404, "MemberNotFound")
                assert member.phone not in str(body)


async def test_member_search_never_lists_out_of_scope_members(client, org, session, settings):
    members = {
        store.code: await make_member(session, settings, store=store, name="张三丰", plate=plate)
        for store, plate in [
            (org.supermarket, "沪A00001"),
            (org.fuel_a, "沪A00002"),
            (org.fuel_b, "粤B00003"),
        ]
    }
    await session.commit()
    by_store = {m.id: code for code, m in members.items()}

    async def found(role: str, q: str) -> set[str]:
        r = await client.get("/v1/members", params={"q": q}, headers=org.headers[role])
        assert r.status_code == 200, r.text
        return {by_store[m["id"]] for m in r.json()["items"] if m["id"] in by_store}

    every = set(by_store.values())
    north = {org.supermarket.code, org.fuel_a.code}
    own = {org.supermarket.code}
    assert await found("admin", "张三丰") == every
    assert await found("marketer", "张三丰") == every
    assert await found("region_manager", "张三丰") == north
    assert await found("store_manager", "张三丰") == own
    assert await found("cashier", "张三丰") == own

    other = members[org.fuel_b.code]
    for q in (other.phone, other.phone[3:], other.card_number, "粤B00003", "粤b·000 03"):
        assert await found("store_manager", q) == set(), q
        assert await found("region_manager", q) == set(), q
        assert await found("admin", q) == {org.fuel_b.code}, q

    listing = (await client.get("/v1/members", headers=org.headers["store_manager"])).json()
    homes = {m["home_store_id"] for m in listing["items"]}
    assert homes == {org.supermarket.id}


async def test_enrolment_cannot_place_a_member_out_of_scope(client, org):
    for headers in (org.headers["store_manager"], org.terminal(org.supermarket)):
        r = await client.post(
            "/v1/members",
            json={"phone": "13800138444", "home_store_id": org.fuel_b.id},
            headers=headers,
        )
        assert_error(r, 404, "StoreNotFound")
    ok = await client.post(
        "/v1/members",
        json={"phone": "13800138444", "home_store_id": org.fuel_b.id},
        headers=org.headers["admin"],
    )
    assert ok.status_code == 201 and ok.json()["home_store_id"] == org.fuel_b.id


# --- envelope ----------------------------------------------------------------------------------


async def test_error_envelope_echoes_the_callers_request_id(client, org):
    r = await client.get(
        f"/v1/stores/{org.fuel_b.id}",
        headers=org.headers["store_manager"] | {"X-Request-ID": "trace-42"},
    )
    body = assert_error(r, 404, "StoreNotFound")
    assert body["request_id"] == "trace-42"
    unknown = await client.get("/v1/no-such-path")
    assert_error(unknown, 404, "NotFound")
