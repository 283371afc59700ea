"""A small believable programme for the browser tests, built through the services and committed:
the demo's network, staff and members (fewer of them), its rules, tiers and rewards, a few
months of receipts, its campaigns (one already sent, with reads and a holdout) and the
insight figures computed from all that."""

import random
from contextlib import suppress
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from api import demo, demo_history
from api.core import clock
from api.core.config import Settings
from api.core.errors import DomainError
from api.insights import refresh
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import RuleUpdate
from api.loyalty.rewards import service as rewards
from api.loyalty.till import purchases
from api.loyalty.till.context import Till
from api.loyalty.till.schemas import LineIn, PurchaseIn
from api.org import service as org_service
from api.org.models import StoreKind
from api.push.demo import load_demo_campaigns

MEMBERS = 36
LOGINS = {role.value: (email, password) for role, email, password, *_ in demo.STAFF}


def _lines(rng: random.Random, kind: str) -> list[LineIn]:
    if kind == StoreKind.fuel_station:
        grade = rng.choice(list(demo_history.FUEL_PRICES))
        litres = rng.randrange(20, 55)
        return [
            LineIn(
                line_no=1,
                sku=f"FUEL-{grade}",
                category="fuel",
                amount=litres * demo_history.FUEL_PRICES[grade],
                fuel_grade=grade,
                volume_ml=litres * 1000,
            )
        ]
    picks = rng.sample(demo_history.GROCERY, rng.randrange(2, 6))
    return [
        LineIn(line_no=i, sku=sku, category=cat, amount=rng.randrange(low, high))
        for i, (cat, sku, low, high) in enumerate(picks, start=1)
    ]


async def build(session: AsyncSession, settings: Settings) -> None:
    rng = random.Random(20261123)
    org = await demo._org(session)
    await demo._staff(session, org)
    full_count, demo.MEMBER_COUNT = demo.MEMBER_COUNT, MEMBERS
    try:
        members = await demo._members(session, settings, org, rng)
    finally:
        demo.MEMBER_COUNT = full_count  # other tests load the full demo
    await demo_history.configure(session)
    now = clock.now()
    for rule in await program_service.list_rules(session):
        if rule.kind == "member_day":  # earlier Wednesdays become the uplift's baseline
            await program_service.update_rule(
                session, rule, data=RuleUpdate(valid_from=now - timedelta(weeks=12))
            )
    eggs = min(await rewards.list_rewards(session), key=lambda r: r.points_cost)
    stores = {s.id: s for s in await org_service.list_stores(session)}
    terminals = {
        sid: (await org_service.list_terminals(session, store_id=sid))[0].id for sid in stores
    }
    receipts = []
    for m in members:
        store = stores[org.store_ids[m.store_code]]
        active_days = rng.choice((300, 300, 240, 150))  # some drift away and lapse
        for _ in range(rng.randrange(2, 7)):
            receipts.append((now - timedelta(days=rng.uniform(1, active_days)), m.member, store))
        if rng.random() < 0.4:  # this week, after the demo's offer went out
            receipts.append((now - timedelta(days=rng.uniform(0.2, 5)), m.member, store))
    for _ in range(12):  # shoppers without a card
        store = rng.choice(list(stores.values()))
        receipts.append((now - timedelta(days=rng.uniform(1, 300)), None, store))
    receipts.sort(key=lambda r: r[0])
    for n, (at, member, store) in enumerate(receipts):
        till = Till(store=store, terminal_id=terminals[store.id], actor="seed")
        lines = _lines(rng, store.kind)
        body = PurchaseIn(
            receipt_no=f"R{n:05d}",
            occurred_at=at,
            member_id=member.id if member else None,
            currency="CNY",
            total=sum(line.amount for line in lines),
            lines=lines,
        )
        with clock.frozen(at):
            done = await purchases.record(session, settings=settings, till=till, body=body)
            if member and done.balance and done.balance.available >= 600 and rng.random() < 0.5:
                with suppress(DomainError):
                    await rewards.claim(session, member_id=member.id, reward_id=eggs.id)
    await load_demo_campaigns(session, settings=settings, sent_days_ago=6)
    await refresh.refresh(session, trigger="seed")
