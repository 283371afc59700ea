"""The console over HTTP (no browser): sign-in and the session cookie, CSRF on every form,
menus and pages by role, scoping like the API, and the access log of personal-data views."""

import pytest
from sqlalchemy import func, select

from admin.routes import (
    auth,
    campaigns,
    imports,
    insights,
    members,
    org,
    rewards,
    rules,
    settings,
    till,
)
from api.core.models import AccessLog
from api.org import service as org_service
from api.org.models import Region
from tests import factories


async def test_sign_in_sets_a_short_lived_http_only_session_cookie(console_for, org):
    console = await console_for(None)
    page = await console.get("/login")
    assert page.status_code == 200 and "Sign in" in page.text
    response = await console.post(
        "/login", {"email": org.staff["marketer"].email, "password": factories.PASSWORD}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/dashboard"
    cookie = next(h for h in response.headers.get_list("set-cookie") if "loyalty_console=" in h)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    assert "Max-Age=3600" in cookie and "Path=/admin" in cookie


async def test_wrong_password_shows_the_form_again(console_for, org):
    console = await console_for(None)
    await console.get("/login")
    response = await console.post(
        "/login", {"email": org.staff["admin"].email, "password": "not-the-password"}
    )
    assert response.status_code == 401
    assert "Incorrect e-mail or password" in response.text
    assert "loyalty_console=" not in response.headers.get("set-cookie", "")


async def test_pages_need_a_session(console_for, org):
    console = await console_for(None)
    response = await console.get("/campaigns")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login?next=")


async def test_sign_out_ends_the_session(console_for, org):
    console = await console_for(org.staff["admin"].email)
    assert (await console.get("/org")).status_code == 200
    response = await console.post("/logout")
    assert response.status_code == 303
    assert (await console.get("/org")).status_code == 303


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    console_for, org, session
):
    console = await console_for(org.staff["admin"].email)
    await console.get("/org")
    before = await session.scalar(select(func.count()).select_from(Region))
    for token in (None, "0" * 64):
        data = {"region.name": "Never created"}
        if token is not None:
            data["csrf_token"] = token
        response = await console.client.post("/admin/org/regions", data=data)
        assert response.status_code == 403
        assert "not sent from this console session" in response.text
    assert await session.scalar(select(func.count()).select_from(Region)) == before
    ok = await console.post("/org/regions", {"region.name": "Created with the token"})
    assert ok.status_code == 303


async def test_the_csrf_token_of_another_session_is_refused(console_for, org):
    mine = await console_for(org.staff["admin"].email)
    theirs = await console_for(org.staff["admin"].email)
    await theirs.get("/org")
    await mine.get("/org")
    response = await mine.client.post(
        "/admin/org/regions", data={"csrf_token": theirs.csrf, "region.name": "Cross-session"}
    )
    assert response.status_code == 403


async def test_sign_in_itself_needs_the_pre_session_token(console_for, org):
    console = await console_for(None)
    await console.get("/login")
    response = await console.client.post(
        "/admin/login", data={"email": org.staff["admin"].email, "password": factories.PASSWORD}
    )
    assert response.status_code == 403


async def test_htmx_posts_carry_the_token_in_a_header(console_for, org, session, settings):
    member = await factories.make_member(session, settings, store=org.supermarket)
    await session.commit()
    console = await console_for(org.staff["cashier"].email)
    await console.get("/till")
    headers = {"HX-Request": "true", "X-CSRF-Token": console.csrf}
    found = await console.client.post(
        "/admin/till/identify", data={"code": member.phone}, headers=headers
    )
    assert found.status_code == 200 and "member-card" in found.text
    refused = await console.client.post(
        "/admin/till/identify", data={"code": member.phone}, headers={"HX-Request": "true"}
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("role", "allowed", "refused"),
    [
        ("cashier", ["/till"], ["/campaigns", "/dashboard", "/members", "/org", "/imports"]),
        (
            "store_manager",
            ["/dashboard", "/members", "/till", "/insights/lapsed"],
            ["/campaigns", "/org"],
        ),
        (
            "marketer",
            ["/campaigns", "/settings/program", "/dashboard"],
            ["/org", "/till", "/imports"],
        ),
        ("admin", ["/org", "/org/staff", "/imports", "/campaigns", "/settings/tiers"], ["/till"]),
    ],
)
async def test_menus_and_pages_follow_the_role(console_for, org, role, allowed, refused):
    console = await console_for(org.staff[role].email)
    for path in allowed:
        page = await console.get(path)
        assert page.status_code == 200, (role, path, page.text[:300])
    menu = page.text.split("</nav>")[0]
    for path in refused:
        assert f'href="/admin{path}"' not in menu, (role, path)
        assert (await console.get(path)).status_code == 403, (role, path)


async def test_cashier_lands_on_the_till(console_for, org):
    console = await console_for(org.staff["cashier"].email)
    response = await console.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/admin/till"


async def test_store_manager_sees_only_their_stores_members(console_for, org, session, settings):
    own = await factories.make_member(session, settings, store=org.supermarket, name="本店会员")
    other = await factories.make_member(session, settings, store=org.fuel_b, name="外店会员")
    await session.commit()
    console = await console_for(org.staff["store_manager"].email)
    assert (await console.get(f"/members/{own.id}")).status_code == 200
    assert (await console.get(f"/members/{other.id}")).status_code == 404
    listing = await console.get("/members")
    assert "本店会员" in listing.text and "外店会员" not in listing.text
    found = await console.get("/members", params={"q": other.phone})
    assert "外店会员" not in found.text


async def test_viewing_a_profile_is_logged(console_for, org, session, settings):
    member = await factories.make_member(session, settings, store=org.supermarket)
    await session.commit()
    console = await console_for(org.staff["region_manager"].email)

    async def logged() -> list[str]:
        rows = await session.execute(
            select(AccessLog.action).where(
                AccessLog.member_id == member.id,
                AccessLog.staff_id == org.staff["region_manager"].id,
            )
        )
        return list(rows.scalars())

    assert await logged() == []
    page = await console.get(f"/members/{member.id}")
    assert page.status_code == 200 and member.phone in page.text
    assert await logged() == ["console profile"]
    await console.get("/members", params={"q": member.phone})
    assert sorted(await logged()) == ["console profile", "console search"]


async def test_admin_creates_a_terminal_and_sees_its_key_once(console_for, org, session):
    console = await console_for(org.staff["admin"].email)
    await console.get(f"/org/stores/{org.fuel_a.id}")
    created = await console.post(f"/org/stores/{org.fuel_a.id}/terminals", {"name": "Pump kiosk"})
    assert created.status_code == 200
    assert "data-api-key" in created.text and "lk_" in created.text
    again = await console.get(f"/org/stores/{org.fuel_a.id}")
    assert "Pump kiosk" in again.text and "data-api-key" not in again.text
    terminal = next(
        t
        for t in await org_service.list_terminals(session, store_id=org.fuel_a.id)
        if t.name == "Pump kiosk"
    )
    revoked = await console.post(f"/org/terminals/{terminal.id}/revoke")
    assert revoked.status_code == 303
    await session.refresh(terminal)
    assert terminal.revoked_at is not None


async def test_form_errors_show_beside_the_fields(console_for, org):
    console = await console_for(org.staff["marketer"].email)
    await console.get("/settings/program")
    response = await console.post(
        "/settings/program",
        {
            "currency": "CNY",
            "timezone": "Mars/Olympus",
            "earn_points": "-3",
            "earn_amount": "1.00",
            "rounding": "floor",
            "redeem_points": "100",
            "redeem_value": "1.00",
            "expiry_policy": "rolling",
            "expiry_months": "12",
            "min_redemption": "100",
            "reservation_minutes": "15",
            "claim_window_days": "30",
            "max_receipt_total": "100000",
            "tier_window_months": "12",
            "pending_days": "0",
        },
    )
    assert response.status_code == 422
    assert 'class="field  has-error"' in response.text or "has-error" in response.text
    assert "greater than or equal to 0" in response.text
    await console.get("/settings/tiers")
    tiers = await console.post(
        "/settings/tiers",
        {"tiers-0-code": "base", "tiers-0-name": "Member", "tiers-0-min_spend": "10"},
    )
    assert tiers.status_code == 422 and "min_spend 0" in tiers.text


def test_routes_have_one_line_docstrings():
    for module in (
        auth,
        campaigns,
        imports,
        insights,
        members,
        org,
        rewards,
        rules,
        settings,
        till,
    ):
        for route in module.router.routes:
            doc = (route.endpoint.__doc__ or "").strip()  # type: ignore[attr-defined]
            assert doc and "\n" not in doc, f"{module.__name__}.{route.endpoint.__name__}"  # type: ignore[attr-defined]
