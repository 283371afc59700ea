"""Enrolment, phones, card numbers, consents, profile, vehicles and the personal-data access log."""

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from api.core import clock
from api.core.models import AccessLog
from api.main import create_app
from api.members.models import Member, MemberConsent, Vehicle
from tests.conftest import client_at, make_settings
from tests.factories import make_member, member_headers

T0 = datetime(2030, 6, 1, 8, 0, tzinfo=UTC)


def assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail", "request_id"}
    assert body["error"] == error
    return body


def luhn_ok(number: str) -> bool:
    """Independent Luhn check: double every second digit from the right."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


async def consent_rows(session, member_id: int) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    stmt = select(
        MemberConsent.channel, MemberConsent.granted, MemberConsent.source, MemberConsent.updated_at
    ).where(MemberConsent.member_id == member_id)
    return {row[0]: tuple(row[1:]) for row in await session.execute(stmt)}


async def count_members(session, phone: str) -> int:  # type: ignore[no-untyped-def]
    return await session.scalar(
        select(func.count()).select_from(Member).where(Member.phone == phone)
    )


# --- enrolment ---------------------------------------------------------------------------------


async def test_terminal_enrols_at_its_store(client, org, session):
    with clock.frozen(T0):
        r = await client.post(
            "/v1/members",
            json={
                "phone": "138 0013 8000",
                "name": "李雷",
                "birthday": "1990-02-14",
                "email": "li.lei@example.com",
                "gender": "male",
                "consents": {"push": True, "sms": False},
                "plate": "沪a·123 45",
            },
            headers=org.terminal(org.fuel_a),
        )
    assert r.status_code == 201, r.text
    member = r.json()
    assert member["phone"] == "+8613800138000"
    assert (member["home_store_id"], member["enrolled_via"], member["status"]) == (
        org.fuel_a.id,
        "pos",
        "active",
    )
    assert (member["name"], member["birthday"], member["email"], member["gender"]) == (
        "李雷",
        "1990-02-14",
        "li.lei@example.com",
        "male",
    )
    assert [v["plate"] for v in member["vehicles"]] == ["沪A12345"]
    assert {k: v["granted"] for k, v in member["consents"].items()} == {
        "push": True,
        "sms": False,
        "email": False,
    }
    assert {v["source"] for v in member["consents"].values()} == {"pos"}

    assert await consent_rows(session, member["id"]) == {
        "push": (True, "pos", T0),
        "sms": (False, "pos", T0),
        "email": (False, "pos", T0),
    }
    row = await session.get(Member, member["id"])
    assert (row.birth_month, row.birth_day) == (2, 14)


async def test_staff_enrols_at_their_store(client, org):
    r = await client.post(
        "/v1/members", json={"phone": "13800138001"}, headers=org.headers["store_manager"]
    )
    assert r.status_code == 201, r.text
    assert (r.json()["home_store_id"], r.json()["enrolled_via"]) == (org.supermarket.id, "staff")
    assert {v["source"] for v in r.json()["consents"].values()} == {"staff"}
    assert not any(v["granted"] for v in r.json()["consents"].values())

    by_admin = await client.post(
        "/v1/members",
        json={"phone": "13800138002", "home_store_id": org.fuel_b.id},
        headers=org.headers["admin"],
    )
    assert by_admin.status_code == 201
    assert (by_admin.json()["home_store_id"], by_admin.json()["enrolled_via"]) == (
        org.fuel_b.id,
        "staff",
    )


@pytest.mark.parametrize(
    "written",
    ["138 0013 8000", "13800138000", "+86 138-0013-8000", "+8613800138000", "008613800138000"],
)
async def test_phone_is_normalised_to_e164(client, org, written):
    r = await client.post("/v1/members", json={"phone": written}, headers=org.terminal(org.fuel_a))
    assert r.status_code == 201, r.text
    assert r.json()["phone"] == "+8613800138000"


async def test_default_phone_region_is_a_setting(engine, maker, org):
    app = create_app(make_settings(default_phone_region="HK"), engine=engine)
    app.state.sessionmaker = maker
    async with client_at(app, "192.0.2.1") as client:
        r = await client.post(
            "/v1/members", json={"phone": "9123 4567"}, headers=org.headers["admin"]
        )
    assert r.status_code == 201, r.text
    assert r.json()["phone"] == "+85291234567"


@pytest.mark.parametrize("phone", ["12345", "138 0013 800", "+1 555", "phone", "+86 000 0000 0000"])
async def test_invalid_phone_is_422(client, org, session, phone):
    r = await client.post("/v1/members", json={"phone": phone}, headers=org.headers["admin"])
    assert_error(r, 422, "InvalidPhone")
    assert await session.scalar(select(func.count()).select_from(Member)) == 0


async def test_duplicate_phone_is_409_however_written(client, org, session):
    till = org.terminal(org.supermarket)
    assert (
        await client.post("/v1/members", json={"phone": "13800138000"}, headers=till)
    ).status_code == 201
    for written in ("13800138000", "+86 138 0013 8000", "138-0013-8000"):
        r = await client.post("/v1/members", json={"phone": written}, headers=org.headers["admin"])
        assert_error(r, 409, "MemberExists")
    assert await count_members(session, "+8613800138000") == 1


@pytest.mark.parametrize(
    "change",
    [
        {"email": "not-an-email"},
        {"gender": "unknown"},
        {"name": ""},
        {"birthday": "1899-12-31"},
        {"consents": {"push": "maybe"}},
    ],
)
async def test_member_fields_are_validated(client, org, change):
    r = await client.post(
        "/v1/members", json={"phone": "13800138000"} | change, headers=org.headers["admin"]
    )
    assert_error(r, 422, "ValidationError")


async def test_birthday_in_the_future_is_refused(client, org):
    tomorrow = (clock.now() + timedelta(days=1)).date().isoformat()
    r = await client.post(
        "/v1/members",
        json={"phone": "13800138000", "birthday": tomorrow},
        headers=org.headers["admin"],
    )
    body = assert_error(r, 422, "ValidationError")
    assert ["body", "birthday"] in [e["loc"] for e in body["detail"]]


async def test_birthday_check_follows_the_platform_clock(client, org):
    till = org.terminal(org.supermarket)  # a terminal key does not expire when the clock moves
    with clock.frozen(T0):
        past_in_2030 = await client.post(
            "/v1/members", json={"phone": "13800138000", "birthday": "2030-05-01"}, headers=till
        )
        assert past_in_2030.status_code == 201, past_in_2030.text
        after_t0 = await client.post(
            "/v1/members", json={"phone": "13800138001", "birthday": "2030-06-02"}, headers=till
        )
        assert_error(after_t0, 422, "ValidationError")


# --- card numbers ------------------------------------------------------------------------------


async def test_card_numbers_have_prefix_length_and_luhn_and_are_random(client, org, settings):
    cards = []
    for i in range(6):
        r = await client.post(
            "/v1/members", json={"phone": f"1380013810{i}"}, headers=org.terminal(org.fuel_a)
        )
        assert r.status_code == 201
        cards.append(r.json()["card_number"])
    for card in cards:
        assert card.isdigit() and len(card) == settings.card_length == 16
        assert card.startswith(settings.card_prefix)
        assert luhn_ok(card), card
        assert not luhn_ok(card[:-1] + str((int(card[-1]) + 1) % 10))
    bodies = sorted(int(c[len(settings.card_prefix) : -1]) for c in cards)
    gaps = [b - a for a, b in itertools.pairwise(bodies)]
    assert min(gaps) > 1000, "card numbers look sequential"


async def test_card_prefix_and_length_are_settings(engine, maker, org):
    app = create_app(make_settings(card_prefix="6012345", card_length=19), engine=engine)
    app.state.sessionmaker = maker
    async with client_at(app, "192.0.2.1") as client:
        r = await client.post(
            "/v1/members", json={"phone": "13800138000"}, headers=org.headers["admin"]
        )
    card = r.json()["card_number"]
    assert len(card) == 19 and card.startswith("6012345") and luhn_ok(card)


# --- profile (the app) -------------------------------------------------------------------------


async def test_me_shows_the_profile(client, org, session, settings):
    member = await make_member(session, settings, store=org.supermarket, birthday=date(1988, 8, 8))
    await session.commit()
    r = await client.get("/v1/me", headers=member_headers(settings, member))
    assert r.status_code == 200
    me = r.json()
    assert (me["id"], me["phone"], me["birthday"]) == (member.id, member.phone, "1988-08-08")
    assert set(me["consents"]) == {"push", "sms", "email"}


async def test_patch_me_changes_consents_with_source_and_time(client, org, session, settings):
    with clock.frozen(T0) as frozen:
        member = await make_member(session, settings, store=org.supermarket, push=True)
        await session.commit()
        frozen.tick(3600)
        headers = member_headers(settings, member)
        r = await client.patch(
            "/v1/me", json={"consents": {"push": False, "sms": True}}, headers=headers
        )
        assert r.status_code == 200, r.text
    t1 = T0 + timedelta(hours=1)
    assert await consent_rows(session, member.id) == {
        "push": (False, "app", t1),
        "sms": (True, "app", t1),
        "email": (False, "staff", T0),
    }
    consents = r.json()["consents"]
    assert consents["sms"]["source"] == "app" and consents["sms"]["granted"] is True
    assert datetime.fromisoformat(consents["sms"]["updated_at"]) == t1
    assert consents["email"]["source"] == "staff"


async def test_patch_me_changes_birthday_and_profile(client, org, session, settings):
    member = await make_member(session, settings, store=org.supermarket)
    await session.commit()
    member_id, headers = member.id, member_headers(settings, member)
    r = await client.patch(
        "/v1/me",
        json={
            "birthday": "1995-12-24",
            "name": "韩梅梅",
            "gender": "female",
            "email": "m@example.com",
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["birthday"], r.json()["name"], r.json()["gender"], r.json()["email"]) == (
        "1995-12-24",
        "韩梅梅",
        "female",
        "m@example.com",
    )
    session.expire_all()
    row = await session.get(Member, member_id)
    assert (row.birthday, row.birth_month, row.birth_day) == (date(1995, 12, 24), 12, 24)

    future = (clock.now() + timedelta(days=2)).date().isoformat()
    bad = await client.patch("/v1/me", json={"birthday": future}, headers=headers)
    assert_error(bad, 422, "ValidationError")
    assert (await client.get("/v1/me", headers=headers)).json()["birthday"] == "1995-12-24"

    cleared = await client.patch("/v1/me", json={"birthday": None}, headers=headers)
    assert cleared.json()["birthday"] is None
    session.expire_all()
    row = await session.get(Member, member_id)
    assert (row.birth_month, row.birth_day) == (None, None)


# --- vehicles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normalised"),
    [("沪a·123 45", "沪A12345"), ("粤B-D1234", "粤BD1234"), ("京Ａ１２３４５", "京A12345")],
)
async def test_plates_are_normalised(client, org, session, settings, written, normalised):
    member = await make_member(session, settings, store=org.fuel_a)
    await session.commit()
    r = await client.post(
        "/v1/me/vehicles", json={"plate": written}, headers=member_headers(settings, member)
    )
    assert r.status_code == 201, r.text
    assert r.json()["plate"] == normalised
    stored = (
        await session.execute(select(Vehicle.plate).where(Vehicle.member_id == member.id))
    ).scalars()
    assert list(stored) == [normalised]


async def test_a_plate_is_claimed_by_many_but_verified_for_one(client, org, session, settings):
    owner = await make_member(session, settings, store=org.fuel_a, plate="沪A12345")
    other = await make_member(session, settings, store=org.fuel_a)
    await session.commit()

    # another member may claim the plate (no squatting), but the claim stays unverified
    r = await client.post(
        "/v1/me/vehicles", json={"plate": "沪a 12345"}, headers=member_headers(settings, other)
    )
    assert r.status_code == 201, r.text
    assert r.json()["verified"] is False
    enrol = await client.post(
        "/v1/members",
        json={"phone": "13800138000", "plate": "沪A·12345"},
        headers=org.terminal(org.fuel_a),
    )
    assert enrol.status_code == 201, enrol.text

    again = await client.post(
        "/v1/me/vehicles", json={"plate": "沪A12345"}, headers=member_headers(settings, owner)
    )
    assert again.status_code == 201 and again.json()["verified"] is True
    verified = (
        await session.execute(
            select(Vehicle.member_id).where(
                Vehicle.plate == "沪A12345", Vehicle.verified_at.is_not(None)
            )
        )
    ).scalars()
    assert list(verified) == [owner.id]
    identified = await client.post(
        "/v1/pos/identify", json={"code": "沪A12345"}, headers=org.terminal(org.fuel_a)
    )
    assert identified.json()["member_id"] == owner.id


async def test_invalid_plate_is_422(client, org, session, settings):
    member = await make_member(session, settings, store=org.fuel_a)
    await session.commit()
    headers = member_headers(settings, member)
    assert_error(
        await client.post("/v1/me/vehicles", json={"plate": "!!??"}, headers=headers),
        422,
        "InvalidPlate",
    )
    assert_error(
        await client.post("/v1/me/vehicles", json={"plate": "A"}, headers=headers),
        422,
        "ValidationError",
    )


async def test_list_and_remove_vehicles(client, org, session, settings):
    member = await make_member(session, settings, store=org.fuel_a, plate="沪A11111")
    other = await make_member(session, settings, store=org.fuel_a, plate="沪A22222")
    await session.commit()
    headers = member_headers(settings, member)
    added = (
        await client.post("/v1/me/vehicles", json={"plate": "沪B33333"}, headers=headers)
    ).json()
    listed = (await client.get("/v1/me/vehicles", headers=headers)).json()
    assert [v["plate"] for v in listed] == ["沪A11111", "沪B33333"]

    other_vehicle = (
        await client.get("/v1/me/vehicles", headers=member_headers(settings, other))
    ).json()[0]
    not_mine = await client.delete(f"/v1/me/vehicles/{other_vehicle['id']}", headers=headers)
    assert not_mine.status_code == 404
    assert (
        await client.delete(f"/v1/me/vehicles/{added['id']}", headers=headers)
    ).status_code == 204
    assert [v["plate"] for v in (await client.get("/v1/me/vehicles", headers=headers)).json()] == [
        "沪A11111"
    ]


# --- staff reads and the access log ------------------------------------------------------------


async def test_staff_read_of_a_member_is_logged(client, org, session, settings):
    member = await make_member(session, settings, store=org.supermarket)
    await session.commit()
    staff = org.staff["store_manager"]
    r = await client.get(
        f"/v1/members/{member.id}",
        headers=org.headers["store_manager"] | {"X-Request-ID": "req-77"},
    )
    assert r.status_code == 200
    assert r.json()["card_number"] == member.card_number
    rows = (await session.execute(select(AccessLog.__table__))).all()
    assert len(rows) == 1
    log = rows[0]
    assert (log.staff_id, log.member_id, log.request_id) == (staff.id, member.id, "req-77")
    assert log.action == f"GET /v1/members/{member.id}"
    assert log.created_at is not None


async def test_refused_reads_are_not_logged_as_reads(client, org, session, settings):
    member = await make_member(session, settings, store=org.fuel_b)
    await session.commit()
    r = await client.get(f"/v1/members/{member.id}", headers=org.headers["store_manager"])
    assert r.status_code == 404
    assert await session.scalar(select(func.count()).select_from(AccessLog)) == 0


async def test_search_logs_each_member_shown(client, org, session, settings):
    a = await make_member(session, settings, store=org.supermarket, name="周杰")
    b = await make_member(session, settings, store=org.supermarket, name="周杰伦")
    await make_member(session, settings, store=org.supermarket, name="林俊杰")
    await session.commit()
    r = await client.get("/v1/members", params={"q": "周杰"}, headers=org.headers["admin"])
    assert {m["id"] for m in r.json()["items"]} == {a.id, b.id}
    logged = (await session.execute(select(AccessLog.member_id, AccessLog.action))).all()
    assert sorted(logged) == sorted([(a.id, "search"), (b.id, "search")])


@pytest.mark.parametrize("how", ["phone", "local phone", "card", "plate", "plate written loosely"])
async def test_search_finds_a_member_by_any_identifier(client, org, session, settings, how):
    member = await make_member(session, settings, store=org.fuel_a, plate="沪C54321")
    await make_member(session, settings, store=org.fuel_a)
    await session.commit()
    q = {
        "phone": member.phone,
        "local phone": member.phone[3:],
        "card": member.card_number,
        "plate": "沪C54321",
        "plate written loosely": "沪c·543 21",
    }[how]
    r = await client.get("/v1/members", params={"q": q}, headers=org.headers["region_manager"])
    assert [m["id"] for m in r.json()["items"]] == [member.id]


async def test_member_list_is_cursor_paged(client, org, session, settings):
    made = [await make_member(session, settings, store=org.supermarket) for _ in range(5)]
    await session.commit()
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (
            await client.get("/v1/members", params=params, headers=org.headers["store_manager"])
        ).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted((m.id for m in made), reverse=True)
    bad = await client.get("/v1/members", params={"cursor": "zzz"}, headers=org.headers["admin"])
    assert_error(bad, 422, "InvalidCursor")
