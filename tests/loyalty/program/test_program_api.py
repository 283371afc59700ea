"""Programme settings and earning rules over the API: the documented defaults, changes and
their versions, validation, who may change them, and that earning follows them."""

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from api.loyalty.program import service as program_service
from api.loyalty.program.models import RuleVersion
from api.loyalty.program.schemas import RuleUpdate
from tests.loyalty.conftest import receipt

PROGRAM, RULES = "/v1/loyalty/program", "/v1/loyalty/rules"


def multiplier(code: str = "fresh", percent: int = 300, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "name": "Fresh produce",
        "kind": "multiplier",
        "params": {"categories": ["produce"], "multiplier_percent": percent},
        **extra,
    }


async def earn(client, org, member, receipt_no: str, *lines, store=None, **kw) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = receipt(receipt_no, *lines, member_code=member.card_number)
    for line, extra in zip(body["lines"], kw.get("line_extra", [{}] * len(lines)), strict=True):
        line.update(extra)
    got = await client.post(
        "/v1/pos/purchases", json=body, headers=org.terminal(store or org.supermarket)
    )
    assert got.status_code == 201, got.text
    return got.json()


async def test_the_default_programme_is_the_documented_one(client, org):
    got = await client.get(PROGRAM, headers=org.headers["marketer"])
    assert got.status_code == 200, got.text
    assert {
        k: got.json()[k]
        for k in (
            "currency",
            "earn_points",
            "earn_amount",
            "rounding",
            "redeem_points",
            "redeem_value",
            "pending_days",
            "expiry_policy",
            "expiry_months",
            "static_card_can_spend",
            "reservation_minutes",
        )
    } == {
        "currency": "CNY",
        "earn_points": 1,
        "earn_amount": 100,
        "rounding": "floor",
        "redeem_points": 100,
        "redeem_value": 100,
        "pending_days": 0,
        "expiry_policy": "rolling",
        "expiry_months": 12,
        "static_card_can_spend": False,
        "reservation_minutes": 10,
    }


async def test_programme_changes_apply_bump_the_version_and_drive_earning(client, org, member):
    marketer = org.headers["marketer"]
    before = (await client.get(PROGRAM, headers=marketer)).json()
    changed = await client.put(
        PROGRAM, json={"earn_points": 3, "rounding": "round"}, headers=marketer
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert (after["earn_points"], after["rounding"], after["version"]) == (
        3,
        "round",
        before["version"] + 1,
    )
    assert after["earn_amount"] == before["earn_amount"]  # left out, left alone
    assert (await earn(client, org, member, "P-1", ("grocery", 1_050)))["points"]["earned"] == 32

    never = await client.put(PROGRAM, json={"expiry_policy": "never"}, headers=marketer)
    assert (never.json()["expiry_policy"], never.json()["expiry_months"]) == ("never", None)
    assert (await earn(client, org, member, "P-2", ("grocery", 100)))["points"][
        "expires_at"
    ] is None
    rolling = await client.put(PROGRAM, json={"expiry_policy": "rolling"}, headers=marketer)
    assert (rolling.json()["expiry_policy"], rolling.json()["expiry_months"]) == ("rolling", 12)


@pytest.mark.parametrize(
    "body",
    [
        {"timezone": "Mars/Olympus_Mons"},
        {"earn_amount": 0},
        {"rounding": "bankers"},
        {"currency": "yuan"},
        {"pending_days": -1},
        {"expiry_months": 0},
    ],
)
async def test_invalid_programme_settings_are_refused(client, org, body):
    before = (await client.get(PROGRAM, headers=org.headers["admin"])).json()
    got = await client.put(PROGRAM, json=body, headers=org.headers["admin"])
    assert got.status_code == 422, got.text
    assert (await client.get(PROGRAM, headers=org.headers["admin"])).json() == before


@pytest.mark.parametrize("role", ["store_manager", "region_manager", "cashier"])
@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", PROGRAM, None),
        ("PUT", PROGRAM, {"earn_points": 5}),
        ("GET", RULES, None),
        ("PUT", RULES, {"rules": []}),
        ("POST", RULES, multiplier()),
    ],
)
async def test_only_marketers_and_admins_see_and_change_the_programme(
    client, org, role, method, url, body
):
    got = await client.request(method, url, json=body, headers=org.headers[role])
    assert got.status_code == 403
    anonymous = await client.request(method, url, json=body)
    assert anonymous.status_code == 401
    till = await client.request(method, url, json=body, headers=org.terminal(org.supermarket))
    assert till.status_code == 403  # a known caller of the wrong kind


async def test_rules_are_created_versioned_and_deactivated_by_the_rule_set(
    client, session, org, member
):
    marketer = org.headers["marketer"]
    created = await client.post(RULES, json=multiplier(), headers=marketer)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    taken = await client.post(RULES, json=multiplier(), headers=marketer)
    assert taken.status_code == 409 and taken.json()["error"] == "RuleCodeTaken"

    rule_id = created.json()["id"]
    patched = await client.patch(
        f"{RULES}/{rule_id}",
        json={"params": {"categories": ["produce"], "multiplier_percent": 200}},
        headers=marketer,
    )
    assert patched.json()["version"] == 2
    assert (await earn(client, org, member, "P-3", ("produce", 1_000)))["points"]["earned"] == 20

    tobacco = {
        "code": "no-tobacco",
        "name": "No points on tobacco",
        "kind": "exclude",
        "params": {"categories": ["tobacco"]},
    }
    replaced = await client.put(RULES, json={"rules": [tobacco]}, headers=marketer)
    assert replaced.status_code == 200, replaced.text
    assert {(r["code"], r["active"]) for r in replaced.json()} == {
        ("fresh", False),
        ("no-tobacco", True),
    }
    earned = await earn(client, org, member, "P-4", ("produce", 1_000), ("tobacco", 5_000))
    assert earned["points"]["earned"] == 10
    excluded = next(a for a in earned["points"]["breakdown"] if a["line_no"] == 2)
    assert (excluded["rule"], excluded["points"], excluded["reason"]) == (
        "no-tobacco",
        0,
        "excluded",
    )
    versions = (
        await session.execute(
            select(RuleVersion.version, RuleVersion.definition)
            .where(RuleVersion.rule_id == rule_id)
            .order_by(RuleVersion.version)
        )
    ).all()
    assert [(v, d["active"]) for v, d in versions] == [(1, True), (2, True), (3, False)]


@pytest.mark.parametrize(
    ("rules", "error"),
    [
        ([{**multiplier(), "params": {"multiplier_percent": 200}}], "InvalidRule"),
        ([multiplier(percent=90)], "InvalidRule"),
        (
            [{"code": "md", "name": "Member day", "kind": "member_day",
              "params": {"rrule": "every wednesday", "multiplier_percent": 200}}],
            "InvalidRule",
        ),
        ([multiplier(), multiplier()], "InvalidRule"),
        ([{**multiplier(), "kind": "teleport"}], "ValidationError"),
        (
            [multiplier(valid_from="2030-02-01T00:00:00Z", valid_until="2030-01-01T00:00:00Z")],
            "ValidationError",
        ),
    ],
)  # fmt: skip
async def test_invalid_rules_are_refused(client, org, rules, error):
    got = await client.put(RULES, json={"rules": rules}, headers=org.headers["marketer"])
    assert got.status_code == 422, got.text
    assert got.json()["error"] == error
    assert (await client.get(RULES, headers=org.headers["marketer"])).json() == []


async def test_a_rule_cannot_change_its_kind(client, org):
    marketer = org.headers["marketer"]
    await client.put(RULES, json={"rules": [multiplier()]}, headers=marketer)
    other = {**multiplier(), "kind": "exclude", "params": {"categories": ["produce"]}}
    got = await client.put(RULES, json={"rules": [other]}, headers=marketer)
    assert got.status_code == 422 and got.json()["error"] == "InvalidRule"


async def test_rule_windows_without_an_offset_are_taken_as_utc(client, org):
    got = await client.post(
        RULES,
        json=multiplier(valid_from="2030-01-01T00:00:00", valid_until="2030-02-01T00:00:00"),
        headers=org.headers["marketer"],
    )
    assert got.status_code == 201, got.text
    assert datetime.fromisoformat(got.json()["valid_from"]) == datetime(2030, 1, 1, tzinfo=UTC)


async def test_rules_follow_their_store_scope_and_fuel_is_priced_per_litre(client, org, member):
    rules = [
        multiplier(store_ids=[org.fuel_a.id]),
        {"code": "fuel", "name": "Fuel per litre", "kind": "fuel",
         "params": {"grades": {"92#": 100, "95#": 150, "98#": 200}}},
    ]  # fmt: skip
    got = await client.put(RULES, json={"rules": rules}, headers=org.headers["marketer"])
    assert got.status_code == 200, got.text

    here = await earn(client, org, member, "P-5", ("produce", 1_000))
    assert here["points"]["earned"] == 10  # the multiplier is for fuel_a only
    there = await earn(client, org, member, "P-6", ("produce", 1_000), store=org.fuel_a)
    assert there["points"]["earned"] == 30
    fuel = await earn(
        client,
        org,
        member,
        "P-7",
        ("fuel", 30_000),
        store=org.fuel_b,
        line_extra=[{"fuel_grade": "95#", "volume_ml": 40_000}],
    )
    assert fuel["points"]["earned"] == 60  # 40 L × 1.5 points, not 300 for the money


async def test_the_till_never_earns_by_a_stale_rule_set(client, org, member, session):
    """Active rules and tiers are kept per process by the programme's earning etag: every
    change (rules, tiers, settings) gives a new etag in its own transaction, so the next
    receipt sees it, and a rolled-back change leaves nothing behind."""
    marketer = org.headers["marketer"]
    assert (await earn(client, org, member, "S-1", ("fresh", 1_000)))["points"]["earned"] == 10

    double = {"code": "fresh-x2", "name": "Fresh x2", "kind": "multiplier"}
    double["params"] = {"categories": ["fresh"], "multiplier_percent": 200}
    created = await client.post(RULES, json=double, headers=marketer)
    assert created.status_code == 201, created.text
    assert (await earn(client, org, member, "S-2", ("fresh", 1_000)))["points"]["earned"] == 20

    rule_id = created.json()["id"]
    paused = await client.patch(f"{RULES}/{rule_id}", json={"active": False}, headers=marketer)
    assert paused.status_code == 200, paused.text
    assert (await earn(client, org, member, "S-3", ("fresh", 1_000)))["points"]["earned"] == 10

    ladder = {
        "tiers": [
            {"code": "base", "name": "Base", "min_spend": 0, "multiplier_percent": 150},
            {"code": "top", "name": "Top", "min_spend": 10**9, "multiplier_percent": 200},
        ]
    }
    assert (await client.put("/v1/loyalty/tiers", json=ladder, headers=marketer)).is_success
    manual = await client.put(
        f"/v1/members/{member.id}/tier",
        json={"tier": "base", "until": "2099-01-01T00:00:00Z"},
        headers=org.headers["admin"],
    )
    assert manual.status_code == 200, manual.text
    assert (await earn(client, org, member, "S-4", ("fresh", 1_000)))["points"]["earned"] == 15

    # A change that is rolled back (here: a savepoint) must not linger in the snapshot.
    program = await program_service.get_program(session)
    etag = program.earning_etag
    savepoint = await session.begin_nested()
    await program_service.update_rule(
        session, await program_service.get_rule(session, rule_id), data=RuleUpdate(active=True)
    )
    assert (await program_service.earning(session, program)).etag != etag
    await savepoint.rollback()
    await session.refresh(program)
    assert program.earning_etag == etag
    assert (await earn(client, org, member, "S-5", ("fresh", 1_000)))["points"]["earned"] == 15
