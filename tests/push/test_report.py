"""Report numbers, rewards granted once, and every audience filter compiled to SQL."""

from datetime import date, timedelta

from sqlalchemy import func, select

from api.core import clock
from api.insights.models import MemberStats
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.models import LedgerEntry
from api.loyalty.rewards import service as rewards_service
from api.loyalty.rewards.models import Coupon
from api.loyalty.rewards.schemas import RewardCreate
from api.members.models import Member
from api.push import audience, dispatcher, inbox, report, scheduler
from api.push.models import Delivery
from tests import factories
from tests.push.helpers import add_device, add_purchase, inbox_of, make_campaign, worker_pass


async def test_report_numbers(session, maker, settings, shops, fcm, transport):
    members = [
        await factories.make_member(session, settings, store=shops.supermarket) for _ in range(16)
    ]
    for member in members:
        await add_device(session, member)
    dead = await factories.make_member(session, settings, store=shops.supermarket)
    fcm.fail(await add_device(session, dead), "UNREGISTERED")
    await factories.make_member(session, settings, store=shops.supermarket, push=False)
    campaign = await make_campaign(session, holdout_percent=30, reward={"points": 30})
    await session.commit()
    await worker_pass(maker, settings, transport)
    await dispatcher.dispatch_due(maker, settings=settings, transport=transport)

    rows = (await session.execute(select(Delivery).order_by(Delivery.member_id))).scalars().all()
    treated = [d for d in rows if d.status in ("sent", "failed")]
    held = [d for d in rows if d.status == "holdout"]
    assert held and len(treated) + len(held) == 17
    day = timedelta(days=1)
    await add_purchase(
        session,
        await session.get(Member, treated[0].member_id),
        store_id=shops.supermarket.id,
        at=clock.now() + day,
    )
    await add_purchase(
        session,
        await session.get(Member, treated[1].member_id),
        store_id=shops.supermarket.id,
        at=clock.now() + 6 * day,
    )
    await add_purchase(
        session,
        await session.get(Member, treated[2].member_id),
        store_id=shops.supermarket.id,
        at=clock.now() + 8 * day,
    )
    await add_purchase(
        session,
        await session.get(Member, treated[3].member_id),
        store_id=shops.supermarket.id,
        at=clock.now() - day,
    )
    await add_purchase(
        session,
        await session.get(Member, held[0].member_id),
        store_id=shops.supermarket.id,
        at=clock.now() + 2 * day,
    )
    for d in treated[:2]:
        [item] = await inbox_of(session, await session.get(Member, d.member_id))
        await inbox.mark_read(session, member_id=d.member_id, item_id=item.id)

    got = await report.campaign_report(session, campaign, settings=settings)

    assert got.targeted == 18
    assert got.suppressed == {"no_consent": 1}
    failed = sum(d.status == "failed" for d in treated)
    assert failed == (0 if dead.id in {d.member_id for d in held} else 1)
    assert (got.sent, got.failed) == (len(treated) - failed, failed)
    assert (got.read, got.converted) == (2, 2)
    assert (got.holdout.size, got.holdout.converted) == (len(held), 1)
    assert got.lift == round((2 / len(treated)) / (1 / len(held)) - 1, 4)
    assert got.points_cost == 30 * len(treated)
    granted = await session.execute(
        select(func.count(), func.sum(LedgerEntry.points)).where(
            LedgerEntry.source_type == "campaign", LedgerEntry.source_id == campaign.id
        )
    )
    assert tuple(granted.one()) == (
        len(treated),
        30 * len(treated),
    )  # once each, even after re-runs


async def test_coupon_reward_is_issued_once_and_shown_in_the_inbox(
    session, maker, settings, shops, transport
):
    reward = await rewards_service.create_reward(
        session, data=RewardCreate(name="Free coffee", points_cost=500, coupon_days=10)
    )
    member = await factories.make_member(session, settings, store=shops.supermarket)
    campaign = await make_campaign(session, reward={"reward_id": reward.id})
    await session.commit()
    await worker_pass(maker, settings, transport)
    await worker_pass(maker, settings, transport)
    [coupon] = (
        await session.execute(select(Coupon).where(Coupon.member_id == member.id))
    ).scalars()
    assert (coupon.source, coupon.points_spent, coupon.status) == ("campaign", 0, "issued")
    [item] = await inbox_of(session, member)
    assert item.data == {"coupon_code": coupon.code}
    assert item.expires_at == coupon.expires_at
    [delivery] = (
        await session.execute(select(Delivery).where(Delivery.campaign_id == campaign.id))
    ).scalars()
    assert delivery.coupon_id == coupon.id


async def test_every_audience_filter(session, settings, shops):
    now = clock.now()
    m1 = await factories.make_member(
        session, settings, store=shops.supermarket, birthday=date(1990, 3, 3)
    )
    m2 = await factories.make_member(
        session, settings, store=shops.fuel_b, birthday=date(1991, 7, 7)
    )
    m3 = await factories.make_member(session, settings)
    (await ledger.lock_account(session, m1.id)).tier = "gold"
    await add_device(session, m1)
    await add_purchase(
        session,
        m1,
        store_id=shops.supermarket.id,
        total=50_000,
        at=now - timedelta(days=5),
        category="fresh",
    )
    await add_purchase(
        session,
        m2,
        store_id=shops.fuel_a.id,
        total=2_000,
        at=now - timedelta(days=100),
        category="fuel",
    )
    for member, abc, rfm in ((m1, "A", "champions"), (m2, "C", "at_risk")):
        session.add(
            MemberStats(
                member_id=member.id,
                abc_class=abc,
                rfm_segment=rfm,
                lapsed=False,
                churned=False,
                spend_12m=0,
                purchases_12m=1,
                purchases_total=1,
                computed_at=now,
            )
        )
    await session.flush()
    target = await scheduler.load_target(session, now=now)

    async def who(filters):
        where = audience.condition(
            campaign_id=0, kind="one_off", schedule={}, audience=filters, target=target, since=None
        )
        found = set((await session.execute(audience.members().where(where))).scalars())
        return found & {m1.id, m2.id, m3.id}

    one, two, three = {m1.id}, {m2.id}, {m3.id}
    cases = [
        ({}, one | two | three),
        ({"tiers": ["gold"]}, one),
        ({"store_ids": [shops.supermarket.id]}, one),
        ({"store_ids": [shops.fuel_a.id]}, two),  # visited
        ({"region_ids": [shops.north.id]}, one | two),
        ({"region_ids": [shops.south.id]}, two),
        ({"store_kind": "fuel_station"}, two),
        ({"store_kind": "supermarket"}, one),
        ({"last_purchase_within_days": 30}, one),
        ({"last_purchase_before_days": 30}, two),
        ({"min_spend": 10_000}, one),
        ({"max_spend": 5_000}, two | three),
        ({"min_spend": 1_000, "max_spend": 5_000}, two),
        ({"birthday_month": 7}, two),
        ({"bought_category": {"category": "fresh", "within_days": 30}}, one),
        ({"bought_category": {"category": "fuel", "within_days": 30}}, set()),
        ({"bought_category": {"category": "fuel", "within_days": 365}}, two),
        ({"has_device": True}, one),
        ({"has_device": False}, two | three),
        ({"abc_class": "A"}, one),
        ({"rfm_segment": ["at_risk", "hibernating"]}, two),
        ({"region_ids": [shops.north.id], "has_device": False}, two),
    ]
    for filters, expected in cases:
        assert await who(filters) == expected, filters
