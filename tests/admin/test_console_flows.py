"""Console flows over HTTP on both databases: a campaign from the form to scheduled, the till
from scan to purchase and redemption, and settings forms with their validation messages."""

import re

from sqlalchemy import select

from api.members import identity
from api.org.models import Terminal
from api.push import campaigns
from api.push.models import Campaign
from tests import factories

SIZE = re.compile(r'data-audience-size="(\d+)"')


def campaign_form(**extra: str) -> dict[str, str]:
    form = {
        "name": "Double points on fuel",
        "kind": "one_off",
        "schedule.at": "2030-05-01T10:00",
        "message.title": "{name}, double points",
        "message.body": "You have {points} points.",
        "holdout_percent": "10",
    }
    form.update(extra)
    return form


async def test_a_campaign_from_the_form_to_scheduled(console_for, org, session, settings):
    await factories.make_member(session, settings, store=org.supermarket)
    await factories.make_member(session, settings, store=org.fuel_b)
    await session.commit()
    console = await console_for(org.staff["marketer"].email)
    assert (await console.get("/campaigns/new")).status_code == 200
    everyone = await console.post("/campaigns/audience", campaign_form())
    fuel = await console.post(
        "/campaigns/audience", campaign_form(**{"audience.store_kind": "fuel_station"})
    )
    assert int(SIZE.search(fuel.text).group(1)) < int(SIZE.search(everyone.text).group(1))
    bad = await console.post(
        "/campaigns/new",
        campaign_form(**{"message.title": "{nickname}", "audience.min_spend": "x"}),
    )
    assert bad.status_code == 422
    assert "unknown placeholder" in bad.text and "is not an amount" in bad.text
    created = await console.post(
        "/campaigns/new", campaign_form(**{"audience.store_kind": "fuel_station"})
    )
    assert created.status_code == 303
    campaign_id = int(created.headers["location"].rsplit("/", 1)[1])
    saved = await campaigns.get_campaign(session, campaign_id)
    assert saved.audience == {"store_kind": "fuel_station"} and saved.status == "draft"
    assert saved.schedule["at"].startswith("2030-05-01T10:00:00+08:00")
    scheduled = await console.post(f"/campaigns/{campaign_id}/schedule")
    assert scheduled.status_code == 303
    await session.refresh(saved)
    assert saved.status == "scheduled"
    page = await console.get(f"/campaigns/{campaign_id}")
    assert "pause it to change what it sends" in page.text
    report = await console.get(f"/campaigns/{campaign_id}/report")
    assert report.status_code == 200 and "Nothing sent yet" in report.text
    listing = await console.get("/campaigns")
    assert "Double points on fuel" in listing.text


async def test_till_scan_purchase_and_redemption(console_for, org, session, settings):
    member = await factories.make_member(session, settings, store=org.supermarket)
    await session.commit()
    console = await console_for(org.staff["cashier"].email)
    await console.get("/till")
    code = identity.card_view(settings, member).code
    card = await console.post("/till/identify", {"code": code})
    assert "member-card" in card.text and "can redeem" in card.text
    token = re.search(r'name="till_token" value="([^"]+)"', card.text).group(1)
    receipt = {
        "till_token": token,
        "receipt_no": "C-TEST-1",
        "total": "250.00",
        "lines-0-type": "item",
        "lines-0-category": "grocery",
        "lines-0-amount": "250.00",
        "lines-0-quantity": "1",
    }
    quote = await console.post("/till/quote", receipt)
    assert "earns <b>250</b>" in quote.text
    done = await console.post("/till/purchase", receipt)
    assert 'data-points-earned="250"' in done.text and "New balance 250" in done.text
    again = await console.post("/till/purchase", receipt)
    assert "already posted" in again.text
    reserved = await console.post("/till/redeem", {"till_token": token, "points": "200"})
    assert "Reserved <b>200</b>" in reserved.text
    redemption_id = re.search(r"/till/redemptions/(\d+)/confirm", reserved.text).group(1)
    paid = await console.post(f"/till/redemptions/{redemption_id}/confirm")
    assert "Paid ¥2.00 with 200 points" in paid.text and "Balance 50" in paid.text
    terminal = (
        await session.execute(select(Terminal).where(Terminal.store_id == org.supermarket.id))
    ).scalars()
    assert "Console till" in {t.name for t in terminal}


async def test_till_refuses_spending_on_a_typed_phone(console_for, org, session, settings):
    member = await factories.make_member(session, settings, store=org.supermarket)
    await session.commit()
    console = await console_for(org.staff["store_manager"].email)
    await console.get("/till")
    card = await console.post("/till/identify", {"code": member.phone})
    assert "earn only" in card.text and 'name="points"' in card.text and "disabled" in card.text
    token = re.search(r'name="till_token" value="([^"]+)"', card.text).group(1)
    refused = await console.post("/till/redeem", {"till_token": token, "points": "100"})
    assert "rotating QR code" in refused.text


async def test_rules_rewards_and_staff_forms_show_their_errors(console_for, org):
    marketer = await console_for(org.staff["marketer"].email)
    await marketer.get("/settings/rules/new")
    rule = await marketer.post(
        "/settings/rules/new",
        {
            "code": "fresh-x3",
            "name": "Fresh ×3",
            "kind": "multiplier",
            "params": '{"categories": []}',
        },
    )
    assert rule.status_code == 422 and "multiplier_percent: Field required" in rule.text
    ok = await marketer.post(
        "/settings/rules/new",
        {
            "code": "fresh-x3",
            "name": "Fresh ×3",
            "kind": "multiplier",
            "params": '{"categories": ["fresh"], "multiplier_percent": 300}',
            "active": "on",
        },
    )
    assert ok.status_code == 303
    assert "Fresh ×3" in (await marketer.get("/settings/rules")).text
    reward = await marketer.post("/settings/rewards/new", {"name": "", "points_cost": "0"})
    assert reward.status_code == 422 and "greater than or equal to 1" in reward.text
    admin = await console_for(org.staff["admin"].email)
    await admin.get("/org/staff")
    staff = await admin.post(
        "/org/staff",
        {"email": "new.cashier@example.com", "password": "short", "role": "cashier"},
    )
    assert staff.status_code == 422 and "at least 10 characters" in staff.text


async def test_campaign_pause_and_cancel(console_for, org, session):
    console = await console_for(org.staff["admin"].email)
    await console.get("/campaigns/new")
    created = await console.post("/campaigns/new", campaign_form(name="Pause me"))
    campaign_id = int(created.headers["location"].rsplit("/", 1)[1])
    for action, status in (("schedule", "scheduled"), ("pause", "paused"), ("cancel", "cancelled")):
        response = await console.post(f"/campaigns/{campaign_id}/{action}")
        assert response.status_code == 303
        campaign = await session.get(Campaign, campaign_id, populate_existing=True)
        assert campaign.status == status
    refused = await console.post(f"/campaigns/{campaign_id}/schedule")
    follow = await console.get("/campaigns/" + str(campaign_id))
    assert refused.status_code == 303 and "cannot schedule a cancelled campaign" in follow.text


async def test_till_prints_the_claim_code_of_a_receipt_without_a_member(console_for, org):
    console = await console_for(org.staff["cashier"].email)
    await console.get("/till")
    receipt = {
        "receipt_no": "C-ANON-1",
        "total": "88.00",
        "lines-0-type": "item",
        "lines-0-category": "grocery",
        "lines-0-amount": "88.00",
        "lines-0-quantity": "1",
    }
    done = await console.post("/till/purchase", receipt)
    code = re.search(r'data-claim-code="([2-9A-HJ-NP-Z]{8})"', done.text)
    assert code is not None, done.text
    assert "Claim code" in done.text and "shown only once" in done.text
