"""Idempotency-Key on member mutations: a retry replays the first response, never a second write."""

from sqlalchemy import func, select

from api.core.models import IdempotencyRecord
from api.members.models import Member, Vehicle
from tests.factories import make_member, member_headers

PHONE = "+8613800138000"


def assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail", "request_id"}
    assert body["error"] == error
    return body


async def count(session, model, *where) -> int:  # type: ignore[no-untyped-def]
    return await session.scalar(select(func.count()).select_from(model).where(*where))


# --- POST /v1/members --------------------------------------------------------------------------


async def test_same_key_and_body_replays_the_first_enrolment(client, org, session):
    headers = org.terminal(org.fuel_a) | {"Idempotency-Key": "enrol-1"}
    body = {"phone": "138 0013 8000", "name": "王芳", "consents": {"push": True}}
    first = await client.post("/v1/members", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers

    retry = await client.post("/v1/members", json=body, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert retry.json()["id"] == first.json()["id"]

    assert await count(session, Member, Member.phone == PHONE) == 1
    assert await count(session, IdempotencyRecord, IdempotencyRecord.key == "enrol-1") == 1


async def test_same_key_with_another_body_is_422(client, org, session):
    headers = org.terminal(org.fuel_a) | {"Idempotency-Key": "enrol-2"}
    first = await client.post("/v1/members", json={"phone": "13800138000"}, headers=headers)
    assert first.status_code == 201
    other = await client.post("/v1/members", json={"phone": "13800138001"}, headers=headers)
    assert_error(other, 422, "IdempotencyKeyReused")
    same_phone_other_name = await client.post(
        "/v1/members", json={"phone": "13800138000", "name": "X"}, headers=headers
    )
    assert_error(same_phone_other_name, 422, "IdempotencyKeyReused")
    assert await count(session, Member, Member.phone == "+8613800138001") == 0


async def test_different_keys_are_separate_attempts(client, org, session):
    till = org.terminal(org.fuel_a)
    body = {"phone": "13800138000"}
    first = await client.post("/v1/members", json=body, headers=till | {"Idempotency-Key": "a"})
    assert first.status_code == 201
    second = await client.post("/v1/members", json=body, headers=till | {"Idempotency-Key": "b"})
    assert_error(second, 409, "MemberExists")
    third = await client.post(
        "/v1/members", json={"phone": "13800138001"}, headers=till | {"Idempotency-Key": "c"}
    )
    assert third.status_code == 201
    assert third.json()["id"] != first.json()["id"]
    without_key = await client.post("/v1/members", json=body, headers=till)
    assert_error(without_key, 409, "MemberExists")


async def test_keys_belong_to_the_caller(client, org, session):
    """The same key from another terminal or a staff member is another request, not a replay."""
    key = {"Idempotency-Key": "shared-key"}
    a = await client.post(
        "/v1/members", json={"phone": "13800138000"}, headers=org.terminal(org.fuel_a) | key
    )
    b = await client.post(
        "/v1/members", json={"phone": "13800138001"}, headers=org.terminal(org.fuel_b) | key
    )
    c = await client.post(
        "/v1/members", json={"phone": "13800138002"}, headers=org.headers["admin"] | key
    )
    assert [r.status_code for r in (a, b, c)] == [201, 201, 201]
    assert len({r.json()["id"] for r in (a, b, c)}) == 3
    assert (a.json()["home_store_id"], b.json()["home_store_id"]) == (org.fuel_a.id, org.fuel_b.id)


async def test_a_failed_attempt_does_not_use_up_the_key(client, org, session, settings):
    await make_member(session, settings, phone=PHONE)
    await session.commit()
    headers = org.terminal(org.fuel_a) | {"Idempotency-Key": "retry-me"}
    refused = await client.post("/v1/members", json={"phone": PHONE}, headers=headers)
    assert_error(refused, 409, "MemberExists")
    assert await count(session, IdempotencyRecord, IdempotencyRecord.key == "retry-me") == 0
    ok = await client.post("/v1/members", json={"phone": "13800138009"}, headers=headers)
    assert ok.status_code == 201 and "idempotent-replayed" not in ok.headers


async def test_overlong_key_is_422(client, org):
    r = await client.post(
        "/v1/members",
        json={"phone": "13800138000"},
        headers=org.terminal(org.fuel_a) | {"Idempotency-Key": "k" * 256},
    )
    assert_error(r, 422, "ValidationError")


# --- POST /v1/me/vehicles ----------------------------------------------------------------------


async def test_vehicle_retry_replays_and_creates_one_row(client, org, session, settings):
    member = await make_member(session, settings, store=org.fuel_a)
    await session.commit()
    headers = member_headers(settings, member) | {"Idempotency-Key": "plate-1"}

    first = await client.post("/v1/me/vehicles", json={"plate": "沪A·12345"}, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    retry = await client.post("/v1/me/vehicles", json={"plate": "沪A·12345"}, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert await count(session, Vehicle, Vehicle.member_id == member.id) == 1

    other = await client.post("/v1/me/vehicles", json={"plate": "沪B54321"}, headers=headers)
    assert_error(other, 422, "IdempotencyKeyReused")
    assert await count(session, Vehicle, Vehicle.member_id == member.id) == 1

    headers["Idempotency-Key"] = "plate-2"
    second = await client.post("/v1/me/vehicles", json={"plate": "沪B54321"}, headers=headers)
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    assert await count(session, Vehicle, Vehicle.member_id == member.id) == 2


async def test_a_key_used_on_another_endpoint_is_422(client, org, session, settings):
    member = await make_member(session, settings, store=org.fuel_a)
    await session.commit()
    headers = member_headers(settings, member) | {"Idempotency-Key": "one-key"}
    assert (await client.patch("/v1/me", json={"name": "A"}, headers=headers)).status_code == 200
    r = await client.post("/v1/me/vehicles", json={"plate": "沪A12345"}, headers=headers)
    assert_error(r, 422, "IdempotencyKeyReused")


async def test_members_do_not_share_keys(client, org, session, settings):
    a = await make_member(session, settings, store=org.fuel_a)
    b = await make_member(session, settings, store=org.fuel_a)
    await session.commit()
    key = {"Idempotency-Key": "my-phone-key"}
    ra = await client.post(
        "/v1/me/vehicles", json={"plate": "沪A12345"}, headers=member_headers(settings, a) | key
    )
    rb = await client.post(
        "/v1/me/vehicles", json={"plate": "沪A12346"}, headers=member_headers(settings, b) | key
    )
    assert (ra.status_code, rb.status_code) == (201, 201)
    assert "idempotent-replayed" not in rb.headers


async def test_an_explicit_null_is_another_body(client, org, session, settings):
    """`{"email": null}` clears the e-mail, so it must not replay a request that kept it."""
    member = await make_member(session, settings, store=org.fuel_a)
    await session.commit()
    headers = member_headers(settings, member) | {"Idempotency-Key": "profile-1"}
    first = await client.patch(
        "/v1/me", json={"name": "A", "email": "a@example.com"}, headers=headers
    )
    assert first.status_code == 200
    headers["Idempotency-Key"] = "profile-2"
    keep = await client.patch("/v1/me", json={"name": "B"}, headers=headers)
    assert keep.status_code == 200 and keep.json()["email"] == "a@example.com"
    clear = await client.patch("/v1/me", json={"name": "B", "email": None}, headers=headers)
    assert_error(clear, 422, "IdempotencyKeyReused")
    assert (await client.get("/v1/me", headers=headers)).json()["email"] == "a@example.com"
