"""Regions, stores, terminals and staff, driven through the API as an admin."""

import hashlib

import pytest
from sqlalchemy import select

from api.org.models import Staff, Store, Terminal
from tests.factories import PASSWORD


def assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail", "request_id"}
    assert body["error"] == error
    return body


def store_body(region_id: int, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "code": "SH-001",
        "name": "Pudong Hypermarket",
        "region_id": region_id,
        "timezone": "Asia/Shanghai",
        "kind": "supermarket",
    }
    return body | overrides


# --- regions -----------------------------------------------------------------------------------


async def test_create_and_list_regions(client, org):
    admin = org.headers["admin"]
    r = await client.post("/v1/regions", json={"name": "  East  "}, headers=admin)
    assert r.status_code == 201, r.text
    region = r.json()
    assert set(region) == {"id", "name"} and region["name"] == "East"

    listed = (await client.get("/v1/regions", headers=admin)).json()
    assert region in listed
    assert {r["id"] for r in listed} >= {org.north.id, org.south.id, region["id"]}


async def test_region_names_are_unique_and_not_blank(client, org):
    admin = org.headers["admin"]
    r = await client.post("/v1/regions", json={"name": org.north.name}, headers=admin)
    assert_error(r, 409, "RegionExists")
    assert_error(
        await client.post("/v1/regions", json={"name": "  "}, headers=admin), 422, "ValidationError"
    )


# --- stores ------------------------------------------------------------------------------------


async def test_create_store(client, org):
    body = store_body(org.south.id, kind="fuel_station", timezone="Asia/Urumqi")
    r = await client.post("/v1/stores", json=body, headers=org.headers["admin"])
    assert r.status_code == 201, r.text
    store = r.json()
    assert {k: store[k] for k in body} == body
    assert store["active"] is True

    got = await client.get(f"/v1/stores/{store['id']}", headers=org.headers["admin"])
    assert got.json() == store


@pytest.mark.parametrize("zone", ["Mars/Olympus", "asia/shanghai", "UTC+8", ""])
async def test_store_time_zone_must_be_iana(client, org, zone):
    r = await client.post(
        "/v1/stores", json=store_body(org.north.id, timezone=zone), headers=org.headers["admin"]
    )
    body = assert_error(r, 422, "ValidationError")
    assert ["body", "timezone"] in [e["loc"] for e in body["detail"]]


@pytest.mark.parametrize("kind", ["gas_station", "Supermarket", ""])
async def test_store_kind_is_supermarket_or_fuel_station(client, org, kind):
    r = await client.post(
        "/v1/stores", json=store_body(org.north.id, kind=kind), headers=org.headers["admin"]
    )
    body = assert_error(r, 422, "ValidationError")
    assert ["body", "kind"] in [e["loc"] for e in body["detail"]]


async def test_store_needs_an_existing_region_and_a_unique_code(client, org):
    admin = org.headers["admin"]
    missing = await client.post("/v1/stores", json=store_body(999_999), headers=admin)
    assert_error(missing, 404, "RegionNotFound")
    taken = await client.post(
        "/v1/stores", json=store_body(org.north.id, code=org.supermarket.code), headers=admin
    )
    assert_error(taken, 409, "StoreCodeTaken")
    bad_code = await client.post(
        "/v1/stores", json=store_body(org.north.id, code="no spaces"), headers=admin
    )
    assert_error(bad_code, 422, "ValidationError")


async def test_update_store(client, org):
    admin = org.headers["admin"]
    url = f"/v1/stores/{org.fuel_a.id}"
    r = await client.patch(
        url, json={"name": "Airport Fuel", "timezone": "Asia/Harbin"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["timezone"], r.json()["kind"]) == (
        "Airport Fuel",
        "Asia/Harbin",
        "fuel_station",
    )
    bad = await client.patch(url, json={"timezone": "Mars/Olympus"}, headers=admin)
    assert_error(bad, 422, "ValidationError")
    missing = await client.patch("/v1/stores/999999", json={"name": "X"}, headers=admin)
    assert_error(missing, 404, "StoreNotFound")


@pytest.mark.parametrize("field", ["name", "timezone", "active"])
async def test_update_store_with_null_is_refused_not_a_server_error(client, org, field):
    r = await client.patch(
        f"/v1/stores/{org.fuel_a.id}", json={field: None}, headers=org.headers["admin"]
    )
    assert_error(r, 422, "ValidationError")
    got = await client.get(f"/v1/stores/{org.fuel_a.id}", headers=org.headers["admin"])
    assert got.json()[field] is not None


# --- terminals ---------------------------------------------------------------------------------


async def test_terminal_key_is_shown_once_and_stored_hashed(client, org, session):
    admin = org.headers["admin"]
    r = await client.post(
        f"/v1/stores/{org.fuel_b.id}/terminals", json={"name": "Pump island 2"}, headers=admin
    )
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["api_key"]
    assert key.startswith("lk_") and len(key) >= 40
    assert created["store_id"] == org.fuel_b.id and created["revoked_at"] is None
    assert key.startswith(created["key_prefix"])

    listed = (await client.get(f"/v1/stores/{org.fuel_b.id}/terminals", headers=admin)).json()
    mine = next(t for t in listed if t["id"] == created["id"])
    assert "api_key" not in mine
    assert key not in str(listed)

    row = (
        await session.execute(select(Terminal.__table__).where(Terminal.id == created["id"]))
    ).one()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    for value in row:
        assert key not in str(value)

    works = await client.post(
        "/v1/members", json={"phone": "13800138001"}, headers={"X-API-Key": key}
    )
    assert works.status_code == 201, works.text
    assert works.json()["home_store_id"] == org.fuel_b.id


async def test_two_terminals_get_different_keys(client, org):
    admin = org.headers["admin"]
    url = f"/v1/stores/{org.supermarket.id}/terminals"
    first = (await client.post(url, json={"name": "Till 7"}, headers=admin)).json()
    second = (await client.post(url, json={"name": "Till 8"}, headers=admin)).json()
    assert first["api_key"] != second["api_key"]


async def test_revoked_terminal_key_is_refused(client, org):
    key_headers = org.terminal(org.fuel_a)
    assert (
        await client.post("/v1/pos/identify", json={"code": "nobody"}, headers=key_headers)
    ).status_code == 404
    terminals = (
        await client.get(f"/v1/stores/{org.fuel_a.id}/terminals", headers=org.headers["admin"])
    ).json()
    terminal_id = terminals[0]["id"]

    r = await client.delete(f"/v1/terminals/{terminal_id}", headers=org.headers["admin"])
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None
    again = await client.delete(f"/v1/terminals/{terminal_id}", headers=org.headers["admin"])
    assert again.json()["revoked_at"] == r.json()["revoked_at"]

    for method, url, body in [
        ("POST", "/v1/pos/identify", {"code": "nobody"}),
        ("POST", "/v1/members", {"phone": "13800138002"}),
    ]:
        refused = await client.request(method, url, json=body, headers=key_headers)
        assert_error(refused, 401, "InvalidApiKey")
        assert refused.headers["www-authenticate"] == "ApiKey"

    missing = await client.delete("/v1/terminals/999999", headers=org.headers["admin"])
    assert_error(missing, 404, "TerminalNotFound")


async def test_unknown_key_and_inactive_store_are_refused(client, org):
    bogus = await client.post(
        "/v1/pos/identify", json={"code": "x"}, headers={"X-API-Key": "lk_bogus"}
    )
    assert_error(bogus, 401, "InvalidApiKey")

    await client.patch(
        f"/v1/stores/{org.fuel_b.id}", json={"active": False}, headers=org.headers["admin"]
    )
    closed = await client.post(
        "/v1/pos/identify", json={"code": "x"}, headers=org.terminal(org.fuel_b)
    )
    assert_error(closed, 401, "InvalidApiKey")


async def test_terminal_for_missing_store_is_404(client, org):
    r = await client.post(
        "/v1/stores/999999/terminals", json={"name": "T"}, headers=org.headers["admin"]
    )
    assert_error(r, 404, "StoreNotFound")


# --- staff -------------------------------------------------------------------------------------


def staff_body(role: str, **scope: object) -> dict[str, object]:
    return {"email": f"new.{role}@example.com", "password": PASSWORD, "role": role, **scope}


async def test_staff_scope_rules(client, org):
    ok = [
        ("admin", {}, None, None),
        ("marketer", {}, None, None),
        ("region_manager", {"region_id": org.south.id}, org.south.id, None),
        ("store_manager", {"store_id": org.fuel_b.id}, org.south.id, org.fuel_b.id),
        ("cashier", {"store_id": org.fuel_a.id}, org.north.id, org.fuel_a.id),
    ]
    for role, scope, region_id, store_id in ok:
        r = await client.post(
            "/v1/staff", json=staff_body(role, **scope), headers=org.headers["admin"]
        )
        assert r.status_code == 201, r.text
        staff = r.json()
        assert (staff["role"], staff["region_id"], staff["store_id"]) == (role, region_id, store_id)
        assert "password" not in staff and "password_hash" not in staff


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        ("region_manager", {}),
        ("region_manager", {"store_id": "supermarket"}),
        ("region_manager", {"region_id": "north", "store_id": "supermarket"}),
        ("store_manager", {}),
        ("store_manager", {"region_id": "north"}),
        ("cashier", {}),
        ("admin", {"region_id": "north"}),
        ("admin", {"store_id": "supermarket"}),
        ("marketer", {"region_id": "north"}),
        ("marketer", {"store_id": "fuel_a"}),
    ],
)
async def test_staff_scope_that_does_not_fit_the_role_is_422(client, org, session, role, scope):
    ids = {"north": org.north.id, "supermarket": org.supermarket.id, "fuel_a": org.fuel_a.id}
    body = staff_body(role, **{k: ids[v] for k, v in scope.items()})
    r = await client.post("/v1/staff", json=body, headers=org.headers["admin"])
    assert_error(r, 422, "InvalidScope")
    assert (
        await session.execute(select(Staff).where(Staff.email == body["email"]))
    ).first() is None


async def test_staff_in_unknown_region_or_store_is_404(client, org):
    admin = org.headers["admin"]
    r = await client.post(
        "/v1/staff", json=staff_body("store_manager", store_id=999_999), headers=admin
    )
    assert_error(r, 404, "StoreNotFound")
    r = await client.post(
        "/v1/staff", json=staff_body("region_manager", region_id=999_999), headers=admin
    )
    assert_error(r, 404, "RegionNotFound")


async def test_staff_email_is_unique_ignoring_case(client, org):
    body = staff_body("marketer") | {"email": org.staff["marketer"].email.upper()}
    assert_error(
        await client.post("/v1/staff", json=body, headers=org.headers["admin"]), 409, "StaffExists"
    )


@pytest.mark.parametrize(
    "change", [{"password": "short"}, {"email": "not-an-email"}, {"role": "owner"}]
)
async def test_staff_body_is_validated(client, org, change):
    r = await client.post(
        "/v1/staff", json=staff_body("marketer") | change, headers=org.headers["admin"]
    )
    assert_error(r, 422, "ValidationError")


async def test_created_staff_can_sign_in_and_is_scoped(client, org, session):
    r = await client.post(
        "/v1/staff",
        json=staff_body("store_manager", store_id=org.fuel_b.id) | {"email": "Mgr@Example.com"},
        headers=org.headers["admin"],
    )
    assert r.status_code == 201
    assert r.json()["email"] == "mgr@example.com"
    stored = (
        await session.execute(select(Staff.password_hash).where(Staff.id == r.json()["id"]))
    ).scalar_one()
    assert stored.startswith("$argon2") and PASSWORD not in stored

    token = (
        await client.post(
            "/v1/auth/token", data={"username": "mgr@example.com", "password": PASSWORD}
        )
    ).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    stores = (await client.get("/v1/stores", headers=headers)).json()
    assert [s["id"] for s in stores] == [org.fuel_b.id]
    regions = (await client.get("/v1/regions", headers=headers)).json()
    assert [r["id"] for r in regions] == [org.south.id]


async def test_list_staff(client, org):
    listed = (await client.get("/v1/staff", headers=org.headers["admin"])).json()
    assert {s["role"] for s in listed} >= {
        "admin",
        "marketer",
        "region_manager",
        "store_manager",
        "cashier",
    }
    assert all("password_hash" not in s for s in listed)


async def test_store_rows_keep_the_time_zone_and_kind(client, org, session):
    body = store_body(org.north.id, code="FUEL-9", kind="fuel_station", timezone="Asia/Hong_Kong")
    r = await client.post("/v1/stores", json=body, headers=org.headers["admin"])
    row = (
        await session.execute(select(Store.timezone, Store.kind).where(Store.id == r.json()["id"]))
    ).one()
    assert tuple(row) == ("Asia/Hong_Kong", "fuel_station")
