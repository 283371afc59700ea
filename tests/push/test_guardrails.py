"""Consent, quiet hours, frequency cap, holdout, suppression by reason, one delivery per run."""

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, select

from api.core import clock
from api.core.pagination import PageParams
from api.members.models import Member
from api.push import inbox, runs, scheduler, suppression
from api.push.models import CampaignRun, Delivery
from api.push.schedule import Occurrence
from tests import factories
from tests.push.conftest import push_settings
from tests.push.helpers import add_device, by_status, inbox_of, make_campaign, worker_pass


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


async def test_marketing_needs_push_consent(session, maker, settings, shops, fcm, transport):
    yes = await factories.make_member(session, settings, store=shops.supermarket)
    no = await factories.make_member(session, settings, store=shops.supermarket, push=False)
    for member in (yes, no):
        await add_device(session, member)
    campaign = await make_campaign(session)
    await session.commit()
    await worker_pass(maker, settings, transport)
    assert await by_status(session, campaign) == {"sent": 1, "suppressed": 1}
    [held_back] = (
        await session.execute(select(Delivery).where(Delivery.member_id == no.id))
    ).scalars()
    assert held_back.reason == "no_consent"
    assert await inbox_of(session, no) == []
    assert len(fcm.requests) == 1


async def test_quiet_hours_defer_delivery_to_the_morning(
    session, maker, service_account, shops, fcm
):
    settings = push_settings(service_account, fcm.url, push_quiet_hours="21:00-08:00")
    from api.push.transport import transport_for

    transport = transport_for(settings)
    with clock.frozen(utc(2027, 6, 1, 14)) as frozen:  # 22:00 in Shanghai
        member = await factories.make_member(session, settings, store=shops.supermarket)
        await add_device(session, member)
        campaign = await make_campaign(session)
        await session.commit()
        await worker_pass(maker, settings, transport)
        [delivery] = (await session.execute(select(Delivery))).scalars()
        assert (delivery.status, delivery.not_before) == ("queued", utc(2027, 6, 2, 0))
        page = await inbox.list_items(session, member_id=member.id, page=PageParams())
        assert page.items == []  # not shown before the morning either
        assert fcm.requests == []
        frozen.set(utc(2027, 6, 1, 23, 59))
        await worker_pass(maker, settings, transport)
        assert fcm.requests == []
        frozen.set(utc(2027, 6, 2, 0))
        await worker_pass(maker, settings, transport)
        assert len(fcm.requests) == 1
        assert await by_status(session, campaign) == {"sent": 1}
        assert (
            len((await inbox.list_items(session, member_id=member.id, page=PageParams())).items)
            == 1
        )


async def test_frequency_cap_counts_marketing_messages_of_7_days(
    session, maker, service_account, shops, fcm
):
    settings = push_settings(service_account, fcm.url, push_frequency_cap=2)
    from api.push.transport import transport_for

    transport = transport_for(settings)
    with clock.frozen(utc(2027, 6, 1, 4)) as frozen:
        member = await factories.make_member(session, settings, store=shops.supermarket)
        await add_device(session, member)
        made = []
        for day in (1, 3, 5, 8):
            frozen.set(utc(2027, 6, day, 4))
            made.append(await make_campaign(session))
            await session.commit()
            await worker_pass(maker, settings, transport)
    statuses = [await by_status(session, c) for c in made]
    assert statuses == [{"sent": 1}, {"sent": 1}, {"suppressed": 1}, {"sent": 1}]
    third = (
        await session.execute(select(Delivery).where(Delivery.campaign_id == made[2].id))
    ).scalar_one()
    assert third.reason == "frequency_cap"


async def test_holdout_is_a_stable_share_that_gets_nothing(
    session, maker, settings, shops, fcm, transport
):
    members = [
        await factories.make_member(session, settings, store=shops.supermarket) for _ in range(120)
    ]
    for member in members[:10]:
        await add_device(session, member)
    campaign = await make_campaign(session, holdout_percent=25, reward={"points": 50})
    await session.commit()
    await worker_pass(maker, settings, transport)
    counts = await by_status(session, campaign)
    held = counts["holdout"]
    assert 15 <= held <= 45, counts
    assert counts["holdout"] + counts.get("sent", 0) + counts.get("no_device", 0) == 120
    held_ids = set(
        (
            await session.execute(select(Delivery.member_id).where(Delivery.status == "holdout"))
        ).scalars()
    )
    for member in members:
        items = await inbox_of(session, member)
        assert len(items) == (0 if member.id in held_ids else 1)
    bucket = runs.holdout_bucket(Member.id, runs.holdout_seed(campaign.id, "once"))
    again = set(
        (
            await session.execute(
                select(Member.id).where(
                    bucket < 25, Member.id.in_(held_ids | {m.id for m in members})
                )
            )
        ).scalars()
    )
    assert again == held_ids  # the same draw every time


async def test_suppression_reasons_are_counted_and_extensible(
    session, maker, service_account, shops, fcm
):
    settings = push_settings(service_account, fcm.url, push_frequency_cap=1)
    from api.push.transport import transport_for

    transport = transport_for(settings)
    capped = await factories.make_member(session, settings, store=shops.supermarket)
    silent = await factories.make_member(session, settings, store=shops.supermarket, push=False)
    vip = await factories.make_member(
        session, settings, store=shops.supermarket, name="VIP complaint"
    )
    fine = await factories.make_member(session, settings, store=shops.supermarket)
    first = await make_campaign(session, audience={})
    await session.commit()
    await worker_pass(maker, settings, transport)  # everyone with consent reaches their cap of 1
    await session.execute(
        Delivery.__table__.delete().where(Delivery.member_id.in_([vip.id, fine.id]))
    )

    @suppression.register("open_complaint")
    def _open_complaint(ctx: suppression.CheckContext) -> ColumnElement[bool] | None:
        return Member.name.like("%complaint%")  # a real check: EXISTS over a complaints table

    try:
        second = await make_campaign(session)
        await session.commit()
        await worker_pass(maker, settings, transport)
    finally:
        suppression.CHECKS[:] = [c for c in suppression.CHECKS if c.reason != "open_complaint"]
    reasons = dict(
        (
            await session.execute(
                select(Delivery.member_id, Delivery.reason).where(Delivery.campaign_id == second.id)
            )
        ).all()
    )
    assert reasons == {
        capped.id: "frequency_cap",
        silent.id: "no_consent",
        vip.id: "open_complaint",
        fine.id: None,
    }
    assert first.id != second.id


async def test_a_run_is_materialised_once(session, settings, shops):
    member = await factories.make_member(session, settings, store=shops.supermarket)
    campaign = await make_campaign(session)
    target = await scheduler.load_target(session, now=clock.now())
    occ = Occurrence("once", clock.now())
    first = await runs.materialise(
        session, campaign=campaign, occurrence=occ, target=target, settings=settings
    )
    second = await runs.materialise(
        session, campaign=campaign, occurrence=occ, target=target, settings=settings
    )
    assert first is not None and first.targeted == 1 and second is None
    assert await scheduler.schedule_due(session, settings=settings) == 0
    assert (await session.execute(select(CampaignRun))).scalars().all() == [first.run]
    assert len(await inbox_of(session, member)) == 1
