from tests.loyalty.conftest import receipt


async def test_post_purchase_earns_points_and_duplicate_is_refused(client, org, member):
    till = org.terminal(org.supermarket)
    body = receipt("R-1", ("grocery", 1234), ("dairy", 566), member_code=member.card_number)
    first = await client.post("/v1/pos/purchases", json=body, headers=till)
    assert first.status_code == 201, first.text
    data = first.json()
    assert data["points"]["earned"] == 18
    assert data["balance"] == {"available": 18, "pending": 0}
    assert sum(a["points"] for a in data["points"]["breakdown"]) == 18
    again = await client.post("/v1/pos/purchases", json=body, headers=till)
    assert again.status_code == 409
    assert again.json()["error"] == "DuplicateReceipt"
    assert again.json()["purchase_id"] == data["purchase_id"]


async def test_return_reverses_points(client, org, member):
    till = org.terminal(org.supermarket)
    body = receipt("R-2", ("grocery", 1000), ("dairy", 1000), member_code=member.card_number)
    posted = (await client.post("/v1/pos/purchases", json=body, headers=till)).json()
    r = await client.post(
        f"/v1/pos/purchases/{posted['purchase_id']}/returns",
        json={"return_no": "RT-1", "lines": [{"line_no": 1}]},
        headers=till,
    )
    assert r.status_code == 200, r.text
    assert r.json()["points_reversed"] == 10
    assert r.json()["balance"]["available"] == 10
