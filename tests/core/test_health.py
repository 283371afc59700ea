async def test_healthz(client):
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_checks_database(client):
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["database"] == "ok"


async def test_docs_and_tags(client):
    spec = (await client.get("/openapi.json")).json()
    tags = {tag for path in spec["paths"].values() for op in path.values() for tag in op["tags"]}
    assert {"auth", "organisation", "members", "me", "pos", "operations"} <= tags
    assert (await client.get("/docs")).status_code == 200
