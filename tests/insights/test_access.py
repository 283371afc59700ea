"""Who may call what: managers read (scoped), admin and marketer refresh and configure,
cashiers are refused, no token is 401."""

import pytest

from tests.insights.conftest import refresh

READS = ["abc", "rfm", "churn", "liability", "kpis", "lapsed", "settings", "refresh"]
MANAGERS = {"admin", "marketer", "region_manager", "store_manager"}


@pytest.mark.parametrize("path", READS)
async def test_reads_need_a_manager_role(client, session, org, path):
    await refresh(session)
    url = f"/v1/insights/{path}"
    anonymous = await client.get(url)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "NotAuthenticated"
    for role, headers in org.headers.items():
        r = await client.get(url, headers=headers)
        expected = 200 if role in MANAGERS else 403
        assert r.status_code == expected, (role, r.text)
        if expected == 403:
            assert r.json()["error"] == "RoleNotAllowed"


async def test_refresh_and_settings_writes_are_for_admin_and_marketer(client, org):
    for role, headers in org.headers.items():
        r = await client.post("/v1/insights/refresh", headers=headers)
        s = await client.put("/v1/insights/settings", json={"churn_days": 60}, headers=headers)
        allowed = role in {"admin", "marketer"}
        assert r.status_code == (200 if allowed else 403), (role, r.text)
        assert s.status_code == (200 if allowed else 403), (role, s.text)
    assert (await client.post("/v1/insights/refresh")).status_code == 401


async def test_alert_actions_need_a_manager_or_the_assignee(client, org):
    for path, body in (("assign", {"staff_id": 1}), ("outcome", {"outcome": "reached"})):
        url = f"/v1/insights/lapsed/999999/{path}"
        assert (await client.post(url, json=body)).status_code == 401
        r = await client.post(url, json=body, headers=org.headers["store_manager"])
        assert r.status_code == 404 and r.json()["error"] == "AlertNotFound"
    cashier = await client.post(
        "/v1/insights/lapsed/999999/assign", json={"staff_id": 1}, headers=org.headers["cashier"]
    )
    assert cashier.status_code == 403
    placed = await client.post(
        "/v1/insights/portfolio",
        json={"staff_id": 1, "member_id": 1},
        headers=org.headers["cashier"],
    )
    assert placed.status_code == 403
    assert (await client.get("/v1/insights/portfolio")).status_code == 401


async def test_openapi_lists_the_insights_tag(client):
    spec = (await client.get("/openapi.json")).json()
    paths = [p for p in spec["paths"] if p.startswith("/v1/insights")]
    assert "/v1/insights/abc" in paths and "/v1/insights/lapsed/{alert_id}/outcome" in paths
    for path in paths:
        for op in spec["paths"][path].values():
            assert op["tags"] == ["insights"] and op["summary"] and op["description"]
