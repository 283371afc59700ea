"""End to end through the real firebase-admin SDK against the loopback fake FCM."""

import asyncio
import logging
import time

from sqlalchemy import select

from api.push import transport as push_transport
from api.push.models import Device
from api.push.transport import FirebaseTransport, NoTransport, PushMessage
from tests import factories
from tests.push.conftest import push_settings
from tests.push.helpers import (
    add_device,
    by_status,
    deliveries,
    inbox_of,
    make_campaign,
    worker_pass,
)


async def members_with_devices(session, settings, shops, n):
    found = []
    for i in range(n):
        member = await factories.make_member(
            session, settings, store=shops.supermarket, name=f"M{i}"
        )
        found.append((member, await add_device(session, member)))
    return found


async def test_campaign_reaches_each_device_once_and_the_inbox(
    session, maker, settings, shops, fcm, transport
):
    recipients = await members_with_devices(session, settings, shops, 3)
    second_phone = await add_device(session, recipients[0][0])
    campaign = await make_campaign(session)
    await session.commit()

    await worker_pass(maker, settings, transport)

    assert await by_status(session, campaign) == {"sent": 3}
    for token in [*(t for _, t in recipients), second_phone]:
        [request] = fcm.sent_to(token)
        assert request.tag is not None and request.data["push_id"] == request.tag
    assert fcm.sent_to(recipients[1][1])[0].title == "Hi M1"
    rows = await deliveries(session, campaign)
    assert [len(d.fcm_message_ids or []) for d in rows] == [2, 1, 1]
    assert all(d.attempts == len(d.fcm_message_ids) and d.sent_at for d in rows)
    for member, _ in recipients:
        [item] = await inbox_of(session, member)
        assert item.title == f"Hi {member.name}"
        assert item.body == "You have 0 points ()"
    await worker_pass(maker, settings, transport)  # nothing left: nothing sent twice
    assert len(fcm.requests) == 4


async def test_dead_tokens_are_pruned(session, maker, settings, shops, fcm, transport):
    (alive, alive_token), (dead, dead_token) = await members_with_devices(
        session, settings, shops, 2
    )
    stale = await add_device(session, alive)
    mismatch = await add_device(session, dead)
    garbled = await add_device(session, dead)
    fcm.fail(dead_token, "UNREGISTERED")
    fcm.fail(stale, "UNREGISTERED")
    fcm.fail(mismatch, "SENDER_ID_MISMATCH")
    fcm.fail(garbled, "INVALID_ARGUMENT")
    campaign = await make_campaign(session)
    await session.commit()

    await worker_pass(maker, settings, transport)

    sent, failed = await deliveries(session, campaign)
    assert (sent.member_id, sent.status) == (alive.id, "sent")
    assert (failed.member_id, failed.status, failed.reason) == (dead.id, "failed", "unregistered")
    states = {
        d.token: (d.active, d.deactivated_reason)
        for d in (
            await session.execute(select(Device).execution_options(populate_existing=True))
        ).scalars()
    }
    assert states[alive_token] == (True, None)
    assert states[stale] == (False, "unregistered")
    assert states[dead_token] == (False, "unregistered")
    assert states[mismatch] == (False, "sender_mismatch")
    assert states[garbled] == (False, "invalid_token")
    assert len(fcm.requests) == 5  # a dead token is not retried

    again = await make_campaign(session)
    await session.commit()
    await worker_pass(maker, settings, transport)
    assert await by_status(session, again) == {"sent": 1, "no_device": 1}
    assert len(fcm.requests) == 6


async def test_429_and_5xx_are_retried_until_sent(session, maker, settings, shops, fcm, transport):
    (_, quota), (_, internal), (_, unavailable) = await members_with_devices(
        session, settings, shops, 3
    )
    fcm.fail(quota, "QUOTA_EXCEEDED", times=1, retry_after=1)
    fcm.fail(internal, "INTERNAL", times=2)
    fcm.fail(unavailable, "UNAVAILABLE", times=1)
    campaign = await make_campaign(session)
    await session.commit()

    started = time.monotonic()
    await worker_pass(maker, settings, transport)

    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert await by_status(session, campaign) == {"sent": 3}
    attempts = {d.member_id: d.attempts for d in await deliveries(session, campaign)}
    assert sorted(attempts.values()) == [2, 2, 3]
    # the SDK's own urllib3 retries are off: each try is one request the fake saw
    assert [len(fcm.sent_to(t)) for t in (quota, internal, unavailable)] == [2, 3, 2]
    assert [r.status for r in fcm.sent_to(internal)] == [500, 500, 200]


async def test_retries_give_up_after_the_limit(session, maker, service_account, shops, fcm):
    settings = push_settings(service_account, fcm.url, push_max_retries=2)
    transport = push_transport.transport_for(settings)
    (_, token), *_ = await members_with_devices(session, settings, shops, 1)
    fcm.fail(token, "UNAVAILABLE")
    campaign = await make_campaign(session)
    await session.commit()

    await worker_pass(maker, settings, transport)

    [delivery] = await deliveries(session, campaign)
    assert (delivery.status, delivery.reason, delivery.attempts) == ("failed", "unavailable", 3)
    assert len(fcm.sent_to(token)) == 3
    await asyncio.to_thread(transport.close)


async def test_send_rate_is_throttled(service_account, fcm):
    """N messages at R per second take at least N/R seconds."""
    rate, n = 20, 12
    transport = FirebaseTransport(
        credentials_path=str(service_account),
        rate=rate,
        max_retries=0,
        backoff_base=0,
        backoff_max=0,
        batch_size=5,
        fcm_url=fcm.url,
    )
    await transport.send([PushMessage(token="warm-up", title="t", body="b", tag="w")])
    await asyncio.sleep(1 / rate)
    messages = [PushMessage(token=f"t{i}", title="t", body="b", tag=f"x{i}") for i in range(n)]
    started = time.monotonic()
    outcomes = await transport.send(messages)
    elapsed = time.monotonic() - started
    assert all(o.ok for o in outcomes)
    assert elapsed >= n / rate
    stamps = sorted(r.at for r in fcm.requests if r.token != "warm-up")
    assert stamps[-1] - stamps[0] >= (n - 5) / rate  # three batches, paced
    await asyncio.to_thread(transport.close)


async def test_without_credentials_the_inbox_still_works(session, maker, shops, fcm, caplog):
    settings = push_settings(None, None)
    (member, _), *_ = await members_with_devices(session, settings, shops, 1)
    campaign = await make_campaign(session)
    await session.commit()
    transport = push_transport.transport_for(settings)
    assert isinstance(transport, NoTransport)

    await worker_pass(maker, settings, transport)

    assert await by_status(session, campaign) == {"no_transport": 1}
    assert len(await inbox_of(session, member)) == 1
    assert fcm.requests == []
    with caplog.at_level(logging.INFO, logger="loyalty.push"):
        push_transport.announce(settings)
    [line] = [r for r in caplog.records if r.name == "loyalty.push"]
    assert line.levelno == logging.WARNING and "LOYALTY_FIREBASE_CREDENTIALS" in line.message
