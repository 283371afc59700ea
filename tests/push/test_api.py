"""The HTTP contract: devices, inbox, campaigns (lifecycle, preview, test send)."""

from datetime import timedelta

from sqlalchemy import select

from api.core import clock
from api.push.models import Device
from tests import factories
from tests.push.helpers import add_device, make_campaign, worker_pass

CAMPAIGNS = "/v1/campaigns"
BODY = {
    "name": "Spring offer",
    "kind": "one_off",
    "audience": {"store_kind": "supermarket", "has_device": True},
    "schedule": {"at": "2030-01-01T09:00:00+08:00"},
    "message": {"title": "Hi {name}", "body": "{points} points", "data": {"screen": "offers"}},
    "holdout_percent": 10,
}


async def test_devices_register_move_and_unregister(client, session, settings, shops):
    alice = await factories.make_member(session, settings, store=shops.supermarket)
    bob = await factories.make_member(session, settings, store=shops.supermarket)
    await session.commit()
    a, b = factories.member_headers(settings, alice), factories.member_headers(settings, bob)
    body = {"token": "fcm:token-1", "platform": "ios", "locale": "zh-CN", "app_version": "3.2"}
    made = await client.post("/v1/me/devices", json=body, headers=a)
    assert made.status_code == 201 and made.json()["active"] is True
    await client.post(
        "/v1/me/devices", json={"token": "fcm:token-2", "platform": "android"}, headers=a
    )
    assert len((await client.get("/v1/me/devices", headers=a)).json()) == 2
    moved = await client.post("/v1/me/devices", json=body, headers=b)  # same phone, new owner
    assert moved.status_code == 201
    assert [d["token"] for d in (await client.get("/v1/me/devices", headers=a)).json()] == [
        "fcm:token-2"
    ]
    assert [d["token"] for d in (await client.get("/v1/me/devices", headers=b)).json()] == [
        "fcm:token-1"
    ]
    assert (await client.delete("/v1/me/devices/fcm:token-1", headers=a)).status_code == 404
    assert (await client.delete("/v1/me/devices/fcm:token-1", headers=b)).status_code == 204
    assert (await client.get("/v1/me/devices", headers=b)).json() == []
    bad = await client.post("/v1/me/devices", json={"token": "x", "platform": "nokia"}, headers=a)
    assert bad.status_code == 422
    assert (await client.post("/v1/me/devices", json=body)).status_code == 401
    rows = (await session.execute(select(Device).order_by(Device.id))).scalars().all()
    assert [(d.token, d.member_id) for d in rows] == [
        ("fcm:token-1", bob.id),
        ("fcm:token-2", alice.id),
    ]


async def test_inbox_newest_first_read_and_expiry(
    client, session, maker, settings, shops, transport
):
    member = await factories.make_member(session, settings, store=shops.supermarket, name="Li")
    me = factories.member_headers(settings, member)
    for i in range(3):
        await make_campaign(
            session,
            message={"title": f"Offer {i}", "body": "for {name}", "valid_days": 1 + i * 5},
        )
    await session.commit()
    await worker_pass(maker, settings, transport)

    page = (await client.get("/v1/me/inbox?limit=2", headers=me)).json()
    assert [i["title"] for i in page["items"]] == ["Offer 2", "Offer 1"]
    assert page["items"][0]["body"] == "for Li" and page["items"][0]["expired"] is False
    rest = (await client.get(f"/v1/me/inbox?cursor={page['next_cursor']}", headers=me)).json()
    assert [i["title"] for i in rest["items"]] == ["Offer 0"] and rest["next_cursor"] is None

    item_id = page["items"][1]["id"]
    read = await client.post(f"/v1/me/inbox/{item_id}/read", headers=me)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    again = await client.post(f"/v1/me/inbox/{item_id}/read", headers=me)
    assert again.json()["read_at"] == read.json()["read_at"]
    other = factories.member_headers(settings, await factories.make_member(session, settings))
    await session.commit()
    assert (await client.post(f"/v1/me/inbox/{item_id}/read", headers=other)).status_code == 404

    with clock.frozen(clock.now() + timedelta(days=2)):
        me = factories.member_headers(settings, member)
        flagged = (await client.get("/v1/me/inbox", headers=me)).json()["items"]
        assert [(i["title"], i["expired"]) for i in flagged] == [
            ("Offer 2", False),
            ("Offer 1", False),
            ("Offer 0", True),
        ]
        live = (await client.get("/v1/me/inbox?include_expired=false", headers=me)).json()
        assert [i["title"] for i in live["items"]] == ["Offer 2", "Offer 1"]


async def test_campaign_lifecycle_and_edits(client, org):
    marketer = org.headers["marketer"]
    made = await client.post(CAMPAIGNS, json=BODY, headers=marketer)
    assert made.status_code == 201, made.text
    campaign = made.json()
    assert (campaign["status"], campaign["version"]) == ("draft", 1)
    url = f"{CAMPAIGNS}/{campaign['id']}"
    assert (await client.get(url, headers=marketer)).json()["name"] == "Spring offer"
    assert campaign["id"] in [
        c["id"] for c in (await client.get(CAMPAIGNS, headers=marketer)).json()["items"]
    ]
    assert (
        await client.post(CAMPAIGNS, json=BODY, headers=org.headers["store_manager"])
    ).status_code == 403

    edited = await client.patch(
        url, json={"message": {"title": "Hello {name}", "body": "x"}}, headers=marketer
    )
    assert edited.json()["version"] == 2
    scheduled = await client.post(f"{url}/schedule", json={}, headers=marketer)
    assert scheduled.json()["status"] == "scheduled" and scheduled.json()["scheduled_at"]
    refused = await client.patch(url, json={"audience": {}}, headers=marketer)
    assert refused.status_code == 409 and refused.json()["error"] == "CampaignNotEditable"
    renamed = await client.patch(url, json={"name": "Spring offer 2"}, headers=marketer)
    assert renamed.status_code == 200 and renamed.json()["version"] == 2
    assert (await client.post(f"{url}/pause", headers=marketer)).json()["status"] == "paused"
    edited = await client.patch(url, json={"audience": {"tiers": ["gold"]}}, headers=marketer)
    assert edited.status_code == 200 and edited.json()["version"] == 3
    assert (await client.post(f"{url}/schedule", headers=marketer)).json()["status"] == "scheduled"
    assert (await client.post(f"{url}/cancel", headers=marketer)).json()["status"] == "cancelled"
    wrong = await client.post(f"{url}/schedule", headers=marketer)
    assert wrong.status_code == 409 and wrong.json()["error"] == "InvalidTransition"
    assert (await client.get(f"{CAMPAIGNS}/999999", headers=marketer)).status_code == 404


async def test_invalid_campaigns_are_refused(client, org):
    marketer = org.headers["marketer"]
    cases = [
        {
            **BODY,
            "kind": "recurring",
            "schedule": {"rrule": "FREQ=SOMETIMES", "timezone": "Europe/Berlin"},
        },
        {**BODY, "kind": "recurring", "schedule": {"rrule": "FREQ=DAILY", "timezone": "Mars/Base"}},
        {**BODY, "kind": "birthday", "schedule": {"local_time": "25:00"}},
        {**BODY, "kind": "one_off", "schedule": {"at": "2030-01-01T09:00:00"}},
        {**BODY, "message": {"title": "Hi {nickname}", "body": "x"}},
        {**BODY, "audience": {"favourite_colour": "red"}},
        {**BODY, "holdout_percent": 95},
        {**BODY, "reward": {"points": 10, "reward_id": 1}},
    ]
    for body in cases:
        answer = await client.post(CAMPAIGNS, json=body, headers=marketer)
        assert answer.status_code == 422, (body, answer.text)
    past = await client.post(
        CAMPAIGNS, json={**BODY, "schedule": {"at": "2020-01-01T00:00:00Z"}}, headers=marketer
    )
    scheduled = await client.post(f"{CAMPAIGNS}/{past.json()['id']}/schedule", headers=marketer)
    assert scheduled.status_code == 422 and scheduled.json()["error"] == "InvalidCampaign"


async def test_preview_and_test_send(client, session, maker, settings, org, fcm, transport):
    marketer = org.headers["marketer"]
    members = [
        await factories.make_member(session, settings, store=org.supermarket) for _ in range(4)
    ]
    silent = await factories.make_member(session, settings, store=org.supermarket, push=False)
    fuel_only = await factories.make_member(session, settings, store=org.fuel_a)
    for member in [*members, silent, fuel_only]:
        await add_device(session, member)
    await session.commit()
    made = (await client.post(CAMPAIGNS, json=BODY, headers=marketer)).json()
    preview = (await client.post(f"{CAMPAIGNS}/{made['id']}/preview", headers=marketer)).json()
    assert preview["audience_size"] == 5
    assert preview["suppressed"] == {"no_consent": 1}
    assert {s["member_id"] for s in preview["sample"]} == {m.id for m in [*members, silent]}

    test = await client.post(
        f"{CAMPAIGNS}/{made['id']}/test", json={"member_id": fuel_only.id}, headers=marketer
    )
    assert test.status_code == 201 and test.json()["is_test"] is True
    await worker_pass(maker, settings, transport)
    assert len(fcm.requests) == 1
    report = (await client.get(f"{CAMPAIGNS}/{made['id']}/report", headers=marketer)).json()
    assert report["targeted"] == 0 and report["sent"] == 0
    missing = await client.post(
        f"{CAMPAIGNS}/{made['id']}/test", json={"member_id": 10**9}, headers=marketer
    )
    assert missing.status_code == 404
