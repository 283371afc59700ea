"""Tiers: the ladder and its validation, upgrade right after the qualifying purchase, at most
one level down per review, manual tiers with an end date, tier multipliers in earning, and
qualifying spend net of returns."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.loyalty.ledger import jobs
from api.loyalty.ledger.models import Account
from api.org import service as org_service
from tests import factories
from tests.conftest import make_settings
from tests.loyalty.conftest import receipt

T0 = datetime(2030, 1, 15, 4, 0, tzinfo=UTC)
LADDER = [
    {"code": "silver", "name": "Silver", "min_spend": 0, "multiplier_percent": 100},
    {"code": "gold", "name": "Gold", "min_spend": 500_000, "multiplier_percent": 150},
    {"code": "platinum", "name": "Platinum", "min_spend": 2_000_000, "multiplier_percent": 200},
]


@pytest.fixture
async def ladder(client, org) -> list[dict[str, Any]]:
    got = await client.put(
        "/v1/loyalty/tiers", json={"tiers": LADDER}, headers=org.headers["marketer"]
    )
    assert got.status_code == 200, got.text
    return got.json()


async def buy(client, org, member, receipt_no: str, amount: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = receipt(receipt_no, ("grocery", amount), member_code=member.card_number)
    got = await client.post("/v1/pos/purchases", json=body, headers=org.terminal(org.supermarket))
    assert got.status_code == 201, got.text
    return got.json()


async def tier_of(session: AsyncSession, member_id: int) -> str | None:
    account = await session.get(Account, member_id, populate_existing=True)
    return account.tier if account else None


async def test_the_ladder_is_set_lowest_first(client, org, ladder):
    assert [(t["code"], t["rank"], t["min_spend"], t["multiplier_percent"]) for t in ladder] == [
        ("silver", 0, 0, 100),
        ("gold", 1, 500_000, 150),
        ("platinum", 2, 2_000_000, 200),
    ]
    listed = await client.get("/v1/loyalty/tiers", headers=org.headers["admin"])
    assert listed.json() == ladder
    shorter = await client.put(
        "/v1/loyalty/tiers", json={"tiers": LADDER[:2]}, headers=org.headers["marketer"]
    )
    assert [t["code"] for t in shorter.json()] == ["silver", "gold"]


def _broken(change: str) -> list[dict[str, Any]]:
    tiers = [dict(t) for t in LADDER]
    match change:
        case "entry tier above zero":
            tiers[0]["min_spend"] = 1
        case "not increasing":
            tiers[2]["min_spend"] = 400_000
        case "equal spends":
            tiers[2]["min_spend"] = 500_000
        case "duplicate code":
            tiers[2]["code"] = "gold"
        case "multiplier below 100":
            tiers[1]["multiplier_percent"] = 90
        case "negative spend":
            tiers[1]["min_spend"] = -1
        case "empty":
            tiers = []
        case "bad code":
            tiers[1]["code"] = "gold tier!"
    return tiers


@pytest.mark.parametrize(
    "change",
    [
        "entry tier above zero",
        "not increasing",
        "equal spends",
        "duplicate code",
        "multiplier below 100",
        "negative spend",
        "empty",
        "bad code",
    ],
)
async def test_an_invalid_ladder_is_refused(client, org, ladder, change):
    got = await client.put(
        "/v1/loyalty/tiers", json={"tiers": _broken(change)}, headers=org.headers["marketer"]
    )
    assert got.status_code == 422, got.text
    listed = await client.get("/v1/loyalty/tiers", headers=org.headers["marketer"])
    assert listed.json() == ladder


@pytest.mark.parametrize("role", ["store_manager", "region_manager", "cashier"])
async def test_only_marketers_and_admins_set_the_ladder(client, org, role):
    got = await client.put("/v1/loyalty/tiers", json={"tiers": LADDER}, headers=org.headers[role])
    assert got.status_code == 403


async def test_upgrade_comes_with_the_qualifying_purchase(client, session, org, member, ladder):
    assert (await buy(client, org, member, "T-1", 100_000))["tier"] == "silver"
    assert (await buy(client, org, member, "T-2", 399_999))["tier"] == "silver"
    assert (await buy(client, org, member, "T-3", 1))["tier"] == "gold"
    assert await tier_of(session, member.id) == "gold"
    assert (await buy(client, org, member, "T-4", 1_500_000))["tier"] == "platinum"


async def test_tier_multiplier_feeds_earning(client, org, member, ladder):
    upgrading = await buy(client, org, member, "T-5", 500_000)
    assert (upgrading["tier"], upgrading["points"]["earned"]) == ("gold", 5_000)  # earned as Silver
    gold = await buy(client, org, member, "T-6", 10_000)
    assert gold["points"]["earned"] == 150
    assert {"rule": "tier:gold", "points": 50}.items() <= next(
        a for a in gold["points"]["breakdown"] if a["rule"].startswith("tier:")
    ).items()


async def test_review_downgrades_at_most_one_level_at_a_time(client, session, org, member, ladder):
    with clock.frozen(T0) as frozen:
        assert (await buy(client, org, member, "T-7", 2_000_000))["tier"] == "platinum"
        assert await jobs.review_tiers(session) == 1
        assert await tier_of(session, member.id) == "platinum"  # the spend still counts

        frozen.set(T0 + timedelta(days=400))  # the spend has left the 12-month window
        assert await jobs.review_tiers(session) == 1
        assert await tier_of(session, member.id) == "gold"
        assert await jobs.review_tiers(session) == 0  # reviewed: not due again yet
        assert await tier_of(session, member.id) == "gold"

        frozen.tick(31 * 86400)
        assert await jobs.review_tiers(session) == 1
        assert await tier_of(session, member.id) == "silver"
        frozen.tick(31 * 86400)
        await jobs.review_tiers(session)
        assert await tier_of(session, member.id) == "silver"


async def test_a_manual_tier_holds_until_its_end_date(client, session, org, member, ladder):
    with clock.frozen(T0) as frozen:
        token, _ = org_service.issue_staff_token(make_settings(), org.staff["admin"])
        until = T0 + timedelta(days=60)
        got = await client.put(
            f"/v1/members/{member.id}/tier",
            json={"tier": "platinum", "until": until.isoformat()},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert got.status_code == 200, got.text

        for days in (1, 32):
            frozen.set(T0 + timedelta(days=days))
            await jobs.review_tiers(session)
            assert await tier_of(session, member.id) == "platinum"
        frozen.set(until + timedelta(days=1))
        assert await jobs.review_tiers(session) == 1
        assert await tier_of(session, member.id) == "gold"
        frozen.tick(31 * 86400)
        assert await jobs.review_tiers(session) == 1
        assert await tier_of(session, member.id) == "silver"


@pytest.mark.parametrize(
    ("role", "tier", "status"),
    [("marketer", "gold", 403), ("store_manager", "gold", 403), ("admin", "diamond", 404)],
)
async def test_manual_tiers_are_for_admins_and_known_tiers(
    client, session, org, member, ladder, role, tier, status
):
    got = await client.put(
        f"/v1/members/{member.id}/tier",
        json={"tier": tier, "until": (clock.now() + timedelta(days=9)).isoformat()},
        headers=org.headers[role],
    )
    assert got.status_code == status, got.text
    assert await tier_of(session, member.id) is None


async def test_qualifying_spend_is_net_of_returns(client, session, settings, org, member, ladder):
    bought = await buy(client, org, member, "T-8", 600_000)
    assert bought["tier"] == "gold"
    back = await client.post(
        f"/v1/pos/purchases/{bought['purchase_id']}/returns",
        json={"return_no": "R-1", "lines": [{"line_no": 1, "amount": 200_000}]},
        headers=org.terminal(org.supermarket),
    )
    assert back.status_code == 200, back.text

    view = await client.get("/v1/me/points", headers=factories.member_headers(settings, member))
    tier = view.json()["tier"]
    assert (tier["code"], tier["qualifying_spend"], tier["next_code"]) == (
        "gold",
        400_000,
        "platinum",
    )
    assert tier["progress"] == pytest.approx(0.2)
    await jobs.review_tiers(session)
    assert await tier_of(session, member.id) == "silver"
