"""Role × endpoint: no credentials 401, wrong role 403, out of scope 404; the error envelope."""

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


# Every route's 401 / 403 / admitted sweep is generated from the route table in
# tests/core/test_access_policy.py; these tests check what the sweep does not: the envelope,
# the message, and that a refused call changed nothing.


async def test_a_valid_credential_of_the_wrong_kind_is_403_an_invalid_one_401(
    client, org, session, settings
):
    member = await make_member(session, settings, store=org.supermarket)
    await session.commit()
    as_member = member_headers(settings, member)
    till = org.terminal(org.supermarket)
    for headers, sent in ((as_member, "a member token"), (till, "a terminal API key")):
        body = assert_error(
            await client.get("/v1/staff/me", headers=headers), 403, "CallerNotAllowed"
        )
        assert sent in body["detail"]
    body = assert_error(
        await client.get("/v1/me", headers=org.headers["admin"]), 403, "CallerNotAllowed"
    )
    assert "a staff token" in body["detail"]
    body = assert_error(
        await client.post("/v1/pos/identify", json={"code": "x"}, headers=as_member),
        403,
        "CallerNotAllowed",
    )
    assert "a member token" in body["detail"]
    unknown = {"Authorization": "Bearer not-a-token"}
    for url in ("/v1/staff/me", "/v1/me"):
        r = await client.get(url, headers=unknown)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    bogus_key = await client.get("/v1/staff/me", headers={"X-API-Key": "lk_bogus"})
    assert_error(bogus_key, 401, "InvalidApiKey")


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
