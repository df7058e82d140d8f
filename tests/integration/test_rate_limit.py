"""Per-key rate limiting (OMNIROUTE_RATE_LIMIT_PER_SECOND / _BURST): a key over its limit
gets a 429 problem with Retry-After, nothing is written, other keys and the unauthenticated
probes are untouched, and waiting Retry-After seconds is enough."""

from __future__ import annotations

import asyncio

from tests.helpers import ADMIN, assert_problem, build_network, make_key, receive, row_counts, service

RECEIPT = {"movements": [{"sku": "SKU-A", "location_id": "STORE-NYC", "kind": "receipt", "quantity": 1}]}


async def test_a_key_over_its_limit_gets_429_with_retry_after_and_writes_nothing(client, db, database_url):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    pos = await make_key(client, "pos", "STORE-NYC")
    checkout = await make_key(client, "checkout")
    async with service(database_url, OMNIROUTE_RATE_LIMIT_PER_SECOND="2", OMNIROUTE_RATE_LIMIT_BURST="3") as limited:
        for _ in range(3):
            r = await limited.post("/v1/stock/movements", json=RECEIPT, headers=pos)
            assert r.status_code == 201, r.text
        before = await row_counts(db)
        r = await limited.post("/v1/stock/movements", json=RECEIPT, headers=pos)
        body = assert_problem(r, 429)
        assert body["type"] == "/problems/too-many-requests"
        assert r.headers["retry-after"] == "1"  # 2 a second: the next token is 0.5 s away
        assert "2 requests a second" in body["detail"]
        assert r.headers["x-request-id"]
        assert await row_counts(db) == before
        # another key has its own bucket; the probes, metrics and schema are not limited
        assert (await limited.get("/v1/stock", params={"sku": "SKU-A"}, headers=checkout)).status_code == 200
        for path in ("/healthz", "/readyz", "/metrics", "/schema/openapi.json"):
            for _ in range(5):
                assert (await limited.get(path, headers=pos)).status_code == 200, path
        # a request without a valid key is a 401, not a 429
        assert_problem(await limited.get("/v1/stock", params={"sku": "SKU-A"}), 401)
        await asyncio.sleep(int(r.headers["retry-after"]))
        r = await limited.post("/v1/stock/movements", json=RECEIPT, headers=pos)
        assert r.status_code == 201, r.text
        metrics = (await limited.get("/metrics")).text
        assert 'route="/v1/stock/movements",status="429"' in metrics


async def test_the_limit_counts_per_key_across_all_routes(client, db, database_url):
    await build_network(client)
    async with service(database_url, OMNIROUTE_RATE_LIMIT_PER_SECOND="0.5", OMNIROUTE_RATE_LIMIT_BURST="2") as limited:
        assert (await limited.get("/v1/locations", headers=ADMIN)).status_code == 200
        assert (await limited.get("/v1/items/SKU-A", headers=ADMIN)).status_code == 200
        r = await limited.post("/v1/availability", json={"skus": ["SKU-A"]}, headers=ADMIN)
        assert_problem(r, 429)
        assert r.headers["retry-after"] == "2"  # 0.5 a second


async def test_without_a_configured_limit_nothing_is_limited(client, db):
    await build_network(client)
    answers = await asyncio.gather(*(client.get("/v1/items/SKU-A", headers=ADMIN) for _ in range(300)))
    assert {a.status_code for a in answers} == {200}
