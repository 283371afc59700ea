"""The demo hook: member-day and birthday campaigns scheduled, a past one-off with results."""

from datetime import timedelta

from sqlalchemy import select

from api.push import report
from api.push.demo import load_demo_campaigns
from api.push.models import Delivery
from tests import factories
from tests.push.helpers import add_purchase


async def test_demo_campaigns(session, settings, shops):
    members = [
        await factories.make_member(session, settings, store=shops.supermarket) for _ in range(30)
    ]
    made = await load_demo_campaigns(session, settings=settings, seed=3)
    assert (made.member_day.kind, made.member_day.status) == ("member_day", "scheduled")
    assert (made.birthday.kind, made.birthday.status) == ("birthday", "scheduled")
    assert made.past_offer.status == "completed"
    sent = (
        (await session.execute(select(Delivery).where(Delivery.status == "sent"))).scalars().all()
    )
    for delivery in sent[:4]:
        member = next(m for m in members if m.id == delivery.member_id)
        await add_purchase(
            session,
            member,
            store_id=shops.supermarket.id,
            at=delivery.not_before + timedelta(days=1),
        )
    got = await report.campaign_report(session, made.past_offer, settings=settings)
    assert got.targeted == 30 and got.sent == len(sent) and got.holdout.size == 30 - len(sent)
    assert got.read > 0 and got.converted == 4
