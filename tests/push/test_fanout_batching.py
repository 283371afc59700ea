"""The fan-out path at batch scale: pipelined dispatch (claims, records and sends overlap),
set-based claim/record, a failed send left to its lease, and runs picked in full before
their deliveries are written."""

import asyncio
import time
from collections.abc import Sequence

from sqlalchemy import func, select

from api.push import dispatcher
from api.push.models import Delivery, InboxItem
from api.push.transport import PushMessage, SendOutcome
from tests import factories
from tests.push.helpers import add_device, by_status, make_campaign, schedule, worker_pass


class SlowTransport:
    """Accepts everything after `delay` seconds; records when each send ran and what it got."""

    available = True

    def __init__(self, delay: float = 0.05, fail_first: bool = False) -> None:
        self.delay = delay
        self.fail_first = fail_first
        self.sends: list[tuple[float, float, list[PushMessage]]] = []
        self.started = 0

    async def send(self, messages: Sequence[PushMessage]) -> list[SendOutcome]:
        start = time.monotonic()
        first = not self.started
        self.started += 1
        await asyncio.sleep(self.delay)
        self.sends.append((start, time.monotonic(), list(messages)))
        if self.fail_first and first:
            raise RuntimeError("FCM unreachable")
        return [SendOutcome(message_id=f"m-{m.tag}-{m.token}", attempts=1) for m in messages]


async def _recipients(session, settings, shops, n: int) -> dict[int, str]:
    """n members with one device each: {member id: token}."""
    tokens = {}
    for _ in range(n):
        member = await factories.make_member(session, settings, store=shops.supermarket)
        tokens[member.id] = await add_device(session, member)
    return tokens


async def test_batches_are_claimed_while_the_previous_one_is_on_the_wire(
    session, maker, settings, shops, monkeypatch
):
    tokens = await _recipients(session, settings, shops, 7)
    campaign = await make_campaign(session)
    await session.commit()
    settings = settings.model_copy(update={"push_batch_size": 2})
    claims: list[float] = []
    real_claim = dispatcher.claim

    async def timed_claim(*args, **kwargs):
        claims.append(time.monotonic())
        return await real_claim(*args, **kwargs)

    monkeypatch.setattr(dispatcher, "claim", timed_claim)
    transport = SlowTransport()

    handled = await worker_pass(maker, settings, transport)

    assert handled == 7
    assert await by_status(session, campaign) == {"sent": 7}
    assert sorted(m.token for _, _, sent in transport.sends for m in sent) == sorted(
        tokens.values()
    )
    assert [len(sent) for _, _, sent in transport.sends] == [2, 2, 2, 1]
    first_start, first_end, _ = transport.sends[0]
    second_start, _, _ = transport.sends[1]
    assert claims[1] < first_end  # the 2nd claim ran while the 1st send was in flight
    assert first_start < second_start < first_end  # and the 2nd send overlapped the 1st
    rows = (
        await session.execute(
            select(Delivery).where(Delivery.campaign_id == campaign.id).order_by(Delivery.id)
        )
    ).scalars()
    for d in rows:
        assert d.claims == 1 and d.attempts == 1 and d.lease_until is None and d.reward_done
        assert d.fcm_message_ids == [f"m-d{d.id}-{tokens[d.member_id]}"] and d.sent_at


async def test_a_failed_send_leaves_its_batch_to_the_lease_and_records_the_others(
    session, maker, settings, shops
):
    await _recipients(session, settings, shops, 6)
    campaign = await make_campaign(session)
    await session.commit()
    settings = settings.model_copy(update={"push_batch_size": 2})
    transport = SlowTransport(fail_first=True)

    await worker_pass(maker, settings, transport)

    # the first send raised: its batch waits for its lease; the one sent beside it is recorded
    # and nothing more is claimed in this pass
    assert await by_status(session, campaign) == {"sending": 2, "sent": 2, "queued": 2}

    await worker_pass(maker, settings, SlowTransport())
    assert await by_status(session, campaign) == {"sending": 2, "sent": 4}


async def test_two_campaigns_due_in_one_pass_are_both_materialised(session, maker, settings, shops):
    await _recipients(session, settings, shops, 3)
    first = await make_campaign(session)
    second = await make_campaign(session)
    await session.commit()

    assert await schedule(maker, settings) == 2

    for campaign in (first, second):
        assert await by_status(session, campaign) == {"queued": 3}
        items = (
            await session.execute(select(func.count()).where(InboxItem.campaign_id == campaign.id))
        ).scalar_one()
        assert items == 3
