"""Sending what the runs queued, exactly once as the member sees it.

1. Claim (one short transaction, committed before any network call): due deliveries are locked
   FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite's BEGIN IMMEDIATE serialises claims), the reward
   is granted once (`reward_done`), and the batch gets a fresh `attempt_id` and a lease.
   Deliveries without push consent, device or transport end here (inbox_only, no_device,
   no_transport).
2. Send, outside any transaction, one message per active device, tagged with the delivery id
   (android tag, apns-collapse-id, webpush tag): a copy the phone already shows is replaced.
3. Record (a second transaction), only where `attempt_id` is still ours: sent with FCM's
   message ids, or failed; dead tokens are deactivated. A sent row is never claimed again.

A worker killed between 1 and 3 leaves rows `sending`; once their lease ends another worker
claims and sends them again with the same tag, so the phone still shows one notification.
Wire duplicates are therefore limited to the messages in flight when a worker died.

Batches are pipelined: a batch goes on the wire (firebase-admin runs in a thread) as soon as
it is claimed, while the previous one is still finishing; each is recorded when its send
returns. Claims and records run one transaction after the other and are set-based (a few
statements per batch, no ORM object per delivery) except for deliveries with a reward.
"""

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    any_,
    bindparam,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core import clock
from api.core.config import Settings
from api.core.db import is_postgres, run_in_transaction
from api.push import devices, rewards
from api.push.models import Campaign, Delivery, Device, InboxItem
from api.push.transport import PushMessage, PushTransport, SendOutcome

log = logging.getLogger("loyalty.push")

LIVE = ("scheduled", "running")
T = TypeVar("T")


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


def _one_of(session: AsyncSession, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """column IN ids: on PostgreSQL one array parameter (`= ANY`), not one per id."""
    if is_postgres(session):
        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))  # type: ignore[no-any-return]
    return column.in_(list(ids))  # type: ignore[no-any-return]


async def _grant_rewards(session: AsyncSession, delivery_ids: list[int]) -> None:
    """The claimed deliveries whose campaign gives a reward not given yet: through the ORM,
    one at a time (points go through the ledger under the account's row lock)."""
    stmt = (
        select(Delivery, Campaign)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.id.in_(delivery_ids))
        .order_by(Delivery.id)
    )
    rows = list(await session.execute(stmt))
    items = {
        i.delivery_id: i
        for i in (
            await session.execute(select(InboxItem).where(InboxItem.delivery_id.in_(delivery_ids)))
        ).scalars()
    }
    for delivery, campaign in rows:
        await rewards.grant(
            session, delivery=delivery, campaign=campaign, item=items.get(delivery.id)
        )
    await session.flush()


async def claim(
    session: AsyncSession, *, limit: int, lease_seconds: int, transport: PushTransport
) -> Batch:
    """Claim up to `limit` due deliveries; `to_send` are those that now need a push."""
    now = clock.now()
    stmt = (
        select(
            Delivery.id,
            Delivery.member_id,
            Delivery.campaign_id,
            Delivery.push_allowed,
            Delivery.reward_done,
            Delivery.is_test,
            Campaign.reward,
        )
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(_due(now))  # type: ignore[arg-type]
        .order_by(Delivery.not_before, Delivery.id)
        .limit(limit)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True, of=Delivery)
    rows = (await session.execute(stmt)).all()
    if not rows:
        return Batch(0, [])
    if due := [r.id for r in rows if r.reward and not r.reward_done and not r.is_test]:
        await _grant_rewards(session, due)
    pushable = [r.id for r in rows if r.push_allowed] if transport.available else []
    # After the grants: a gift coupon's code is added to the inbox item's data.
    found: dict[int, tuple[Any, list[str]]] = {}
    if pushable:
        items = (
            select(
                InboxItem.delivery_id,
                InboxItem.id,
                InboxItem.title,
                InboxItem.body,
                InboxItem.data,
                InboxItem.image_url,
                Device.token,
            )
            .join(Device, and_(Device.member_id == InboxItem.member_id, Device.active.is_(True)))
            .where(_one_of(session, InboxItem.delivery_id, pushable))
            .order_by(InboxItem.delivery_id, Device.id)
        )
        for row in await session.execute(items):
            found.setdefault(row.delivery_id, (row, []))[1].append(row.token)
    by_status: dict[str, list[int]] = {}
    claimed: list[Claimed] = []
    attempt_id = uuid.uuid4().hex
    for r in rows:
        if not r.push_allowed:
            status = "inbox_only"
        elif not transport.available:
            status = "no_transport"
        elif r.id not in found:
            status = "no_device"
        else:
            status = "sending"
            item, tokens = found[r.id]
            claimed.append(Claimed(r.id, attempt_id, _messages(r, item, tokens)))
        by_status.setdefault(status, []).append(r.id)
    for status, ids in by_status.items():
        values: dict[str, Any] = {
            "status": status,
            "claims": Delivery.claims + 1,
            "attempt_id": attempt_id,
            "reward_done": True,
        }
        if status == "sending":
            values["lease_until"] = now + timedelta(seconds=lease_seconds)
        await session.execute(
            update(Delivery)
            .where(_one_of(session, Delivery.id, ids))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return Batch(len(rows), claimed)


def _messages(delivery: Any, item: Any, tokens: list[str]) -> list[PushMessage]:
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


@dataclass(frozen=True)
class _Result:
    delivery_id: int
    attempt_id: str
    attempts: int
    status: str  # sent | failed
    reason: str | None
    message_ids: list[str] | None


def _results(
    claimed: list[Claimed], outcomes: list[SendOutcome]
) -> tuple[list[_Result], dict[str, str]]:
    """Per delivery: sent (with FCM's message ids) if any device took it, else failed; and the
    tokens FCM called dead."""
    results, dead, position = [], {}, 0
    for c in claimed:
        pairs = list(zip(c.messages, outcomes[position : position + len(c.messages)], strict=True))
        position += len(c.messages)
        dead.update({m.token: o.error or "invalid" for m, o in pairs if o.token_invalid})
        tries = sum(o.attempts for _, o in pairs)
        if ids := [o.message_id for _, o in pairs if o.message_id is not None]:
            results.append(_Result(c.delivery_id, c.attempt_id, tries, "sent", None, ids))
        else:
            reason = next((o.error for _, o in pairs if o.error), "unknown")
            results.append(_Result(c.delivery_id, c.attempt_id, tries, "failed", reason, None))
    return results, dead


# One statement for the whole batch: it writes only rows whose claim is still ours.
_RECORD_PG = text("""
UPDATE push_delivery AS d
SET status = v.status,
    reason = v.reason,
    attempts = d.attempts + v.attempts,
    lease_until = NULL,
    sent_at = CASE WHEN v.status = 'sent' THEN CAST(:now AS TIMESTAMPTZ) ELSE d.sent_at END,
    fcm_message_ids = CASE WHEN v.status = 'sent' THEN CAST(v.ids AS JSON)
                           ELSE d.fcm_message_ids END
FROM unnest(CAST(:delivery_ids AS BIGINT[]), CAST(:attempt_ids AS VARCHAR[]),
            CAST(:attempts AS INTEGER[]), CAST(:statuses AS VARCHAR[]),
            CAST(:reasons AS VARCHAR[]), CAST(:message_ids AS TEXT[]))
     AS v(id, attempt_id, attempts, status, reason, ids)
WHERE d.id = v.id AND d.attempt_id = v.attempt_id AND d.status = 'sending'
RETURNING d.id
""")


async def _write_results(session: AsyncSession, results: list[_Result], now: datetime) -> set[int]:
    """Write the results whose claim is still ours; returns the delivery ids written."""
    if is_postgres(session):
        params = {
            "now": now,
            "delivery_ids": [r.delivery_id for r in results],
            "attempt_ids": [r.attempt_id for r in results],
            "attempts": [r.attempts for r in results],
            "statuses": [r.status for r in results],
            "reasons": [r.reason for r in results],
            "message_ids": [json.dumps(r.message_ids) if r.message_ids else None for r in results],
        }
        return set((await session.execute(_RECORD_PG, params)).scalars())
    wanted = {r.delivery_id: r for r in results}
    stmt = select(Delivery.id, Delivery.attempt_id, Delivery.status, Delivery.attempts).where(
        Delivery.id.in_(list(wanted))
    )
    sent: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for delivery_id, attempt_id, status, tries in await session.execute(stmt):
        r = wanted[delivery_id]
        if attempt_id != r.attempt_id or status != "sending":
            continue
        change = {"id": delivery_id, "attempts": tries + r.attempts, "lease_until": None}
        if r.status == "sent":
            sent_as = {
                "status": "sent",
                "reason": None,
                "sent_at": now,
                "fcm_message_ids": r.message_ids,
            }
            sent.append(change | sent_as)
        else:
            failed.append(change | {"status": "failed", "reason": r.reason})
    for changes in (sent, failed):
        if changes:  # executemany by primary key (SQLite: BEGIN IMMEDIATE holds the writes)
            await session.execute(update(Delivery), changes)
    return {c["id"] for c in sent + failed}


async def record(
    session: AsyncSession, *, claimed: list[Claimed], outcomes: list[SendOutcome]
) -> dict[str, int]:
    """Write the results of one send where the claim is still ours; deactivate dead tokens."""
    results, dead = _results(claimed, outcomes)
    written = await _write_results(session, results, clock.now())
    counts = {"sent": 0, "failed": 0, "lost_claim": 0}
    for r in results:
        # not written: our lease ran out and another worker took the delivery over
        counts[r.status if r.delivery_id in written else "lost_claim"] += 1
    await devices.deactivate(session, reasons=dead)
    await session.flush()
    return counts


SENDS_IN_FLIGHT = 2  # a claimed batch goes on the wire while the previous one finishes


async def dispatch_due(
    maker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    transport: PushTransport,
    max_batches: int | None = None,
) -> int:
    """Claim, send and record batches until nothing is due; returns deliveries handled.

    One transaction at a time (sessions of `maker` may share a connection); the sends overlap
    them and each other: a batch goes on the wire as soon as it is claimed, up to
    SENDS_IN_FLIGHT at once, and each is recorded when its send returns.
    """

    def tx(work: Callable[[AsyncSession], Awaitable[T]]) -> Awaitable[T]:
        return run_in_transaction(maker, work)

    take = partial(
        claim,
        limit=settings.push_batch_size,
        lease_seconds=settings.push_lease_seconds,
        transport=transport,
    )
    in_flight: deque[tuple[list[Claimed], asyncio.Task[list[SendOutcome]]]] = deque()
    failed = False

    async def finish_oldest() -> None:
        nonlocal failed
        claimed, sending = in_flight.popleft()
        try:
            outcomes = await sending
        except Exception:
            count = sum(len(c.messages) for c in claimed)
            log.exception("push: a send of %s messages failed; the lease will retry it", count)
            failed = True
            return
        counts = await tx(partial(record, claimed=claimed, outcomes=outcomes))
        log.info("push: batch of %s deliveries: %s", len(claimed), counts)

    handled = 0
    batches = 0
    try:
        while not failed and (max_batches is None or batches < max_batches):
            batches += 1
            batch = await tx(take)
            handled += batch.handled
            if batch.to_send:
                messages = [m for c in batch.to_send for m in c.messages]
                in_flight.append((batch.to_send, asyncio.ensure_future(transport.send(messages))))
            if not batch.handled:
                break
            while len(in_flight) >= SENDS_IN_FLIGHT:
                await finish_oldest()
        while in_flight:
            await finish_oldest()
    finally:
        for _, sending in in_flight:  # an error above: their rows stay `sending` until the lease
            if not sending.done():
                await asyncio.wait([sending])
            if not sending.cancelled():
                sending.exception()
    return handled
