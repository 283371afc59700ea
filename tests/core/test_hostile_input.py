"""Hostile input: huge and endless bodies, deep nesting, NUL characters, unicode, SQL-looking
text, out-of-range numbers, and brute force of sign-in codes and till identification. Every
refusal is a 4xx with the error envelope, and nothing is stored."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text

from api.core import clock
from api.core.db import Base
from api.core.models import RateHit
from api.members.models import Member, OtpChallenge
from tests import factories
from tests.conftest import client_at, make_settings
from tests.loyalty.conftest import receipt

T0 = datetime(2030, 6, 1, 8, 0, tzinfo=UTC)
SQL = "'; DROP TABLE member;--"
# Rows that record attempts (rate-limit hits, staff read log) are expected to grow.
ATTEMPT_TABLES = frozenset({"core_rate_hit", "core_access_log"})


async def table_counts(session) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts = {}
    for table in Base.metadata.sorted_tables:
        if table.name not in ATTEMPT_TABLES:
            counts[table.name] = await session.scalar(select(func.count()).select_from(table))
    return counts


def assert_refused(response, status: int | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail", "request_id"}, body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.fixture
async def member(session, settings, org):  # type: ignore[no-untyped-def]
    m = await factories.make_member(session, settings, store=org.supermarket)
    await session.commit()
    return m


@pytest.fixture
def admin(org) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return org.headers["admin"]


@pytest.fixture
def till(org) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return org.terminal(org.supermarket)


# ---------------------------------------------------------------- body size


def enrolment(name: str = "Ann", phone: str | None = None) -> dict[str, Any]:
    return {"phone": phone or factories.unique_phone(), "name": name}


async def test_body_over_the_limit_is_413_before_it_is_parsed(client, admin, session):
    before = await table_counts(session)
    padded = json.dumps(enrolment(name="x" * (1024 * 1024)))  # valid JSON, 1 MiB + a little
    r = await client.post(
        "/v1/members", content=padded, headers={**admin, "Content-Type": "application/json"}
    )
    assert assert_refused(r, 413)["error"] == "PayloadTooLarge"
    assert await table_counts(session) == before


async def test_declared_length_over_the_limit_is_refused_without_reading(app, admin):
    """Content-Length alone decides: the body is never read."""
    sent: list[dict[str, Any]] = []
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"{" * 65536, "more_body": read < 100}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in admin.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/members",
        "raw_path": b"/v1/members",
        "query_string": b"",
        "root_path": "",
        "headers": [
            *headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(50 * 1024 * 1024).encode()),
        ],
        "client": ("203.0.113.7", 50000),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert read == 0


async def test_streamed_body_without_length_is_cut_off_at_the_limit(app, client, admin, session):
    app.state.settings = make_settings(max_body_bytes=64 * 1024)
    before = await table_counts(session)
    chunks_sent = 0

    async def endless():  # type: ignore[no-untyped-def]
        nonlocal chunks_sent
        yield b'{"phone": "+8613912345678", "name": "'
        while chunks_sent < 10_000:
            chunks_sent += 1
            yield b"x" * 4096

    r = await client.post(
        "/v1/members", content=endless(), headers={**admin, "Content-Type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert assert_refused(r, 413)["error"] == "PayloadTooLarge"
    assert chunks_sent < 40  # stopped reading soon after the limit, not at the end
    assert await table_counts(session) == before


async def test_limit_is_a_setting_and_small_bodies_pass(app, client, admin):
    app.state.settings = make_settings(max_body_bytes=2048)
    r = await client.post("/v1/members", json=enrolment(name="y" * 3000), headers=admin)
    assert_refused(r, 413)
    r = await client.post("/v1/members", json=enrolment(), headers=admin)
    assert r.status_code == 201, r.text


async def test_offline_batch_has_its_own_larger_limit(app, client, till, session):
    """A day of offline receipts is larger than a normal request; it gets its own limit."""
    app.state.settings = make_settings(max_body_bytes=64 * 1024)
    purchases = [receipt(f"OFF-{i}", ("grocery", 1000 + i)) for i in range(500)]
    body = json.dumps({"purchases": purchases}).encode()
    size = len(body)
    assert size > 64 * 1024
    headers = {**till, "Content-Type": "application/json"}
    r = await client.post("/v1/pos/purchases/batch", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert {item["status"] for item in r.json()["results"]} == {"created"}

    app.state.settings = make_settings(max_body_bytes=64 * 1024, max_batch_body_bytes=size - 1)
    r = await client.post("/v1/pos/purchases/batch", content=body, headers=headers)
    assert_refused(r, 413)


# ---------------------------------------------------------------- nesting and NUL


@pytest.mark.parametrize("depth", [100, 900, 5_000, 200_000])
async def test_deeply_nested_json_is_a_4xx(client, admin, session, depth):
    before = await table_counts(session)
    nested = "[" * depth + "]" * depth
    rule = f'"code": "deep{depth}", "name": "Deep", "kind": "category_bonus"'
    body = f'{{{rule}, "params": {{"x": {nested}}}}}'
    r = await client.post(
        "/v1/loyalty/rules", content=body, headers={**admin, "Content-Type": "application/json"}
    )
    assert_refused(r)
    nested_obj = '{"a":' * depth + "1" + "}" * depth
    r = await client.post(
        "/v1/members",
        content=f'{{"phone": "+8613912345678", "name": {nested_obj}}}',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert_refused(r)
    assert await table_counts(session) == before


@pytest.mark.parametrize(
    "where",
    ["name", "plate", "search", "receipt_no", "device token", "form"],
)
async def test_nul_characters_are_422_everywhere(
    client, admin, till, member, settings, session, where
):
    before = await table_counts(session)
    me = factories.member_headers(settings, member)
    if where == "name":
        r = await client.post("/v1/members", json=enrolment(name="Ann\x00Lee"), headers=admin)
    elif where == "plate":
        r = await client.post("/v1/me/vehicles", json={"plate": "沪A\x0012345"}, headers=me)
    elif where == "search":
        r = await client.get("/v1/members", params={"q": "Ann\x00"}, headers=admin)
    elif where == "receipt_no":
        r = await client.post("/v1/pos/purchases", json=receipt("R\x001", ("a", 100)), headers=till)
    elif where == "device token":
        r = await client.delete("/v1/me/devices/abc%00def", headers=me)
    else:
        r = await client.post(
            "/v1/auth/token", data={"username": "a\x00@example.com", "password": "secret-secret"}
        )
    body = assert_refused(r, 422)
    assert body["detail"][0]["type"] == "nul_character"
    assert await table_counts(session) == before


async def test_escaped_backslash_before_u0000_is_not_a_nul(client, admin):
    r = await client.post("/v1/members", json=enrolment(name="C:\\u0000 folder"), headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "C:\\u0000 folder"


# ---------------------------------------------------------------- unicode and SQL-looking text


@pytest.mark.parametrize(
    "name",
    [
        "王小明",
        "Zoë Ñúñez",
        "👩‍👩‍👧 Family 🎉",
        "محمد عبد الله",  # right-to-left
        "שרה\u200f כהן",  # with a right-to-left mark
        "Zalgo Z\u0335\u0321\u0327a\u0336l\u0334",  # stacked combining marks
        "e\u0301le\u0300ve",  # decomposed accents, kept as written
        SQL,
        "Robert'); DROP TABLE member_vehicle;--",
    ],
)
async def test_names_are_stored_and_returned_verbatim(client, admin, session, name):
    r = await client.post("/v1/members", json=enrolment(name=name), headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == name
    again = await client.get(f"/v1/members/{created['id']}", headers=admin)
    assert again.json()["name"] == name
    stored = await session.scalar(select(Member.name).where(Member.id == created["id"]))
    assert stored == name
    assert await session.scalar(select(func.count()).select_from(Member)) >= 1  # table intact


@pytest.mark.parametrize("name", ["Ann\nLee", "bell\x07", "tab\tname", "\x1b[31mred"])
async def test_control_characters_in_names_are_refused(client, admin, session, name):
    before = await table_counts(session)
    assert_refused(await client.post("/v1/members", json=enrolment(name=name), headers=admin), 422)
    assert await table_counts(session) == before


@pytest.mark.parametrize(
    ("written", "stored"),
    [("京A·12345", "京A12345"), ("ｂｊ　１２３４５", "BJ12345"), ("粤b 8888８", "粤B88888")],
)
async def test_unicode_plates_are_normalised(client, settings, member, written, stored):
    me = factories.member_headers(settings, member)
    r = await client.post("/v1/me/vehicles", json={"plate": written}, headers=me)
    assert r.status_code == 201, r.text
    assert r.json()["plate"] == stored


@pytest.mark.parametrize("plate", ["🚗🚗🚗🚗", "مرسيدس١٢٣", SQL, "AB\u0301CD", "<script>"])
async def test_odd_plates_are_refused_clearly(client, settings, member, session, plate):
    me = factories.member_headers(settings, member)
    before = await table_counts(session)
    body = assert_refused(await client.post("/v1/me/vehicles", json={"plate": plate}, headers=me))
    assert body["error"] in {"InvalidPlate", "ValidationError"}
    assert await table_counts(session) == before


async def test_sql_looking_text_is_data_never_code(client, admin, till, member, session):
    before = await table_counts(session)
    r = await client.get("/v1/members", params={"q": SQL}, headers=admin)
    assert r.status_code == 200 and r.json()["items"] == []
    r = await client.get("/v1/members", params={"q": "' OR '1'='1"}, headers=admin)
    assert r.status_code == 200 and r.json()["items"] == []
    r = await client.post("/v1/pos/purchases", json=receipt(SQL, ("a", 100)), headers=till)
    assert_refused(r, 422)
    r = await client.post("/v1/pos/identify", json={"code": SQL}, headers=till)
    assert_refused(r, 404)
    assert await table_counts(session) == before
    for table in ("member", "member_vehicle", "loyalty_purchase"):
        await session.execute(text(f"SELECT 1 FROM {table} LIMIT 1"))


# ---------------------------------------------------------------- numbers out of range


def one_line(**line: Any) -> dict[str, Any]:
    body = receipt("R-RANGE", ("fuel", 100))
    body["lines"][0].update(line)
    body["total"] = body["lines"][0]["amount"]
    return body


@pytest.mark.parametrize(
    "body",
    [
        one_line(amount=-1),
        one_line(amount=2**63),
        one_line(amount=10**30),
        one_line(quantity=-1),
        one_line(quantity=0),
        one_line(quantity="1e400"),
        one_line(quantity="NaN"),
        one_line(volume_ml=-5),
        one_line(volume_ml=2**70),
        one_line(line_no=2**40),
        {**receipt("R-RANGE", ("a", 100)), "member_id": 2**63},
        {**receipt("R-RANGE", ("a", 100)), "member_id": -1},
    ],
)
async def test_purchase_numbers_out_of_range_are_422(client, till, member, session, body):
    before = await table_counts(session)
    assert_refused(await client.post("/v1/pos/purchases", json=body, headers=till), 422)
    assert_refused(await client.post("/v1/pos/purchases/quote", json=body, headers=till), 422)
    assert await table_counts(session) == before


@pytest.mark.parametrize("points", [0, -1, 2**31, 2**63, 10**40])
async def test_redemption_points_out_of_range_are_422(client, till, member, session, points):
    before = await table_counts(session)
    r = await client.post(
        "/v1/pos/redemptions",
        json={"member_code": member.card_number, "points": points},
        headers=till,
    )
    assert_refused(r, 422)
    assert await table_counts(session) == before


@pytest.mark.parametrize("points", [0, 10**7 + 1, -(10**7) - 1, 2**63, -(2**63) - 1, 10**40])
async def test_adjustment_points_out_of_range_are_422(client, admin, member, session, points):
    before = await table_counts(session)
    r = await client.post(
        f"/v1/members/{member.id}/adjustments",
        json={"points": points, "reason": "hostile"},
        headers=admin,
    )
    assert_refused(r, 422)
    assert await table_counts(session) == before


@pytest.mark.parametrize("path", ["/v1/members/{}", "/v1/rewards/{}", "/v1/campaigns/{}"])
@pytest.mark.parametrize("value", [2**63, 2**64 + 7, 10**30])
async def test_ids_beyond_64_bits_are_4xx_not_500(client, admin, path, value):
    r = await client.get(path.format(value), headers=admin)
    assert_refused(r)


async def test_query_ids_beyond_64_bits_are_4xx_not_500(client, admin):
    r = await client.get("/v1/insights/portfolio", params={"staff_id": 2**63}, headers=admin)
    assert_refused(r)


# ---------------------------------------------------------------- brute force is bounded


async def otp_verify(client, phone: str, code: str):  # type: ignore[no-untyped-def]
    return await client.post("/v1/auth/otp/verify", json={"phone": phone, "code": code})


async def test_guessing_one_phones_code_from_rotating_ips_stops_at_five_tries(app, sms, session):
    phone = "+8613912340001"
    with clock.frozen(T0):
        async with client_at(app, "198.51.100.1") as first:
            assert (await first.post("/v1/auth/otp", json={"phone": phone})).status_code == 202
        real = sms.last_code(phone)
        guesses = [f"{n:06d}" for n in range(1000) if f"{n:06d}" != real][:30]
        outcomes = []
        for i, guess in enumerate(guesses):
            async with client_at(app, f"198.51.100.{10 + i}") as attacker:
                outcomes.append((await otp_verify(attacker, phone, guess)).status_code)
        assert outcomes[:4] == [401] * 4
        assert set(outcomes[4:]) == {429}  # locked after five wrong tries, whatever the IP
        async with client_at(app, "198.51.100.250") as owner:
            assert (await otp_verify(owner, phone, real)).status_code == 429
    assert await session.scalar(select(func.count()).where(Member.phone == phone)) == 0


async def test_fresh_codes_for_one_phone_are_capped_per_hour(app, sms):
    """Each new code allows five guesses; new codes are capped, so guesses per hour are too."""
    phone = "+8613912340002"
    with clock.frozen(T0) as frozen:
        accepted = 0
        for i in range(12):
            async with client_at(app, f"198.51.101.{i}") as c:
                r = await c.post("/v1/auth/otp", json={"phone": phone})
            accepted += r.status_code == 202
            frozen.tick(61)
    assert accepted == make_settings().otp_per_phone_per_hour == 5
    # at most 5 codes x 5 tries = 25 guesses an hour at a one-in-a-million code


async def test_many_phones_from_one_ip_are_capped(app, sms, session):
    limit = make_settings().otp_per_ip_per_hour
    with clock.frozen(T0):
        async with client_at(app, "192.0.2.77") as c:
            statuses = [
                (await c.post("/v1/auth/otp", json={"phone": f"+86139123{i:05d}"})).status_code
                for i in range(limit + 10)
            ]
    assert statuses[:limit] == [202] * limit
    assert set(statuses[limit:]) == {429}
    assert len(sms.sent) == limit
    count = select(func.count()).select_from(OtpChallenge)
    assert await session.scalar(count) == limit


async def test_wrong_codes_across_many_phones_from_one_ip_are_capped(app, sms, session):
    """Spraying guesses over many phones (a code each) is capped per IP, not only per phone."""
    limit = make_settings().otp_per_ip_per_hour * 5
    phones = [f"+86139124{i:05d}" for i in range(40)]
    with clock.frozen(T0):
        for i, phone in enumerate(phones):  # codes requested from many addresses
            async with client_at(app, f"203.0.113.{100 + i}") as c:
                assert (await c.post("/v1/auth/otp", json={"phone": phone})).status_code == 202
        async with client_at(app, "192.0.2.99") as attacker:
            statuses = []
            for n in range(limit + 5):
                phone = phones[n % len(phones)]
                statuses.append((await otp_verify(attacker, phone, "000000")).status_code)
        async with client_at(app, "192.0.2.98") as other:
            real = sms.last_code(phones[-1])
            assert (await otp_verify(other, phones[-1], real)).status_code in (200, 429)
    assert 429 in statuses
    assert statuses.index(429) <= limit
    assert set(statuses[limit:]) == {429}
    assert await session.scalar(select(func.count()).select_from(Member)) <= 1


async def test_guessing_card_numbers_at_the_till_is_capped(client, till, member, settings, session):
    limit = settings.identify_failures_per_minute
    prefix = member.card_number[:-4]
    with clock.frozen(T0):
        statuses = [
            (
                await client.post(
                    "/v1/pos/identify", json={"code": f"{prefix}{n:04d}"}, headers=till
                )
            ).status_code
            for n in range(limit + 20)
            if f"{prefix}{n:04d}" != member.card_number
        ]
        # once locked, even the right card is refused: guessing cannot continue
        r = await client.post("/v1/pos/identify", json={"code": member.card_number}, headers=till)
    assert set(statuses[:limit]) == {404}
    assert set(statuses[limit:]) == {429}
    assert r.status_code == 429
    hits = select(func.count()).where(RateHit.bucket == "identify_fail")
    assert await session.scalar(hits) == limit


async def test_identify_without_a_terminal_key_cannot_guess_at_all(client, member):
    for code in (member.card_number, member.phone, "nobody"):
        r = await client.post("/v1/pos/identify", json={"code": code})
        assert_refused(r, 401)
