"""Staff sign-in (OAuth2 password form → JWT), the bootstrap admin and `loyalty create-admin`."""

import asyncio
from datetime import UTC, datetime

import jwt
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from api import cli
from api.core import clock, migrate
from api.core.config import get_settings
from api.core.db import make_engine, make_sessionmaker, run_in_transaction
from api.main import create_app
from api.org import service as org_service
from api.org.models import Role, Staff
from tests.conftest import client_at, make_settings, postgres_only
from tests.factories import PASSWORD, make_staff

FUTURE = datetime(2031, 3, 14, 9, 0, tzinfo=UTC)


async def sign_in(client, email: str, password: str):  # type: ignore[no-untyped-def]
    return await client.post("/v1/auth/token", data={"username": email, "password": password})


def assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail", "request_id"}
    assert body["error"] == error
    assert body["request_id"]
    return body


# --- password sign-in --------------------------------------------------------------------------


async def test_correct_password_gives_a_bearer_jwt_that_works(client, org, settings):
    admin = org.staff["admin"]
    r = await sign_in(client, admin.email, PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.staff_token_minutes * 60
    claims = jwt.decode(body["access_token"], settings.secret_key, algorithms=["HS256"])
    assert claims["sub"] == str(admin.id) and claims["typ"] == "staff"
    assert claims["exp"] - claims["iat"] == body["expires_in"]

    me = await client.get(
        "/v1/staff/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["id"] == admin.id and me.json()["role"] == "admin"


async def test_email_is_case_insensitive(client, org):
    r = await sign_in(client, org.staff["marketer"].email.upper(), PASSWORD)
    assert r.status_code == 200


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "inactive"])
async def test_bad_credentials_are_401(client, org, session, case):
    staff = org.staff["store_manager"]
    email, password = staff.email, PASSWORD
    if case == "wrong password":
        password = PASSWORD + "x"
    elif case == "unknown email":
        email = "nobody@example.com"
    else:
        staff.active = False
        await session.commit()
    body = assert_error(await sign_in(client, email, password), 401, "BadCredentials")
    assert "access_token" not in body


async def test_deactivated_staff_token_stops_working(client, org, session):
    headers = org.headers["cashier"]
    assert (await client.get("/v1/staff/me", headers=headers)).status_code == 200
    org.staff["cashier"].active = False
    await session.commit()
    assert_error(await client.get("/v1/staff/me", headers=headers), 401, "NotAuthenticated")


async def test_missing_form_fields_are_422(client):
    r = await client.post("/v1/auth/token", data={"username": "a@example.com"})
    assert_error(r, 422, "ValidationError")


async def test_expired_staff_token_is_401(client, session, settings):
    with clock.frozen(FUTURE) as frozen:
        _, headers = await make_staff(session, settings, Role.marketer)
        await session.commit()
        frozen.tick(settings.staff_token_minutes * 60 - 1)
        assert (await client.get("/v1/staff/me", headers=headers)).status_code == 200
        frozen.tick(2)
        r = await client.get("/v1/staff/me", headers=headers)
        assert_error(r, 401, "TokenExpired")
        assert r.headers["www-authenticate"] == (
            'Bearer error="invalid_token", error_description="The access token expired"'
        )


@pytest.mark.parametrize("tamper", ["other secret", "member kind", "garbage"])
async def test_forged_tokens_are_401(client, org, settings, tamper):
    staff = org.staff["admin"]
    now = int(clock.now().timestamp())
    claims = {"sub": str(staff.id), "typ": "staff", "iat": now, "exp": now + 600}
    if tamper == "other secret":
        token = jwt.encode(claims, "another-secret-of-sufficient-length-000", algorithm="HS256")
    elif tamper == "member kind":
        token = jwt.encode({**claims, "typ": "member"}, settings.secret_key, algorithm="HS256")
    else:
        token = "not.a.jwt"
    r = await client.get("/v1/staff/me", headers={"Authorization": f"Bearer {token}"})
    if tamper == "member kind":  # signed with our key: a member's token, known but not staff
        assert_error(r, 403, "CallerNotAllowed")
    else:
        assert_error(r, 401, "NotAuthenticated")


async def test_passwords_are_stored_as_argon2(session, org):
    hashes = (await session.execute(select(Staff.password_hash))).scalars().all()
    assert hashes
    for password_hash in hashes:
        assert password_hash.startswith("$argon2id$")
        assert PASSWORD not in password_hash


async def test_openapi_offers_the_password_flow_for_swagger_authorize(client):
    spec = (await client.get("/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["StaffPassword"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/v1/auth/token"


# --- bootstrap admin ---------------------------------------------------------------------------


def _bootstrap_app(engine, maker, email: str, password: str = "bootstrap-password-1"):  # type: ignore[no-untyped-def]
    app = create_app(
        make_settings(bootstrap_admin_email=email, bootstrap_admin_password=password),
        engine=engine,
    )
    app.state.sessionmaker = maker
    return app


async def _staff_rows(session) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    rows = await session.execute(select(Staff.email, Staff.role).order_by(Staff.id))
    return [tuple(row) for row in rows]


async def test_bootstrap_creates_the_first_admin_once(engine, maker, session):
    assert await _staff_rows(session) == []
    app = _bootstrap_app(engine, maker, "Boss@Example.com")
    async with app.router.lifespan_context(app):
        pass
    assert await _staff_rows(session) == [("boss@example.com", "admin")]

    again = _bootstrap_app(engine, maker, "second@example.com")
    async with again.router.lifespan_context(again):
        pass
    assert await _staff_rows(session) == [("boss@example.com", "admin")]

    async with client_at(app, "198.51.100.1") as client:
        r = await sign_in(client, "boss@example.com", "bootstrap-password-1")
        assert r.status_code == 200


async def test_bootstrap_does_nothing_when_staff_exists(engine, maker, session, settings):
    await make_staff(session, settings, Role.marketer)
    await session.commit()
    app = _bootstrap_app(engine, maker, "boss@example.com")
    async with app.router.lifespan_context(app):
        pass
    rows = await _staff_rows(session)
    assert len(rows) == 1 and rows[0][1] == "marketer"


async def test_no_bootstrap_without_both_settings(engine, maker, session):
    app = create_app(make_settings(bootstrap_admin_email="boss@example.com"), engine=engine)
    app.state.sessionmaker = maker
    async with app.router.lifespan_context(app):
        pass
    assert await _staff_rows(session) == []


async def test_bootstrap_that_loses_a_race_is_quiet(session, monkeypatch):
    """Replicas starting together: the one whose insert loses the unique race does not crash."""
    created = await org_service.bootstrap_admin(
        session, email="boss@example.com", password="bootstrap-password-1"
    )
    assert created is not None

    async def nobody_yet(session):  # type: ignore[no-untyped-def]
        return 0  # what a replica saw just before the other one committed

    monkeypatch.setattr(org_service, "staff_count", nobody_yet)
    again = await org_service.bootstrap_admin(
        session, email="boss@example.com", password="bootstrap-password-1"
    )
    assert again is None
    assert await _staff_rows(session) == [("boss@example.com", "admin")]


@postgres_only
async def test_two_replicas_bootstrap_at_once(engine, monkeypatch):
    email = "race@example.com"
    counted = org_service.staff_count
    both_counted = asyncio.Barrier(2)

    async def count_then_wait(session):  # type: ignore[no-untyped-def]
        n = await counted(session)
        await both_counted.wait()  # both replicas saw no staff before either inserts
        return n

    monkeypatch.setattr(org_service, "staff_count", count_then_wait)
    settings = make_settings(bootstrap_admin_email=email, bootstrap_admin_password="x" * 12)
    replicas = [create_app(settings, engine=engine) for _ in range(2)]

    async def start(app):  # type: ignore[no-untyped-def]
        async with app.router.lifespan_context(app):
            pass

    try:
        await asyncio.gather(*(start(app) for app in replicas))
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Staff.email, Staff.role))).all()
        assert [tuple(r) for r in rows] == [(email, "admin")]
    finally:
        async with engine.begin() as conn:
            await conn.execute(delete(Staff).where(Staff.email == email))


# --- loyalty create-admin ----------------------------------------------------------------------


@pytest.fixture
async def cli_database(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A separate, migrated SQLite file that the CLI reaches through LOYALTY_DATABASE_URL."""
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("LOYALTY_DATABASE_URL", url)
    monkeypatch.delenv("LOYALTY_ENV", raising=False)
    get_settings.cache_clear()
    await asyncio.to_thread(migrate.upgrade_head, url)
    yield url
    get_settings.cache_clear()


async def run_cli(*args: str):  # type: ignore[no-untyped-def]
    # create-admin calls asyncio.run, so it runs in a thread outside the test's event loop.
    return await asyncio.to_thread(CliRunner().invoke, cli.main, list(args))


async def _cli_staff(url: str) -> list[Staff]:
    engine = make_engine(url)
    try:
        return await run_in_transaction(
            make_sessionmaker(engine),
            lambda s: org_service.list_staff(s),
        )
    finally:
        await engine.dispose()


async def _cli_sign_in(url: str, email: str, password: str) -> Staff:
    engine = make_engine(url)
    try:
        return await run_in_transaction(
            make_sessionmaker(engine),
            lambda s: org_service.authenticate_staff(s, email=email, password=password),
        )
    finally:
        await engine.dispose()


async def test_create_admin_cli(cli_database):
    result = await run_cli(
        "create-admin", "--email", "Root@Example.com", "--password", "cli-password-123"
    )
    assert result.exit_code == 0, result.output
    assert "admin Root@Example.com created" in result.output

    [staff] = await _cli_staff(cli_database)
    assert (staff.email, staff.role, staff.region_id, staff.store_id) == (
        "root@example.com",
        "admin",
        None,
        None,
    )
    assert staff.password_hash.startswith("$argon2")
    assert (await _cli_sign_in(cli_database, "root@example.com", "cli-password-123")).id == staff.id

    again = await run_cli("create-admin", "--email", "root@example.com", "--password", "x" * 12)
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert len(await _cli_staff(cli_database)) == 1


async def test_create_admin_cli_refuses_bad_input(cli_database, monkeypatch):
    short = await run_cli("create-admin", "--email", "a@example.com", "--password", "short")
    assert short.exit_code == 1 and "password" in short.output

    bad_email = await run_cli("create-admin", "--email", "not-an-email", "--password", "x" * 12)
    assert bad_email.exit_code == 1 and "email" in bad_email.output.lower()

    answers = iter(["first-password-1", "second-password-2"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(answers))
    differ = await run_cli("create-admin", "--email", "a@example.com")
    assert differ.exit_code == 1 and "passwords differ" in differ.output
    assert await _cli_staff(cli_database) == []


async def test_create_admin_cli_prompts_for_the_password(cli_database, monkeypatch):
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": "prompted-password-1")
    result = await run_cli("create-admin", "--email", "prompt@example.com")
    assert result.exit_code == 0, result.output
    assert (await _cli_sign_in(cli_database, "prompt@example.com", "prompted-password-1")).role == (
        "admin"
    )
