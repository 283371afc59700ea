"""End to end through the real firebase-admin SDK against the loopback fake FCM."""

import asyncio
import itertools
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


def _transport(service_account, fcm, **overrides) -> FirebaseTransport:  # type: ignore[no-untyped-def]
    values = {"rate": 5000, "max_retries": 5, "backoff_base": 0.01, "backoff_max": 3.0}
    values.update(overrides)
    return FirebaseTransport(credentials_path=str(service_account), fcm_url=fcm.url, **values)


def _gaps(fcm, token: str) -> list[float]:  # type: ignore[no-untyped-def]
    stamps = [r.at for r in fcm.sent_to(token)]
    return [b - a for a, b in itertools.pairwise(stamps)]


async def test_retry_after_is_waited_out_even_beyond_the_backoff_cap(service_account, fcm):
    """FCM's Retry-After is a floor: the retry comes no sooner, whatever our own backoff says."""
    transport = _transport(service_account, fcm, backoff_max=0.2)
    fcm.fail("busy", "QUOTA_EXCEEDED", times=1, retry_after=2)
    try:
        [outcome] = await transport.send([PushMessage(token="busy", title="t", body="b", tag="q")])
    finally:
        await asyncio.to_thread(transport.close)
    assert outcome.ok and outcome.attempts == 2
    [gap] = _gaps(fcm, "busy")
    assert gap >= 2.0, f"retried {gap:.2f}s after a 429 with Retry-After: 2"


async def test_5xx_retries_back_off_exponentially(service_account, fcm):
    transport = _transport(service_account, fcm, backoff_base=0.2)
    fcm.fail("flaky-500", "INTERNAL", times=3)
    fcm.fail("flaky-503", "UNAVAILABLE", times=3)
    messages = [
        PushMessage(token=t, title="t", body="b", tag=t) for t in ("flaky-500", "flaky-503")
    ]
    try:
        outcomes = await transport.send(messages)
    finally:
        await asyncio.to_thread(transport.close)
    assert [(o.ok, o.attempts) for o in outcomes] == [(True, 4), (True, 4)]
    for token in ("flaky-500", "flaky-503"):
        assert [r.status for r in fcm.sent_to(token)] == [500 if "500" in token else 503] * 3 + [
            200
        ]
        first, second, third = _gaps(fcm, token)
        assert first >= 0.2 and second >= 0.4 and third >= 0.8, (first, second, third)


async def test_one_send_each_with_mixed_answers_is_handled_per_message(
    session, maker, settings, shops, fcm, transport
):
    """One batch where FCM accepts some messages, throttles or fails others and reports dead
    tokens: each message gets its own fate; only the transient ones go out again."""
    kinds = {
        "ok": None,
        "quota": ("QUOTA_EXCEEDED", 1),
        "internal": ("INTERNAL", 1),
        "unavailable": ("UNAVAILABLE", 1),
        "unregistered": ("UNREGISTERED", None),
        "mismatch": ("SENDER_ID_MISMATCH", None),
        "garbled": ("INVALID_ARGUMENT", None),
    }
    recipients = await members_with_devices(session, settings, shops, len(kinds))
    token_of = {}
    for kind, (_member, token) in zip(kinds, recipients, strict=True):
        token_of[kind] = token
        if kinds[kind]:
            failure, times = kinds[kind]
            fcm.fail(token, failure, times=times, retry_after=1 if kind == "quota" else None)
    campaign = await make_campaign(session)
    await session.commit()

    await worker_pass(maker, settings, transport)

    sent_to = {kind: [r.status for r in fcm.sent_to(t)] for kind, t in token_of.items()}
    assert sent_to == {
        "ok": [200],
        "quota": [429, 200],
        "internal": [500, 200],
        "unavailable": [503, 200],
        "unregistered": [404],
        "mismatch": [403],
        "garbled": [400],
    }
    first_round = max(fcm.sent_to(t)[0].at for t in token_of.values())
    retries = [fcm.sent_to(token_of[k])[1].at for k in ("quota", "internal", "unavailable")]
    assert min(retries) - first_round >= 1.0  # the batch's Retry-After holds the whole retry
    member_of = {member.id: kind for kind, (member, _) in zip(kinds, recipients, strict=True)}
    fate = {
        member_of[d.member_id]: (d.status, d.reason) for d in await deliveries(session, campaign)
    }
    assert fate == {
        "ok": ("sent", None),
        "quota": ("sent", None),
        "internal": ("sent", None),
        "unavailable": ("sent", None),
        "unregistered": ("failed", "unregistered"),
        "mismatch": ("failed", "sender_mismatch"),
        "garbled": ("failed", "invalid_token"),
    }
    states = {
        d.token: (d.active, d.deactivated_reason)
        for d in (
            await session.execute(select(Device).execution_options(populate_existing=True))
        ).scalars()
    }
    assert {kind: states[t] for kind, t in token_of.items()} == {
        "ok": (True, None),
        "quota": (True, None),
        "internal": (True, None),
        "unavailable": (True, None),
        "unregistered": (False, "unregistered"),
        "mismatch": (False, "sender_mismatch"),
        "garbled": (False, "invalid_token"),
    }
