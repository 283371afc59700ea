"""Member sign-in findings on both databases: fixed test-phone codes are throttled like any
code and refused in production unless allowed; a refresh repeated within the grace window gets
the same pair, later it revokes the sign-in; sign-out and revocation end access tokens at the
next request in one statement; an expired access token is `TokenExpired`."""

import logging
import secrets
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import ValidationError
from sqlalchemy import event, select

from api.core import clock, security
from api.main import create_app
from api.members.dependencies import current_member
from api.members.models import MemberSignIn, RefreshToken
from tests.conftest import TEST_CODE, TEST_PHONE, make_settings
from tests.members.test_signin import (
    PHONE,
    assert_error,
    bearer,
    request_code,
    signed_in,
    verify,
    wrong,
)

T0 = datetime(2030, 7, 1, 8, 0, tzinfo=UTC)
STRONG = secrets.token_urlsafe(48)


async def refresh(client, token: str):  # type: ignore[no-untyped-def]
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


# --- fixed test-phone codes --------------------------------------------------------------------


async def test_a_test_phone_locks_after_max_wrong_codes_like_any_code(client, sms):
    with clock.frozen(T0) as frozen:
        for _ in range(4):
            assert_error(await verify(client, wrong(TEST_CODE), TEST_PHONE), 401, "OtpInvalid")
        assert_error(await verify(client, wrong(TEST_CODE), TEST_PHONE), 429, "OtpLocked")
        # the fixed code no longer opens it: a brute force of 10^6 codes gets 5 tries
        assert_error(await verify(client, TEST_CODE, TEST_PHONE), 429, "OtpLocked")
        # asking for a new code (throttled like any phone, no SMS) gives the tries back
        assert (await request_code(client, TEST_PHONE)).status_code == 202
        assert sms.sent == []
        assert (await verify(client, TEST_CODE, TEST_PHONE)).status_code == 200
        # and asking again is subject to the resend wait and the hourly cap
        assert_error(await request_code(client, TEST_PHONE), 429, "TooManyRequests")
        for _ in range(4):
            frozen.tick(61)
            assert (await request_code(client, TEST_PHONE)).status_code == 202
        frozen.tick(61)
        assert_error(await request_code(client, TEST_PHONE), 429, "TooManyRequests")


async def test_a_right_test_code_resets_its_count(client):
    with clock.frozen(T0):
        for _ in range(3):
            for _ in range(4):
                await verify(client, wrong(TEST_CODE), TEST_PHONE)
            assert (await verify(client, TEST_CODE, TEST_PHONE)).status_code == 200


def test_production_refuses_test_phone_codes_unless_allowed():
    with pytest.raises(ValidationError, match="LOYALTY_ALLOW_TEST_PHONE_CODES"):
        make_settings(env="production", secret_key=STRONG)
    allowed = make_settings(env="production", secret_key=STRONG, allow_test_phone_codes=True)
    assert allowed.test_phone_code_map == {TEST_PHONE: TEST_CODE}
    assert make_settings(env="production", secret_key=STRONG, test_phone_codes="").env


async def test_allowed_test_phones_are_announced_at_start_up(engine, maker, caplog):
    settings = make_settings(env="production", secret_key=STRONG, allow_test_phone_codes=True)
    app = create_app(settings, engine=engine)
    app.state.sessionmaker = maker
    with caplog.at_level(logging.WARNING, logger="loyalty"):
        async with app.router.lifespan_context(app):
            pass
    warned = [
        r.getMessage() for r in caplog.records if "LOYALTY_TEST_PHONE_CODES" in r.getMessage()
    ]
    assert len(warned) == 1 and "fixed code" in warned[0]
    assert TEST_CODE not in warned[0] and TEST_PHONE not in warned[0]


# --- refresh grace window ----------------------------------------------------------------------


async def test_a_refresh_repeated_within_the_grace_window_gets_the_same_pair(client, sms, session):
    with clock.frozen(T0) as frozen:
        first = await signed_in(client, sms)
        a = await refresh(client, first["refresh_token"])
        frozen.tick(29)
        b = await refresh(client, first["refresh_token"])  # the other screen, a moment later
        assert a.status_code == b.status_code == 200, b.text
        assert a.json()["refresh_token"] == b.json()["refresh_token"]
        for answer in (a, b):
            me = await client.get("/v1/me", headers=bearer(answer.json()))
            assert me.status_code == 200
        # only hashes are stored: not the successor, not the old token
        rows = (await session.execute(select(RefreshToken.__table__))).all()
        assert len(rows) == 2
        for row in rows:
            for value in row:
                assert a.json()["refresh_token"] not in str(value)
                assert first["refresh_token"] not in str(value)
        # the shared successor goes on working
        c = await refresh(client, a.json()["refresh_token"])
        assert c.status_code == 200


async def test_a_reuse_after_the_grace_window_revokes_the_whole_sign_in(client, sms, session):
    with clock.frozen(T0) as frozen:
        first = await signed_in(client, sms)
        second = (await refresh(client, first["refresh_token"])).json()
        frozen.tick(31)
        assert_error(await refresh(client, first["refresh_token"]), 401, "RefreshReused")
        # everything of that sign-in is dead: the successor, and the access tokens
        assert_error(await refresh(client, second["refresh_token"]), 401, "RefreshInvalid")
        for tokens in (first, second):
            r = await client.get("/v1/me", headers=bearer(tokens))
            assert_error(r, 401, "MemberNotAuthenticated")
        [signin_row] = (await session.execute(select(MemberSignIn))).scalars().all()
        assert signin_row.revoked_at is not None


async def test_a_repeat_after_the_successor_was_used_is_a_reuse(client, sms):
    """Within the window, but the new token already rotated on: not a simultaneous refresh."""
    with clock.frozen(T0) as frozen:
        first = await signed_in(client, sms)
        second = (await refresh(client, first["refresh_token"])).json()
        frozen.tick(5)
        assert (await refresh(client, second["refresh_token"])).status_code == 200
        frozen.tick(5)
        assert_error(await refresh(client, first["refresh_token"]), 401, "RefreshReused")


async def test_no_grace_window_when_set_to_zero(app, client, sms):
    app.state.settings = make_settings(refresh_grace_seconds=0)
    with clock.frozen(T0) as frozen:
        first = await signed_in(client, sms)
        assert (await refresh(client, first["refresh_token"])).status_code == 200
        frozen.tick(1)
        assert_error(await refresh(client, first["refresh_token"]), 401, "RefreshReused")


# --- sign-out and revocation end access tokens -------------------------------------------------


async def test_sign_out_ends_the_access_token_at_the_next_request(client, sms):
    with clock.frozen(T0) as frozen:
        phone = await signed_in(client, sms)
        frozen.tick(61)
        tablet = await signed_in(client, sms)  # the same member on a second device
        assert (await client.get("/v1/me", headers=bearer(phone))).status_code == 200
        out = await client.post(
            "/v1/auth/logout", json={"refresh_token": phone["refresh_token"]}, headers=bearer(phone)
        )
        assert out.status_code == 204
        r = await client.get("/v1/me", headers=bearer(phone))
        assert_error(r, 401, "MemberNotAuthenticated")
        assert_error(
            await client.get("/v1/me/card", headers=bearer(phone)), 401, "MemberNotAuthenticated"
        )
        # the other device's sign-in is untouched
        assert (await client.get("/v1/me", headers=bearer(tablet))).status_code == 200


async def test_access_tokens_carry_their_sign_in(client, sms, settings, session):
    tokens = await signed_in(client, sms)
    claims = jwt.decode(tokens["access_token"], settings.secret_key, algorithms=["HS256"])
    row = (await session.execute(select(MemberSignIn))).scalar_one()
    assert claims["fid"] == row.family and row.member_id == tokens["member_id"]
    refreshed = (await refresh(client, tokens["refresh_token"])).json()
    again = jwt.decode(refreshed["access_token"], settings.secret_key, algorithms=["HS256"])
    assert again["fid"] == row.family


async def test_a_token_without_a_sign_in_claim_is_refused(client, sms, settings):
    tokens = await signed_in(client, sms)
    legacy = security.encode_jwt(
        settings.secret_key,
        {"sub": str(tokens["member_id"]), "typ": "member"},
        timedelta(minutes=15),
    )
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {legacy}"})
    assert_error(r, 401, "MemberNotAuthenticated")


async def test_current_member_is_one_statement(client, sms, session, settings, connection):
    """The check costs no extra round trip: the member and its sign-in in one statement."""
    tokens = await signed_in(client, sms)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    class Request:
        class state:
            pass

        headers: dict[str, str] = {}

    from fastapi.security import HTTPAuthorizationCredentials

    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=tokens["access_token"])
    event.listen(connection.sync_connection, "before_cursor_execute", count)
    try:
        member = await current_member(Request(), session, settings, credentials)  # type: ignore[arg-type]
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", count)
    assert member.id == tokens["member_id"]
    real = [s for s in statements if not s.lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(real) == 1, statements
    assert "member_sign_in" in real[0]


# --- TokenExpired ------------------------------------------------------------------------------

EXPIRED_HEADER = 'Bearer error="invalid_token", error_description="The access token expired"'


async def test_an_expired_member_token_is_token_expired_and_a_forged_one_is_not(
    client, sms, settings
):
    with clock.frozen(T0) as frozen:
        tokens = await signed_in(client, sms)
        frozen.tick(15 * 60 + 1)
        r = await client.get("/v1/me", headers=bearer(tokens))
        assert_error(r, 401, "TokenExpired")
        assert r.headers["www-authenticate"] == EXPIRED_HEADER
        # the app refreshes and goes on
        fresh = (await refresh(client, tokens["refresh_token"])).json()
        assert (await client.get("/v1/me", headers=bearer(fresh))).status_code == 200

        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        forged = jwt.encode(claims, "someone-elses-secret-0123456789abcdef", algorithm="HS256")
        for bad in (forged, "not.a.jwt"):
            r = await client.get("/v1/me", headers={"Authorization": f"Bearer {bad}"})
            assert_error(r, 401, "MemberNotAuthenticated")
            assert r.headers["www-authenticate"] == "Bearer"


async def test_an_expired_staff_token_is_token_expired_and_a_forged_one_is_not(
    client, org, settings
):
    staff = org.staff["admin"]
    past = int((clock.now() - timedelta(hours=2)).timestamp())
    claims = {"sub": str(staff.id), "typ": "staff", "gen": 0, "iat": past, "exp": past + 3600}
    expired = jwt.encode(claims, settings.secret_key, algorithm="HS256")
    r = await client.get("/v1/staff/me", headers={"Authorization": f"Bearer {expired}"})
    assert_error(r, 401, "TokenExpired")
    assert r.headers["www-authenticate"] == EXPIRED_HEADER
    forged = jwt.encode(claims, "someone-elses-secret-0123456789abcdef", algorithm="HS256")
    r = await client.get("/v1/staff/me", headers={"Authorization": f"Bearer {forged}"})
    assert_error(r, 401, "NotAuthenticated")
    assert r.headers["www-authenticate"] == "Bearer"


async def test_phone_of_the_member_is_not_in_the_code_log(client, sms, caplog):
    """Sanity: the hardening logs nothing with a phone number or a code."""
    with caplog.at_level(logging.DEBUG, logger="loyalty"):
        await signed_in(client, sms)
    for record in caplog.records:
        assert PHONE not in record.getMessage()
        assert sms.last_code(PHONE) not in record.getMessage()
