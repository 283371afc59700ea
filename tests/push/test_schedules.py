"""Schedules with a controlled clock, across time zones and DST changes."""

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from api.core import clock
from api.insights.models import MemberStats
from api.loyalty.ledger import service as ledger
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import RuleCreate
from api.members.models import Member
from api.push import scheduler
from api.push.models import CampaignRun, Delivery
from api.push.schedule import at_local, birthday_dates, quiet_until
from tests import factories
from tests.push.helpers import add_device, inbox_of, make_campaign, worker_pass


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


async def runs_of(session, campaign) -> list[tuple[str, datetime]]:
    stmt = (
        select(CampaignRun.occurrence_key, CampaignRun.due_at)
        .where(CampaignRun.campaign_id == campaign.id)
        .order_by(CampaignRun.due_at)
    )
    return [tuple(row) for row in await session.execute(stmt)]


async def recipients(session, campaign) -> dict[str, set[int]]:
    stmt = (
        select(CampaignRun.occurrence_key, Delivery.member_id)
        .join(CampaignRun, CampaignRun.id == Delivery.run_id)
        .where(Delivery.campaign_id == campaign.id)
    )
    found: dict[str, set[int]] = {}
    for key, member_id in await session.execute(stmt):
        found.setdefault(key, set()).add(member_id)
    return found


async def tick_to(session, settings, frozen, at: datetime) -> int:
    frozen.set(at)
    return await scheduler.schedule_due(session, settings=settings, now=at)


def test_local_times_across_dst():
    assert at_local(date(2027, 3, 27), datetime.min.time().replace(hour=9), "Europe/Berlin") == utc(
        2027, 3, 27, 8
    )
    assert at_local(date(2027, 3, 28), datetime.min.time().replace(hour=9), "Europe/Berlin") == utc(
        2027, 3, 28, 7
    )
    assert at_local(
        date(2027, 10, 31), datetime.min.time().replace(hour=9), "Europe/Berlin"
    ) == utc(2027, 10, 31, 8)
    assert at_local(date(2027, 3, 28), datetime.min.time().replace(hour=9), "Asia/Shanghai") == utc(
        2027, 3, 28, 1
    )
    assert birthday_dates(date(2027, 2, 28)) == [(2, 28), (2, 29)]
    assert birthday_dates(date(2028, 2, 28)) == [(2, 28)]
    assert birthday_dates(date(2028, 2, 29)) == [(2, 29)]


def test_quiet_hours_in_the_members_zone():
    quiet = "21:00-08:00"
    assert quiet_until(utc(2027, 6, 1, 14), "Asia/Shanghai", quiet) == utc(2027, 6, 2, 0)  # 22:00
    assert quiet_until(utc(2027, 6, 1, 18), "Asia/Shanghai", quiet) == utc(2027, 6, 2, 0)  # 02:00
    assert quiet_until(utc(2027, 6, 1, 14), "Europe/Berlin", quiet) is None  # 16:00 CEST
    assert quiet_until(utc(2027, 3, 27, 21), "Europe/Berlin", quiet) == utc(2027, 3, 28, 6)
    assert quiet_until(utc(2027, 6, 1, 14), "Asia/Shanghai", "") is None


async def test_weekly_rrule_keeps_9_local_in_berlin_across_both_dst_changes(session, settings):
    with clock.frozen(utc(2027, 3, 20, 12)) as frozen:
        campaign = await make_campaign(
            session,
            kind="recurring",
            schedule={
                "rrule": "FREQ=WEEKLY;BYDAY=SU;BYHOUR=9;BYMINUTE=0",
                "timezone": "Europe/Berlin",
            },
        )
        for at in (utc(2027, 3, 21, 7, 59), utc(2027, 3, 21, 8), utc(2027, 3, 21, 9)):
            await tick_to(session, settings, frozen, at)
        await tick_to(session, settings, frozen, utc(2027, 3, 28, 6, 59))
        await tick_to(session, settings, frozen, utc(2027, 3, 28, 7))
        await tick_to(session, settings, frozen, utc(2027, 10, 24, 7))
        await tick_to(session, settings, frozen, utc(2027, 10, 31, 7, 30))
        await tick_to(session, settings, frozen, utc(2027, 10, 31, 8))
    assert await runs_of(session, campaign) == [
        ("2027-03-21T09:00", utc(2027, 3, 21, 8)),
        ("2027-03-28T09:00", utc(2027, 3, 28, 7)),
        ("2027-10-24T09:00", utc(2027, 10, 24, 7)),
        ("2027-10-31T09:00", utc(2027, 10, 31, 8)),
    ]


async def test_daily_rrule_in_shanghai_and_missed_runs_are_not_caught_up(session, settings):
    with clock.frozen(utc(2027, 3, 26, 12)) as frozen:
        campaign = await make_campaign(
            session,
            kind="recurring",
            schedule={"rrule": "FREQ=DAILY;BYHOUR=9;BYMINUTE=0", "timezone": "Asia/Shanghai"},
        )
        await tick_to(session, settings, frozen, utc(2027, 3, 27, 1))
        await tick_to(session, settings, frozen, utc(2027, 3, 28, 1, 5))
        await tick_to(session, settings, frozen, utc(2027, 3, 30, 12))  # down since: 29, 30 lost
    assert await runs_of(session, campaign) == [
        ("2027-03-27T09:00", utc(2027, 3, 27, 1)),
        ("2027-03-28T09:00", utc(2027, 3, 28, 1)),
    ]


async def test_birthday_at_9_in_each_members_store_zone(session, settings):
    with clock.frozen(utc(2027, 7, 4, 12)) as frozen:
        region = await factories.make_region(session)
        shanghai = await factories.make_store(session, region, timezone="Asia/Shanghai")
        berlin = await factories.make_store(session, region, timezone="Europe/Berlin")
        sh = await factories.make_member(
            session, settings, store=shanghai, birthday=date(1990, 7, 5)
        )
        be = await factories.make_member(session, settings, store=berlin, birthday=date(1985, 7, 5))
        nobody = await factories.make_member(
            session, settings, store=shanghai, birthday=date(1985, 7, 6)
        )
        campaign = await make_campaign(session, kind="birthday", schedule={"local_time": "09:00"})
        await tick_to(session, settings, frozen, utc(2027, 7, 5, 0, 59))
        assert await runs_of(session, campaign) == []
        await tick_to(session, settings, frozen, utc(2027, 7, 5, 1))
        await tick_to(session, settings, frozen, utc(2027, 7, 5, 6, 59))
        await tick_to(session, settings, frozen, utc(2027, 7, 5, 7))  # 09:00 CEST
    assert await runs_of(session, campaign) == [
        ("2027-07-05@Asia/Shanghai", utc(2027, 7, 5, 1)),
        ("2027-07-05@Europe/Berlin", utc(2027, 7, 5, 7)),
    ]
    assert await recipients(session, campaign) == {
        "2027-07-05@Asia/Shanghai": {sh.id},
        "2027-07-05@Europe/Berlin": {be.id},
    }
    assert nobody.id not in {m for ms in (await recipients(session, campaign)).values() for m in ms}


async def test_29_february_is_celebrated_once_a_year(session, settings):
    with clock.frozen(utc(2027, 2, 20)) as frozen:
        region = await factories.make_region(session)
        shanghai = await factories.make_store(session, region, timezone="Asia/Shanghai")
        berlin = await factories.make_store(session, region, timezone="Europe/Berlin")
        leapling = await factories.make_member(
            session, settings, store=shanghai, birthday=date(2000, 2, 29)
        )
        feb28 = await factories.make_member(
            session, settings, store=shanghai, birthday=date(1990, 2, 28)
        )
        mar1 = await factories.make_member(
            session, settings, store=shanghai, birthday=date(1990, 3, 1)
        )
        campaign = await make_campaign(session, kind="birthday", schedule={"local_time": "09:00"})

        await tick_to(session, settings, frozen, utc(2027, 2, 28, 1))
        # the leapling moves to Berlin the same day: Berlin's 28 February must not repeat it
        (await session.get(Member, leapling.id)).home_store_id = berlin.id
        await session.flush()
        await tick_to(session, settings, frozen, utc(2027, 2, 28, 8))
        await tick_to(session, settings, frozen, utc(2027, 3, 1, 8))
        (await session.get(Member, leapling.id)).home_store_id = shanghai.id
        await session.flush()
        await tick_to(session, settings, frozen, utc(2028, 2, 28, 1))
        await tick_to(session, settings, frozen, utc(2028, 2, 29, 1))
        await tick_to(session, settings, frozen, utc(2028, 2, 29, 2))

    got = await recipients(session, campaign)
    assert got["2027-02-28@Asia/Shanghai"] == {leapling.id, feb28.id}
    assert "2027-02-28@Europe/Berlin" not in got
    assert got["2028-02-28@Asia/Shanghai"] == {feb28.id}
    assert got["2028-02-29@Asia/Shanghai"] == {leapling.id}
    assert mar1.id not in got["2028-02-29@Asia/Shanghai"]


async def test_member_day_reminder_on_each_member_day(session, settings, shops):
    with clock.frozen(utc(2027, 3, 1, 12)) as frozen:
        await program_service.create_rule(
            session,
            data=RuleCreate(
                code="wednesday",
                name="Member Wednesday",
                kind="member_day",
                params={"rrule": "FREQ=WEEKLY;BYDAY=WE", "multiplier_percent": 200},
            ),
        )
        member = await factories.make_member(session, settings, store=shops.supermarket)
        campaign = await make_campaign(session, kind="member_day", schedule={"local_time": "08:30"})
        await tick_to(session, settings, frozen, utc(2027, 3, 2, 0, 30))  # Tuesday
        await tick_to(session, settings, frozen, utc(2027, 3, 3, 0, 29))
        assert await runs_of(session, campaign) == []
        await tick_to(session, settings, frozen, utc(2027, 3, 3, 0, 30))  # Wednesday 08:30
        await tick_to(session, settings, frozen, utc(2027, 3, 10, 0, 45))
    assert [key for key, _ in await runs_of(session, campaign)] == [
        "2027-03-03@Asia/Shanghai",
        "2027-03-10@Asia/Shanghai",
    ]
    assert await recipients(session, campaign) == {
        "2027-03-03@Asia/Shanghai": {member.id},
        "2027-03-10@Asia/Shanghai": {member.id},
    }


async def test_welcome_reaches_each_new_member_once(session, settings, shops):
    with clock.frozen(utc(2027, 5, 1, 2)) as frozen:
        old = await factories.make_member(session, settings, store=shops.supermarket)
        frozen.tick(60)
        campaign = await make_campaign(session, kind="welcome")
        frozen.tick(60)
        first = await factories.make_member(session, settings, store=shops.supermarket)
        await tick_to(session, settings, frozen, utc(2027, 5, 1, 2, 16))
        await tick_to(session, settings, frozen, utc(2027, 5, 1, 2, 31))
        frozen.tick(60)
        second = await factories.make_member(session, settings, store=shops.supermarket)
        await tick_to(session, settings, frozen, utc(2027, 5, 1, 2, 46))
    got = await recipients(session, campaign)
    assert got == {"2027-05-01T02:15Z": {first.id}, "2027-05-01T02:45Z": {second.id}}
    assert old.id not in set().union(*got.values())


async def test_points_expiring_is_transactional(session, maker, settings, shops, fcm, transport):
    with clock.frozen(utc(2027, 6, 1, 1)) as frozen:
        consenting = await factories.make_member(session, settings, store=shops.supermarket)
        silent = await factories.make_member(session, settings, store=shops.supermarket, push=False)
        later = await factories.make_member(session, settings, store=shops.supermarket)
        for member, days in ((consenting, 5), (silent, 3), (later, 30)):
            account = await ledger.lock_account(session, member.id)
            await ledger.credit(
                session,
                account,
                kind="adjust",
                points=100,
                source=ledger.Source("adjustment"),
                expires_at=clock.now() + timedelta(days=days),
            )
            await add_device(session, member)
        campaign = await make_campaign(
            session, kind="points_expiring", schedule={"days_before": 7, "local_time": "10:00"}
        )
        await session.commit()
        frozen.set(utc(2027, 6, 1, 2))
        await worker_pass(maker, settings, transport)
        frozen.set(utc(2027, 6, 2, 2))
        await worker_pass(maker, settings, transport)  # told once per window
    got = {
        d.member_id: d.status
        for d in (
            await session.execute(
                select(Delivery)
                .where(Delivery.campaign_id == campaign.id)
                .execution_options(populate_existing=True)
            )
        ).scalars()
    }
    assert got == {consenting.id: "sent", silent.id: "inbox_only"}
    assert len(await inbox_of(session, silent)) == 1
    assert len(fcm.requests) == 1


async def test_lapsed_uses_the_insights_definition(session, settings, shops):
    with clock.frozen(utc(2027, 6, 1, 1)) as frozen:
        lapsed = await factories.make_member(session, settings, store=shops.supermarket)
        loyal = await factories.make_member(session, settings, store=shops.supermarket)
        for member, flag in ((lapsed, True), (loyal, False)):
            session.add(
                MemberStats(
                    member_id=member.id,
                    lapsed=flag,
                    churned=False,
                    spend_12m=0,
                    purchases_12m=3,
                    purchases_total=3,
                    computed_at=clock.now(),
                )
            )
        await session.flush()
        campaign = await make_campaign(session, kind="lapsed", schedule={})
        await tick_to(session, settings, frozen, utc(2027, 6, 1, 2))
        await tick_to(session, settings, frozen, utc(2027, 6, 2, 2))  # not again until they buy
    assert [key for key, _ in await runs_of(session, campaign)] == ["2027-06-01", "2027-06-02"]
    assert await recipients(session, campaign) == {"2027-06-01": {lapsed.id}}
