"""Signing out ends something: console sessions are server-side rows (sign-out ends a copied
cookie too), "sign out everywhere" and deactivation (PATCH /v1/staff/{id}) end every console
session and API token of the account at the next request."""

from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select

from admin import session as console_session
from api.core import clock
from api.org import service as org_service
from api.org.models import Role, StaffSession
from tests.admin.conftest import console_for  # noqa: F401  (the fixture)
from tests.factories import PASSWORD, make_staff


def assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    return body


def cookie_of(console) -> str:  # type: ignore[no-untyped-def]
    value = console.client.cookies.get(console_session.SESSION_COOKIE)
    assert value
    return value


def replay(app, cookie: str) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    """Another browser that got hold of a copy of the session cookie."""
    transport = httpx.ASGITransport(app=app, client=("198.51.100.66", 50000))
    return httpx.AsyncClient(
        transport=transport,
        base_url="https://console.test",
        cookies={console_session.SESSION_COOKIE: cookie},
    )


async def api_token(client, email: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = await client.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_a_copied_cookie_stops_working_after_sign_out(app, console_for, org):  # noqa: F811
    console = await console_for(org.staff["admin"].email)
    cookie = cookie_of(console)
    async with replay(app, cookie) as thief:
        assert (await thief.get("/admin/org")).status_code == 200
        await console.get("/org")
        assert (await console.post("/logout")).status_code == 303
        r = await thief.get("/admin/org")
        assert r.status_code == 303 and "/admin/login" in r.headers["location"]
    assert (await console.get("/org")).status_code == 303


async def test_each_console_sign_in_is_its_own_session(app, console_for, org, session):  # noqa: F811
    email = org.staff["marketer"].email
    laptop = await console_for(email)
    desk = await console_for(email)
    await laptop.get("/dashboard")
    assert (await laptop.post("/logout")).status_code == 303
    assert (await desk.get("/dashboard")).status_code == 200  # the other sign-in goes on
    rows = (
        (
            await session.execute(
                select(StaffSession).where(StaffSession.staff_id == org.staff["marketer"].id)
            )
        )
        .scalars()
        .all()
    )
    assert len(rows) == 2 and sum(r.revoked_at is not None for r in rows) == 1
    for row in rows:  # only a digest of the session id is stored
        assert len(row.sid_hash) == 64


async def test_a_validly_signed_cookie_without_a_session_is_refused(app, org, settings):
    """Even with the secret, a cookie needs a session the server started."""
    forged = console_session.issue(settings, org.staff["admin"].id, "made-up-session-id")
    async with replay(app, forged) as outsider:
        r = await outsider.get("/admin/org")
        assert r.status_code == 303 and "/admin/login" in r.headers["location"]


async def test_the_session_slides_only_while_it_is_live(app, console_for, org, session):  # noqa: F811
    console = await console_for(org.staff["admin"].email)
    staff_id = org.staff["admin"].id
    with clock.frozen(clock.now()) as frozen:
        frozen.tick(40 * 60)  # past half of the 60-minute session
        r = await console.get("/org")
        assert r.status_code == 200
        assert "loyalty_console=" in r.headers.get("set-cookie", "")
        row = (
            await session.execute(
                select(StaffSession)
                .where(StaffSession.staff_id == staff_id)
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        assert row.expires_at > clock.now() + timedelta(minutes=59)
        cookie = cookie_of(console)
        await console.post("/logout")
        async with replay(app, cookie) as thief:  # a revoked session gets no fresh cookie
            frozen.tick(35 * 60)  # the copy is in its second half too
            r = await thief.get("/admin/org")
            assert r.status_code == 303
            assert "loyalty_console=" not in r.headers.get("set-cookie", "")


async def test_sign_out_everywhere_ends_tokens_and_sessions(app, client, console_for, org):  # noqa: F811
    email = org.staff["store_manager"].email
    console = await console_for(email)
    phone, tablet = await api_token(client, email), await api_token(client, email)
    assert (await client.get("/v1/staff/me", headers=tablet)).status_code == 200

    r = await client.post("/v1/staff/me/signout", headers=phone)
    assert r.status_code == 204
    for headers in (phone, tablet):
        assert_error(await client.get("/v1/staff/me", headers=headers), 401, "NotAuthenticated")
    r = await console.get("/dashboard")
    assert r.status_code == 303 and "/admin/login" in r.headers["location"]
    # signing in again works, and the new token is of the new generation
    fresh = await api_token(client, email)
    assert (await client.get("/v1/staff/me", headers=fresh)).status_code == 200
    # the other staff are untouched
    assert (await client.get("/v1/staff/me", headers=org.headers["admin"])).status_code == 200


async def test_the_console_can_sign_out_everywhere(client, console_for, org):  # noqa: F811
    email = org.staff["region_manager"].email
    console = await console_for(email)
    token = await api_token(client, email)
    page = await console.get("/dashboard")
    assert "Sign out everywhere" in page.text
    r = await console.post("/logout", {"everywhere": "1"})
    assert r.status_code == 303
    assert_error(await client.get("/v1/staff/me", headers=token), 401, "NotAuthenticated")


async def test_deactivation_ends_tokens_and_sessions_at_the_next_request(
    app,
    client,
    console_for,  # noqa: F811
    org,
    settings,
):
    cashier = org.staff["cashier"]
    console = await console_for(cashier.email)
    token = await api_token(client, cashier.email)
    assert (await console.get("/till")).status_code == 200

    r = await client.patch(
        f"/v1/staff/{cashier.id}", json={"active": False}, headers=org.headers["admin"]
    )
    assert r.status_code == 200 and r.json()["active"] is False
    assert_error(await client.get("/v1/staff/me", headers=token), 401, "NotAuthenticated")
    assert (await console.get("/till")).status_code == 303

    # reactivating does not bring the old token or session back
    r = await client.patch(
        f"/v1/staff/{cashier.id}", json={"active": True}, headers=org.headers["admin"]
    )
    assert r.status_code == 200 and r.json()["active"] is True
    assert_error(await client.get("/v1/staff/me", headers=token), 401, "NotAuthenticated")
    assert (await console.get("/till")).status_code == 303
    claims = jwt.decode(token["Authorization"].split()[1], options={"verify_signature": False})
    assert claims["gen"] == 0
    fresh = await api_token(client, cashier.email)
    assert (await client.get("/v1/staff/me", headers=fresh)).status_code == 200


async def test_a_token_of_an_old_generation_is_refused(client, session, settings):
    staff, headers = await make_staff(session, settings, Role.marketer)
    await session.commit()
    old_token, _ = org_service.issue_staff_token(settings, staff)
    staff.token_generation += 1
    await session.commit()
    for stale in (headers, {"Authorization": f"Bearer {old_token}"}):
        assert_error(await client.get("/v1/staff/me", headers=stale), 401, "NotAuthenticated")
    new_token, _ = org_service.issue_staff_token(settings, staff)
    ok = await client.get("/v1/staff/me", headers={"Authorization": f"Bearer {new_token}"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"active": False}, 409, "StaffSelfChange"),
        ({"role": "marketer"}, 409, "StaffSelfChange"),
        ({"active": None}, 422, "ValidationError"),
        ({"password": "x" * 12}, 422, "ValidationError"),
    ],
)
async def test_an_admin_cannot_lock_themselves_out(client, org, body, status, error):
    admin = org.staff["admin"]
    r = await client.patch(f"/v1/staff/{admin.id}", json=body, headers=org.headers["admin"])
    assert_error(r, status, error)
    assert (await client.get("/v1/staff/me", headers=org.headers["admin"])).status_code == 200


async def test_patch_staff_changes_name_role_and_scope(client, org):
    cashier = org.staff["cashier"]
    admin = org.headers["admin"]
    r = await client.patch(
        f"/v1/staff/{cashier.id}",
        json={"name": "Li Lei", "role": "store_manager", "store_id": org.fuel_a.id},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["role"], r.json()["store_id"]) == (
        "Li Lei",
        "store_manager",
        org.fuel_a.id,
    )
    assert r.json()["region_id"] == org.fuel_a.region_id
    bad = await client.patch(
        f"/v1/staff/{cashier.id}", json={"role": "region_manager"}, headers=admin
    )
    assert_error(bad, 422, "InvalidScope")
    missing = await client.patch("/v1/staff/987654321", json={"name": "x"}, headers=admin)
    assert_error(missing, 404, "StaffNotFound")
    refused = await client.patch(
        f"/v1/staff/{cashier.id}", json={"active": False}, headers=org.headers["marketer"]
    )
    assert_error(refused, 403, "RoleNotAllowed")


async def test_housekeeping_drops_ended_console_sessions(console_for, org, session):  # noqa: F811
    from api.org import signin

    console = await console_for(org.staff["admin"].email)
    await console.get("/org")
    await console.post("/logout")
    await console_for(org.staff["admin"].email)  # a live one
    assert await signin.prune_console_sessions(session) == 0  # kept a day after they end
    with clock.frozen(clock.now() + timedelta(days=2)):
        assert await signin.prune_console_sessions(session) == 2  # revoked; expired
    assert (await session.execute(select(StaffSession.id))).scalars().all() == []
