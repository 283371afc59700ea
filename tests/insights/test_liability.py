"""Liability: outstanding, pending and expiring points with their value, and breakage."""

from datetime import timedelta

from api.core import clock
from api.loyalty.program import service as program_service
from tests.insights.conftest import account, add_members, days_ago, ledger_row, refresh

LIABILITY = "/v1/insights/liability"


def in_days(days: int):
    return clock.now() + timedelta(days=days)


async def lot(session, member, points, *, remaining, expires_in, age, matured=True):
    """An earn lot `age` days old with `remaining` points expiring in `expires_in` days."""
    await ledger_row(
        session,
        member,
        "earn",
        points,
        remaining=remaining,
        matured=matured,
        expires_at=in_days(expires_in),
        created_at=days_ago(age),
    )


async def build(session, org):
    holder, debtor = await add_members(session, org.supermarket, 2)
    elsewhere = (await add_members(session, org.fuel_b))[0]
    await account(session, holder, available=1_000, pending=200)
    await account(session, debtor, available=-50)  # owes points: no liability
    await account(session, elsewhere, available=5_000)
    await lot(session, holder, 1_500, remaining=600, expires_in=20, age=100)
    await lot(session, holder, 400, remaining=400, expires_in=80, age=50)
    await lot(session, holder, 200, remaining=200, expires_in=400, age=1, matured=False)
    await ledger_row(session, holder, "expire", -300, created_at=days_ago(10))
    await ledger_row(session, holder, "earn", 9_000, created_at=days_ago(400))  # too old
    await ledger_row(session, holder, "expire", -9_000, created_at=days_ago(380))  # too old
    await lot(session, elsewhere, 5_000, remaining=5_000, expires_in=10, age=5)
    program = await program_service.get_program(session)
    program.redeem_points, program.redeem_value = 100, 50  # a point is worth half a cent


async def test_liability_figures(client, session, org):
    await build(session, org)
    await refresh(session)
    r = await client.get(LIABILITY, headers=org.headers["store_manager"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outstanding_points"] == 1_000 and body["outstanding_value"] == 500
    assert body["pending_points"] == 200 and body["pending_value"] == 100
    assert [(e["within_days"], e["points"], e["value"]) for e in body["expiring"]] == [
        (30, 600, 300),
        (60, 600, 300),
        (90, 1_000, 500),
    ]
    assert body["breakage"] == {"expired_points": 300, "earned_points": 2_100, "rate": 0.1429}
    assert body["currency"] == "CNY" and body["computed_at"]

    everyone = (await client.get(LIABILITY, headers=org.headers["marketer"])).json()
    assert everyone["outstanding_points"] == 6_000
    assert everyone["expiring"][0]["points"] == 5_600
    assert everyone["breakage"]["earned_points"] == 7_100
