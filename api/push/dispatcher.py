"""Sending what the runs queued, exactly once as the member sees it.

1. Claim (one short transaction, committed before any network call): due deliveries are locked
   FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite's BEGIN IMMEDIATE serialises claims), the reward
   is granted once (`reward_done`), and each row gets a fresh `attempt_id` and a lease.
   Deliveries without push consent, device or transport end here (inbox_only, no_device,
   no_transport).
2. Send, outside any transaction, one message per active device, tagged with the delivery id
   (android tag, apns-collapse-id, webpush tag): a copy the phone already shows is replaced.
3. Record (a second transaction), only where `attempt_id` is still ours: sent with FCM's
   message ids, or failed; dead tokens are deactivated. A sent row is never claimed again.

A worker killed between 1 and 3 leaves rows `sending`; once their lease ends another worker
claims and sends them again with the same tag, so the phone still shows one notification.
Wire duplicates are therefore limited to the messages in flight when a worker died.
"""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core import clock
from api.core.config import Settings
from api.core.db import is_postgres, run_in_transaction
from api.push import devices, rewards
from api.push.models import Campaign, Delivery, InboxItem
from api.push.transport import PushMessage, PushTransport, SendOutcome

log = logging.getLogger("loyalty.push")

LIVE = ("scheduled", "running")


@dataclass
class Claimed:
    delivery_id: int
    attempt_id: str
    messages: list[PushMessage] = field(default_factory=list)


def _due(now: datetime) -> object:
    return and_(
        or_(
            and_(Delivery.status == "queued", Delivery.not_before <= now),
            and_(Delivery.status == "sending", Delivery.lease_until < now),
        ),
        or_(Delivery.is_test.is_(True), Campaign.status.in_(LIVE)),
    )


@dataclass
class Batch:
    handled: int
    to_send: list[Claimed]


async def claim(
    session: AsyncSession, *, limit: int, lease_seconds: int, transport: PushTransport
) -> Batch:
    """Claim up to `limit` due deliveries; `to_send` are those that now need a push."""
    now = clock.now()
    stmt = (
        select(Delivery, Campaign)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(_due(now))  # type: ignore[arg-type]
        .order_by(Delivery.not_before, Delivery.id)
        .limit(limit)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True, of=Delivery)
    rows = list(await session.execute(stmt))
    if not rows:
        return Batch(0, [])
    tokens = await devices.active_tokens(session, member_ids={d.member_id for d, _ in rows})
    items = {
        i.delivery_id: i
        for i in (
            await session.execute(
                select(InboxItem).where(InboxItem.delivery_id.in_([d.id for d, _ in rows]))
            )
        ).scalars()
    }
    claimed = []
    for delivery, campaign in rows:
        delivery.claims += 1
        delivery.attempt_id = uuid.uuid4().hex
        if not delivery.reward_done:
            await rewards.grant(
                session, delivery=delivery, campaign=campaign, item=items.get(delivery.id)
            )
        member_tokens = tokens.get(delivery.member_id, [])
        if not delivery.push_allowed:
            delivery.status = "inbox_only"
        elif not transport.available:
            delivery.status = "no_transport"
        elif not member_tokens:
            delivery.status = "no_device"
        else:
            delivery.status = "sending"
            delivery.lease_until = now + timedelta(seconds=lease_seconds)
            claimed.append(
                Claimed(
                    delivery.id,
                    delivery.attempt_id,
                    _messages(delivery, items[delivery.id], member_tokens),
                )
            )
    await session.flush()
    return Batch(len(rows), claimed)


def _messages(delivery: Delivery, item: InboxItem, tokens: list[str]) -> list[PushMessage]:
    data = {k: str(v) for k, v in (item.data or {}).items()}
    data.update(inbox_item_id=str(item.id), campaign_id=str(delivery.campaign_id))
    return [
        PushMessage(
            token=t,
            title=item.title,
            body=item.body,
            tag=f"d{delivery.id}",
            data=data,
            image_url=item.image_url,
        )
        for t in tokens
    ]


async def record(
    session: AsyncSession, *, claimed: list[Claimed], outcomes: list[SendOutcome]
) -> dict[str, int]:
    """Write the results of one send where the claim is still ours; deactivate dead tokens."""
    now = clock.now()
    by_delivery: dict[int, list[tuple[PushMessage, SendOutcome]]] = {}
    position = 0
    for c in claimed:
        pairs = list(zip(c.messages, outcomes[position : position + len(c.messages)], strict=True))
        by_delivery[c.delivery_id] = pairs
        position += len(c.messages)
    attempts = {c.delivery_id: c.attempt_id for c in claimed}
    stmt = select(Delivery).where(Delivery.id.in_(list(attempts)))
    if is_postgres(session):
        stmt = stmt.with_for_update()
    counts = {"sent": 0, "failed": 0, "lost_claim": 0}
    dead: dict[str, str] = {}
    for delivery in (await session.execute(stmt)).scalars():
        pairs = by_delivery[delivery.id]
        dead.update({m.token: o.error or "invalid" for m, o in pairs if o.token_invalid})
        if delivery.attempt_id != attempts[delivery.id] or delivery.status != "sending":
            counts["lost_claim"] += 1  # our lease ran out and another worker took it over
            continue
        delivery.attempts += sum(o.attempts for _, o in pairs)
        ids = [o.message_id for _, o in pairs if o.ok]
        delivery.lease_until = None
        if ids:
            delivery.status, delivery.sent_at, delivery.fcm_message_ids = "sent", now, ids
            delivery.reason = None
        else:
            delivery.status = "failed"
            delivery.reason = next((o.error for _, o in pairs if o.error), "unknown")
        counts[delivery.status] += 1
    await devices.deactivate(session, reasons=dead)
    await session.flush()
    return counts


async def dispatch_due(
    maker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    transport: PushTransport,
    max_batches: int | None = None,
) -> int:
    """Claim, send and record batches until nothing is due; returns deliveries handled."""
    handled = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        batch = await run_in_transaction(
            maker,
            lambda s: claim(
                s,
                limit=settings.push_batch_size,
                lease_seconds=settings.push_lease_seconds,
                transport=transport,
            ),
        )
        if not batch.handled:
            break
        handled += batch.handled
        claimed = batch.to_send
        if not claimed:
            continue
        messages = [m for c in claimed for m in c.messages]
        try:
            outcomes = await transport.send(messages)
        except Exception:
            log.exception(
                "push: a send of %s messages failed; the lease will retry it", len(messages)
            )
            break
        counts = await run_in_transaction(
            maker, partial(record, claimed=claimed, outcomes=outcomes)
        )
        log.info("push: batch of %s deliveries: %s", len(claimed), counts)
    return handled
