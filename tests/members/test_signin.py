"""Member sign-in: one-time codes by SMS, the SMS senders, access JWTs, rotating refresh tokens."""

import json
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from api.core import clock, security
from api.members import sms
from api.members.models import Member, MemberConsent, OtpChallenge, RefreshToken
from tests.conftest import TEST_CODE, TEST_PHONE, client_at, make_settings

PRODUCTION_SECRET = secrets.token_urlsafe(48)
PHONE = "+8613912345678"
LOCAL = "139 1234 5678"
T0 = datetime(2030, 6, 1, 8, 0, tzinfo=UTC)


def assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail", "request_id"}
    assert body["error"] == error
    return body


async def request_code(client, phone: str = PHONE):  # type: ignore[no-untyped-def]
    return await client.post("/v1/auth/otp", json={"phone": phone})


async def verify(client, code: str, phone: str = PHONE):  # type: ignore[no-untyped-def]
    return await client.post("/v1/auth/otp/verify", json={"phone": phone, "code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def challenges(session, phone: str = PHONE) -> list:  # type: ignore[no-untyped-def]
    stmt = select(OtpChallenge.__table__).where(OtpChallenge.phone == phone)
    return list((await session.execute(stmt.order_by(OtpChallenge.id))).all())


async def signed_in(client, sms_sender, phone: str = PHONE) -> dict:  # type: ignore[no-untyped-def]
    assert (await request_code(client, phone)).status_code == 202
    r = await verify(client, sms_sender.last_code(phone), phone)
    assert r.status_code == 200, r.text
    return r.json()


def bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


# --- one-time codes ----------------------------------------------------------------------------


async def test_code_is_sent_and_only_its_hash_is_stored(client, sms, session):
    r = await request_code(client, LOCAL)
    assert r.status_code == 202
    assert r.json() == {"expires_in": 300}

    [(to, code)] = sms.sent
    assert to == PHONE
    assert len(code) == 6 and code.isdigit()

    [row] = await challenges(session)
    assert row.attempts == 0 and row.consumed_at is None
    assert (row.expires_at - row.created_at).total_seconds() == 300
    assert len(row.code_hash) == 64
    for value in row:
        assert str(value) != code
    assert row.code_hash != security.token_digest(code)  # keyed: a leaked table is not enough


async def test_codes_are_random(client, sms):
    for i in range(4):
        assert (await request_code(client, f"+86139123400{i:02d}")).status_code == 202
    assert len({code for _, code in sms.sent}) == 4


async def test_first_sign_in_creates_the_member(client, sms, session):
    first = await signed_in(client, sms)
    assert first["is_new"] is True and first["token_type"] == "bearer"
    assert first["expires_in"] == 15 * 60
    assert first["refresh_token"].startswith("rt_")

    member = await session.get(Member, first["member_id"])
    assert (member.phone, member.enrolled_via, member.home_store_id) == (PHONE, "app", None)
    consents = (
        await session.execute(
            select(MemberConsent.channel, MemberConsent.granted, MemberConsent.source).where(
                MemberConsent.member_id == member.id
            )
        )
    ).all()
    assert sorted(consents) == [
        ("email", False, "app"),
        ("push", False, "app"),
        ("sms", False, "app"),
    ]

    me = await client.get("/v1/me", headers=bearer(first))
    assert me.status_code == 200 and me.json()["id"] == member.id

    with clock.frozen(clock.now()) as frozen:
        frozen.tick(61)
        assert (await request_code(client, LOCAL)).status_code == 202
        second = (await verify(client, sms.last_code(PHONE), LOCAL)).json()
    assert second["is_new"] is False
    assert second["member_id"] == first["member_id"]
    assert (
        await session.scalar(select(func.count()).select_from(Member).where(Member.phone == PHONE))
        == 1
    )


async def test_sign_in_finds_a_member_enrolled_at_the_till(client, org, sms):
    enrolled = await client.post(
        "/v1/members", json={"phone": LOCAL}, headers=org.terminal(org.fuel_a)
    )
    assert enrolled.status_code == 201
    tokens = await signed_in(client, sms)
    assert tokens["is_new"] is False
    assert tokens["member_id"] == enrolled.json()["id"]
    me = (await client.get("/v1/me", headers=bearer(tokens))).json()
    assert (me["enrolled_via"], me["home_store_id"]) == ("pos", org.fuel_a.id)


async def test_a_code_works_once(client, sms, session):
    tokens = await signed_in(client, sms)
    assert tokens["is_new"]
    [row] = await challenges(session)
    assert row.consumed_at is not None
    assert_error(await verify(client, sms.last_code(PHONE)), 401, "OtpInvalid")


async def test_verify_without_a_code_requested_is_401(client):
    assert_error(await verify(client, "123456"), 401, "OtpInvalid")


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", ""])
async def test_code_must_be_six_digits(client, code):
    assert_error(await verify(client, code), 422, "ValidationError")


@pytest.mark.parametrize("phone", ["12345", "not a phone", "+86 123"])
async def test_invalid_phone_is_422(client, sms, phone):
    assert_error(await request_code(client, phone), 422, "InvalidPhone")
    assert sms.sent == []


async def test_five_wrong_codes_lock_the_challenge(client, sms, session):
    assert (await request_code(client)).status_code == 202
    code = sms.last_code(PHONE)
    for attempt in range(1, 5):
        assert_error(await verify(client, wrong(code)), 401, "OtpInvalid")
        [row] = await challenges(session)
        assert row.attempts == attempt  # counted although the request failed and rolled back
    assert_error(await verify(client, wrong(code)), 429, "OtpLocked")
    assert_error(await verify(client, code), 429, "OtpLocked")
    [row] = await challenges(session)
    assert row.attempts == 5 and row.consumed_at is None
    assert (
        await session.scalar(select(func.count()).select_from(Member).where(Member.phone == PHONE))
        == 0
    )


async def test_a_new_code_after_a_lock_works(client, sms):
    with clock.frozen(T0) as frozen:
        assert (await request_code(client)).status_code == 202
        locked = sms.last_code(PHONE)
        for _ in range(5):
            await verify(client, wrong(locked))
        frozen.tick(61)
        assert (await request_code(client)).status_code == 202
        fresh = sms.last_code(PHONE)
        if locked != fresh:
            assert_error(await verify(client, locked), 401, "OtpInvalid")
        assert (await verify(client, fresh)).status_code == 200


async def test_code_expires_after_five_minutes(client, sms):
    with clock.frozen(T0) as frozen:
        assert (await request_code(client)).status_code == 202
        code = sms.last_code(PHONE)
        frozen.tick(300)
        assert_error(await verify(client, code), 401, "OtpInvalid")

    with clock.frozen(T0) as frozen:
        frozen.tick(3600)
        assert (await request_code(client)).status_code == 202
        frozen.tick(299)
        assert (await verify(client, sms.last_code(PHONE))).status_code == 200


async def test_a_new_code_replaces_the_previous_one(client, sms):
    with clock.frozen(T0) as frozen:
        await request_code(client)
        first = sms.last_code(PHONE)
        frozen.tick(61)
        await request_code(client)
        second = sms.last_code(PHONE)
        if first != second:
            assert_error(await verify(client, first), 401, "OtpInvalid")
        assert (await verify(client, second)).status_code == 200


async def test_resend_is_throttled_for_a_minute(client, sms):
    with clock.frozen(T0) as frozen:
        assert (await request_code(client)).status_code == 202
        frozen.tick(10)
        r = await request_code(client, LOCAL)
        assert_error(r, 429, "TooManyRequests")
        assert 50 <= int(r.headers["retry-after"]) <= 51
        assert len(sms.sent) == 1
        frozen.tick(50)
        assert (await request_code(client)).status_code == 202
        assert len(sms.sent) == 2


async def test_per_phone_hourly_limit(app, client, sms):
    with clock.frozen(T0) as frozen:
        for _ in range(5):
            assert (await request_code(client)).status_code == 202
            frozen.tick(61)
        r = await request_code(client)
        assert_error(r, 429, "TooManyRequests")
        assert "phone" in r.json()["detail"]
        assert int(r.headers["retry-after"]) > 60
        assert len(sms.sent) == 5

        async with client_at(app, "198.51.100.99") as elsewhere:
            assert_error(await request_code(elsewhere), 429, "TooManyRequests")

        frozen.set(T0)
        frozen.tick(3601)  # the first request has left the one-hour window
        assert (await request_code(client)).status_code == 202


async def test_per_ip_hourly_limit(app, sms):
    async with client_at(app, "192.0.2.10") as client, client_at(app, "192.0.2.11") as other:
        with clock.frozen(T0):
            for i in range(20):
                assert (await request_code(client, f"+86139000100{i:02d}")).status_code == 202
            r = await request_code(client, "+8613900010099")
            assert_error(r, 429, "TooManyRequests")
            assert "network" in r.json()["detail"]
            assert "retry-after" in r.headers
            assert len(sms.sent) == 20
            assert (await request_code(other, "+8613900010099")).status_code == 202


async def test_test_phone_accepts_its_fixed_code_and_sends_nothing(client, sms, session):
    r = await request_code(client, TEST_PHONE)
    assert r.status_code == 202 and r.json() == {"expires_in": 300}
    assert sms.sent == []
    assert await challenges(session, TEST_PHONE) == []
    assert_error(await verify(client, "654321", TEST_PHONE), 401, "OtpInvalid")
    tokens = (await verify(client, TEST_CODE, TEST_PHONE)).json()
    assert tokens["is_new"] is True
    again = await verify(client, TEST_CODE, TEST_PHONE)
    assert again.status_code == 200 and again.json()["is_new"] is False


async def test_blocked_member_cannot_sign_in(client, sms, session):
    tokens = await signed_in(client, sms)
    member = await session.get(Member, tokens["member_id"])
    member.status = "blocked"
    await session.commit()
    with clock.frozen(clock.now()) as frozen:
        frozen.tick(61)
        await request_code(client)
        assert_error(await verify(client, sms.last_code(PHONE)), 403, "MemberBlocked")
    assert_error(await client.get("/v1/me", headers=bearer(tokens)), 403, "MemberBlocked")
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(r, 401, "RefreshInvalid")


# --- SMS senders -------------------------------------------------------------------------------


class Gateway:
    """A tiny SMS gateway on 127.0.0.1 that records what it receives."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[tuple[dict[str, str], dict]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                gateway.received.append((dict(self.headers), body))
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms"


@pytest.fixture
def gateway(monkeypatch) -> Iterator[Gateway]:  # type: ignore[no-untyped-def]
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    gw = Gateway()
    thread = threading.Thread(target=gw.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield gw
    gw.server.shutdown()
    gw.server.server_close()
    thread.join()


async def test_webhook_sender_posts_phone_and_code_with_the_bearer_token(
    app, client, gateway, session
):
    settings = make_settings(sms_webhook_url=gateway.url, sms_webhook_token="gw-secret")
    sender = sms.sender_for(settings)
    assert isinstance(sender, sms.WebhookSender)
    app.state.sms_sender = sender

    assert (await request_code(client)).status_code == 202
    [(headers, body)] = gateway.received
    assert headers["Authorization"] == "Bearer gw-secret"
    assert headers["Content-Type"] == "application/json"
    assert body["phone"] == PHONE
    assert len(body["code"]) == 6 and body["code"].isdigit()
    assert (await verify(client, body["code"])).status_code == 200


async def test_gateway_error_is_502_and_stores_no_challenge(app, client, gateway, session):
    gateway.status = 500
    app.state.sms_sender = sms.WebhookSender(gateway.url, "gw-secret")
    r = await request_code(client)
    assert_error(r, 502, "SmsFailed")
    assert len(gateway.received) == 1
    assert await challenges(session) == []

    gateway.status = 200
    assert (await request_code(client)).status_code == 202  # nothing was throttled by the failure


async def test_unreachable_gateway_is_502(app, client, session):
    app.state.sms_sender = sms.WebhookSender("http://127.0.0.1:9/sms", None)
    assert_error(await request_code(client), 502, "SmsFailed")
    assert await challenges(session) == []


async def test_console_sender_only_in_development(capsys):
    dev = sms.sender_for(make_settings(env="development"))
    assert isinstance(dev, sms.ConsoleSender)
    await dev.send_code(PHONE, "424242")
    assert "424242" in capsys.readouterr().out

    for env in ("production", "test"):
        quiet = sms.sender_for(
            make_settings(env=env, secret_key=PRODUCTION_SECRET, test_phone_codes="")
        )
        assert not isinstance(quiet, sms.ConsoleSender)
        await quiet.send_code(PHONE, "434343")
        out = capsys.readouterr()
        assert "434343" not in out.out + out.err


async def test_production_app_prints_no_codes(engine, maker, capsys):
    from api.main import create_app

    app = create_app(
        make_settings(env="production", secret_key=PRODUCTION_SECRET, test_phone_codes=""),
        engine=engine,
    )
    app.state.sessionmaker = maker
    assert isinstance(app.state.sms_sender, sms.DiscardSender)
    async with client_at(app, "192.0.2.50") as client:
        assert (await request_code(client)).status_code == 202
    out = capsys.readouterr()
    assert PHONE not in out.out and "sign-in code" not in out.out


# --- access and refresh tokens -----------------------------------------------------------------


async def test_member_access_token_expires_after_15_minutes(client, sms):
    with clock.frozen(T0) as frozen:
        tokens = await signed_in(client, sms)
        frozen.tick(15 * 60 - 1)
        assert (await client.get("/v1/me", headers=bearer(tokens))).status_code == 200
        frozen.tick(2)
        r = await client.get("/v1/me", headers=bearer(tokens))
        assert_error(r, 401, "TokenExpired")
        assert r.headers["www-authenticate"] == (
            'Bearer error="invalid_token", error_description="The access token expired"'
        )


async def test_refresh_gives_a_new_pair_and_the_old_one_stops(client, sms, session):
    with clock.frozen(T0) as frozen:
        tokens = await signed_in(client, sms)
        r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200, r.text
        fresh = r.json()
        assert fresh["member_id"] == tokens["member_id"] and fresh["is_new"] is False
        assert fresh["refresh_token"] != tokens["refresh_token"]
        assert (await client.get("/v1/me", headers=bearer(fresh))).status_code == 200

        frozen.tick(31)  # past the grace window for a simultaneous refresh
        old = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_error(old, 401, "RefreshReused")


async def test_refresh_tokens_are_stored_hashed(client, sms, session):
    tokens = await signed_in(client, sms)
    rows = (await session.execute(select(RefreshToken.__table__))).all()
    assert len(rows) == 1
    assert rows[0].token_hash == security.token_digest(tokens["refresh_token"])
    for value in rows[0]:
        assert tokens["refresh_token"] not in str(value)


async def test_reusing_a_rotated_token_revokes_the_whole_family(client, sms, session):
    first = await signed_in(client, sms)
    second = (
        await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    third = (
        await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    ).json()

    # The same member signed in on a second handset: another family, which must survive.
    with clock.frozen(clock.now()) as frozen:
        frozen.tick(61)
        other_device = await signed_in(client, sms)
    assert other_device["member_id"] == first["member_id"]

    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_error(reuse, 401, "RefreshReused")

    rows = await session.execute(
        select(RefreshToken.token_hash, RefreshToken.revoked_at).where(
            RefreshToken.member_id == first["member_id"]
        )
    )
    revoked = {token_hash: at is not None for token_hash, at in rows}
    family = [first, second, third]
    assert all(revoked[security.token_digest(t["refresh_token"])] for t in family)  # persisted
    assert revoked[security.token_digest(other_device["refresh_token"])] is False

    newest = await client.post("/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert_error(newest, 401, "RefreshInvalid")
    survivor = await client.post(
        "/v1/auth/refresh", json={"refresh_token": other_device["refresh_token"]}
    )
    assert survivor.status_code == 200


async def test_refresh_with_an_unknown_or_expired_token_is_401(client, sms):
    r = await client.post("/v1/auth/refresh", json={"refresh_token": "rt_not-a-real-token"})
    assert_error(r, 401, "RefreshInvalid")
    with clock.frozen(T0) as frozen:
        tokens = await signed_in(client, sms)
        frozen.tick(60 * 24 * 3600 + 1)
        r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_error(r, 401, "RefreshInvalid")


async def test_logout_revokes_the_sign_in(client, sms, session):
    tokens = await signed_in(client, sms)
    other_device = (
        await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).json()
    r = await client.post(
        "/v1/auth/logout",
        json={"refresh_token": other_device["refresh_token"]},
        headers=bearer(tokens),
    )
    assert r.status_code == 204
    after = await client.post(
        "/v1/auth/refresh", json={"refresh_token": other_device["refresh_token"]}
    )
    assert_error(after, 401, "RefreshInvalid")
    revoked = (await session.execute(select(RefreshToken.revoked_at))).scalars().all()
    assert revoked and all(at is not None for at in revoked)


async def test_logout_with_someone_elses_refresh_token_is_refused(client, sms):
    mine = await signed_in(client, sms)
    theirs = (await verify(client, TEST_CODE, TEST_PHONE)).json()
    r = await client.post(
        "/v1/auth/logout", json={"refresh_token": theirs["refresh_token"]}, headers=bearer(mine)
    )
    assert_error(r, 401, "RefreshInvalid")
    still = await client.post("/v1/auth/refresh", json={"refresh_token": theirs["refresh_token"]})
    assert still.status_code == 200
