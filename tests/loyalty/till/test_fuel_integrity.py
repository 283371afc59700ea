"""Fuel points come only from plausible lines (issue: ¥0.01 for 10,000 L earned 25,000 points;
"95" instead of "95#" fell back to the amount rate): known grades, an amount above 0, a price
per litre within the grade's bounds, litres within the programme's maximum, and a cap of
points per receipt. Posts, quotes, offline batches and claims refuse alike, storing nothing."""

from typing import Any

import pytest
from sqlalchemy import func, select

from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.till.models import Purchase
from tests import factories

PURCHASES = "/v1/pos/purchases"
FUEL_RULE = {
    "code": "fuel-95",
    "name": "Fuel 2.5 pt/L",
    "kind": "fuel",
    "params": {"grades": {"95#": 250, "92#": 200}},
}


def fuel_receipt(
    receipt_no: str, *lines: tuple[str | None, int | None, int], member_code: str | None = None
) -> dict[str, Any]:
    """Lines are (fuel_grade, volume_ml, amount)."""
    body: dict[str, Any] = {
        "receipt_no": receipt_no,
        "currency": "CNY",
        "total": sum(amount for *_, amount in lines),
        "lines": [
            {
                "line_no": i,
                "sku": f"FUEL-{i}",
                "category": "fuel",
                "amount": amount,
                **({"fuel_grade": grade} if grade is not None else {}),
                **({"volume_ml": volume} if volume is not None else {}),
            }
            for i, (grade, volume, amount) in enumerate(lines, start=1)
        ],
    }
    if member_code:
        body["member_code"] = member_code
    return body


@pytest.fixture
async def driver(session, settings, org):
    m = await factories.make_member(session, settings, store=org.fuel_a)
    await session.commit()
    return m


@pytest.fixture
async def fuel_rule(client, org):
    r = await client.put(
        "/v1/loyalty/rules", json={"rules": [FUEL_RULE]}, headers=org.headers["marketer"]
    )
    assert r.status_code == 200, r.text


async def stored(session) -> tuple[int, int]:
    purchases = (await session.execute(select(func.count()).select_from(Purchase))).scalar_one()
    entries = (await session.execute(select(func.count()).select_from(LedgerEntry))).scalar_one()
    return purchases, entries


async def test_a_plausible_fuel_line_earns_by_volume(client, session, org, driver, fuel_rule):
    body = fuel_receipt("F-OK", ("95#", 40_000, 33_200), member_code=driver.card_number)
    r = await client.post(PURCHASES, json=body, headers=org.terminal(org.fuel_a))
    assert r.status_code == 201, r.text
    assert r.json()["points"]["earned"] == 100  # 40 L × 2.5


@pytest.mark.parametrize(
    ("lines", "error", "says"),
    [
        # the issue's ¥0.01 line of 10,000 L
        ([("95#", 10_000_000, 1)], "ImplausibleFuelLine", "more than the 200000 ml"),
        ([("95#", 100_000, 1)], "ImplausibleFuelLine", "not a plausible price"),
        # five ¥0 lines: amount 0
        ([("95#", 100_000, 0)] * 5, "ImplausibleFuelLine", "amount above 0"),
        ([("95#", 40_000, 200_000)], "ImplausibleFuelLine", "not a plausible price"),
        ([("95#", None, 33_200)], "ImplausibleFuelLine", "needs volume_ml"),
        ([(None, 40_000, 33_200)], "ImplausibleFuelLine", "give fuel_grade"),
        # "95" instead of "95#" used to earn at the amount rate
        ([("95", 40_000, 33_200)], "UnknownFuelGrade", "'95'"),
    ],
)
async def test_implausible_fuel_lines_are_refused_and_store_nothing(
    client, session, org, driver, fuel_rule, lines, error, says
):
    body = fuel_receipt("F-BAD", *lines, member_code=driver.card_number)
    till = org.terminal(org.fuel_a)
    for url in (f"{PURCHASES}/quote", PURCHASES):
        r = await client.post(url, json=body, headers=till)
        assert (r.status_code, r.json()["error"]) == (422, error), (url, r.text)
        assert says in r.json()["detail"]
    batch = await client.post(f"{PURCHASES}/batch", json={"purchases": [body]}, headers=till)
    assert batch.status_code == 200, batch.text
    (item,) = batch.json()["results"]
    assert (item["status"], item["error"]) == ("rejected", error)
    assert await stored(session) == (0, 0)
    assert await session.get(Account, driver.id) is None


async def test_an_unknown_grade_names_the_grades_known_here(client, org, driver, fuel_rule):
    body = fuel_receipt("F-95", ("95", 40_000, 33_200), member_code=driver.card_number)
    r = await client.post(PURCHASES, json=body, headers=org.terminal(org.fuel_a))
    assert r.status_code == 422
    known = r.json()["known_grades"]
    assert "95#" in known and "92#" in known and "0#" in known  # rule grades and the programme's
    assert "95" not in known
    assert "95#" in r.json()["detail"]


async def test_a_grade_priced_only_by_a_rule_is_known(client, org, driver):
    rule = {**FUEL_RULE, "params": {"grades": {"LNG": 100}}}
    r = await client.put(
        "/v1/loyalty/rules", json={"rules": [rule]}, headers=org.headers["marketer"]
    )
    assert r.status_code == 200, r.text
    body = fuel_receipt("F-LNG", ("LNG", 40_000, 24_000), member_code=driver.card_number)
    r = await client.post(PURCHASES, json=body, headers=org.terminal(org.fuel_a))
    assert r.status_code == 201, r.text
    assert r.json()["points"]["earned"] == 40


async def test_bounds_and_the_litre_maximum_are_programme_settings(
    client, session, org, driver, fuel_rule
):
    truck = fuel_receipt("F-TRUCK", ("0#", 400_000, 300_000), member_code=driver.card_number)
    till = org.terminal(org.fuel_a)
    refused = await client.post(PURCHASES, json=truck, headers=till)
    assert refused.status_code == 422 and "200000 ml" in refused.json()["detail"]
    cheap = fuel_receipt("F-CHEAP", ("92#", 40_000, 12_000), member_code=driver.card_number)
    assert (await client.post(PURCHASES, json=cheap, headers=till)).status_code == 422

    changed = await client.put(
        "/v1/loyalty/program",
        json={
            "max_fuel_ml_per_line": 600_000,
            "fuel_grades": {
                "92#": {"min_price": 250, "max_price": 1200},
                "0#": {"min_price": 400, "max_price": 1500},
            },
        },
        headers=org.headers["admin"],
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["max_fuel_ml_per_line"] == 600_000
    assert (await client.post(PURCHASES, json=truck, headers=till)).status_code == 201
    assert (await client.post(PURCHASES, json=cheap, headers=till)).status_code == 201
    gone = fuel_receipt("F-98", ("98#", 40_000, 36_000), member_code=driver.card_number)
    r = await client.post(PURCHASES, json=gone, headers=till)  # 98# left the programme's list
    assert r.status_code == 422 and r.json()["error"] == "UnknownFuelGrade"

    bad = await client.put(
        "/v1/loyalty/program",
        json={"fuel_grades": {"95#": {"min_price": 900, "max_price": 400}}},
        headers=org.headers["admin"],
    )
    assert bad.status_code == 422


async def test_the_points_cap_per_receipt_is_the_last_defence(client, session, org, driver):
    rich = {
        "code": "fuel-rich",
        "name": "Fuel 1000 pt/L",
        "kind": "fuel",
        "params": {"grades": {"95#": 100_000}},
    }
    r = await client.put(
        "/v1/loyalty/rules", json={"rules": [rich]}, headers=org.headers["marketer"]
    )
    assert r.status_code == 200, r.text
    till = org.terminal(org.fuel_a)
    big = fuel_receipt("F-CAP", ("95#", 150_000, 124_500), member_code=driver.card_number)
    for url in (f"{PURCHASES}/quote", PURCHASES):
        r = await client.post(url, json=big, headers=till)
        assert (r.status_code, r.json()["error"]) == (422, "PointsCapExceeded"), r.text
        assert "150000 points" in r.json()["detail"] and "100000" in r.json()["detail"]
    assert await stored(session) == (0, 0)
    small = fuel_receipt("F-CAP-2", ("95#", 100_000, 83_000), member_code=driver.card_number)
    r = await client.post(PURCHASES, json=small, headers=till)
    assert r.status_code == 201 and r.json()["points"]["earned"] == 100_000


async def test_a_claim_is_capped_the_same_way(client, session, settings, org, driver):
    anonymous = fuel_receipt("F-ANON", ("95#", 150_000, 124_500))
    till = org.terminal(org.fuel_a)
    posted = await client.post(PURCHASES, json=anonymous, headers=till)
    assert posted.status_code == 201, posted.text
    rich = {
        "code": "fuel-rich",
        "name": "Fuel 1000 pt/L",
        "kind": "fuel",
        "params": {"grades": {"95#": 100_000}},
    }
    r = await client.put(
        "/v1/loyalty/rules", json={"rules": [rich]}, headers=org.headers["marketer"]
    )
    assert r.status_code == 200
    claim = {
        "store_code": org.fuel_a.code,
        "receipt_no": "F-ANON",
        "total": 124_500,
        "claim_code": posted.json()["claim_code"],
    }
    r = await client.post(
        "/v1/me/receipts/claim", json=claim, headers=factories.member_headers(settings, driver)
    )
    assert (r.status_code, r.json()["error"]) == (422, "PointsCapExceeded")
    assert await session.get(Account, driver.id) is None
