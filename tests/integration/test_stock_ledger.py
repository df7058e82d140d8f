import asyncio

from engine.services.stock import check_ledger
from tests.helpers import ADMIN, build_network, make_key, receive


async def _positions(client, sku):
    r = await client.get("/v1/stock", params={"sku": sku}, headers=ADMIN)
    assert r.status_code == 200
    return {p["location_id"]: p for p in r.json()}


async def test_every_kind_moves_on_hand_and_the_ledger_resums_to_the_position(client, db):
    await build_network(client)
    r = await client.post(
        "/v1/stock/movements",
        headers=ADMIN,
        json={
            "reference": "po-7",
            "movements": [
                {"sku": "SKU-A", "location_id": "DC-NJ", "kind": "receipt", "quantity": 100},
                {"sku": "SKU-B", "location_id": "DC-NJ", "kind": "count", "quantity": 40},
                {"sku": "SKU-C", "location_id": "STORE-NYC", "kind": "receipt", "quantity": 5},
            ],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["movements"] == 3
    r = await client.post(
        "/v1/stock/movements",
        headers=ADMIN,
        json={
            "movements": [
                {"sku": "SKU-A", "location_id": "DC-NJ", "kind": "sale", "quantity": 7},
                {"sku": "SKU-B", "location_id": "DC-NJ", "kind": "adjustment", "quantity": -5},
                {"sku": "SKU-C", "location_id": "STORE-NYC", "kind": "return", "quantity": 1},
            ]
        },
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/stock/movements",
        headers=ADMIN,
        json={
            "movements": [
                {"sku": "SKU-A", "location_id": "DC-NJ", "kind": "count", "quantity": 90},
            ]
        },
    )
    assert r.status_code == 201, r.text
    assert (await _positions(client, "SKU-A"))["DC-NJ"]["on_hand"] == 90
    assert (await _positions(client, "SKU-B"))["DC-NJ"]["on_hand"] == 35
    assert (await _positions(client, "SKU-C"))["STORE-NYC"]["on_hand"] == 6
    checked, drifted, _ = await check_ledger(db)
    assert (checked, drifted) == (3, 0)
    async with db.acquire() as conn:
        kinds = [
            r[0] for r in await conn.fetch("SELECT kind FROM stock_movements WHERE sku = 'SKU-A' ORDER BY movement_id")
        ]
        assert kinds == ["receipt", "sale", "count"]
        assert await conn.fetchval("SELECT sum(delta_on_hand) FROM stock_movements WHERE sku = 'SKU-A'") == 90


async def test_check_finds_a_position_that_drifted_from_its_ledger(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    async with db.acquire() as conn:
        await conn.execute("UPDATE stock_positions SET on_hand = 11 WHERE sku = 'SKU-A'")
    checked, drifted, sample = await check_ledger(db)
    assert drifted == 1
    assert sample[0]["sku"] == "SKU-A" and sample[0]["pos_on_hand"] == 11 and sample[0]["ledger_on_hand"] == 10


async def test_a_pos_sale_is_never_refused_and_a_shortfall_is_a_discrepancy_event(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 2)
    async with db.acquire() as conn:  # a hold on both units (reservations arrive in a later issue)
        await conn.execute("UPDATE stock_positions SET reserved = 2 WHERE sku = 'SKU-A'")
        await conn.execute(
            "INSERT INTO stock_movements (sku, location_id, kind, delta_reserved, actor) "
            "VALUES ('SKU-A', 'STORE-NYC', 'reserve', 2, 'test')"
        )
    pos = await make_key(client, "pos", "STORE-NYC")
    r = await client.post(
        "/v1/stock/movements",
        headers=pos,
        json={"movements": [{"sku": "SKU-A", "location_id": "STORE-NYC", "kind": "sale", "quantity": 3}]},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["positions"][0]["on_hand"] == -1
    assert [d["sku"] for d in body["discrepancies"]] == ["SKU-A"]
    async with db.acquire() as conn:
        ev = await conn.fetchrow("SELECT kind, sku, location_id, payload FROM events WHERE kind = 'discrepancy'")
    assert ev["kind"] == "discrepancy" and ev["payload"] == {"on_hand": -1, "reserved": 2}
    assert (await check_ledger(db))[1] == 0


async def test_an_idempotent_retry_returns_the_first_answer_and_books_nothing(client, db):
    await build_network(client)
    body = {"movements": [{"sku": "SKU-A", "location_id": "DC-NJ", "kind": "receipt", "quantity": 4}]}
    first = await client.post("/v1/stock/movements", json=body, headers={**ADMIN, "Idempotency-Key": "rcpt-1"})
    again = await client.post("/v1/stock/movements", json=body, headers={**ADMIN, "Idempotency-Key": "rcpt-1"})
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert (await _positions(client, "SKU-A"))["DC-NJ"]["on_hand"] == 4
    other = {"movements": [{"sku": "SKU-A", "location_id": "DC-NJ", "kind": "receipt", "quantity": 5}]}
    clash = await client.post("/v1/stock/movements", json=other, headers={**ADMIN, "Idempotency-Key": "rcpt-1"})
    assert clash.status_code == 409
    assert clash.headers["content-type"].startswith("application/problem+json")
    assert (await _positions(client, "SKU-A"))["DC-NJ"]["on_hand"] == 4


async def test_concurrent_retries_with_one_key_book_once(client, db):
    await build_network(client)
    body = {"movements": [{"sku": "SKU-A", "location_id": "DC-NJ", "kind": "receipt", "quantity": 1}]}
    answers = await asyncio.gather(
        *(
            client.post("/v1/stock/movements", json=body, headers={**ADMIN, "Idempotency-Key": "same"})
            for _ in range(20)
        )
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert (await _positions(client, "SKU-A"))["DC-NJ"]["on_hand"] == 1


async def test_many_writers_on_the_same_positions_lose_no_update_and_never_deadlock(client, db):
    await build_network(client)
    lines = [("SKU-A", "DC-NJ"), ("SKU-B", "DC-NJ"), ("SKU-A", "STORE-NYC"), ("SKU-C", "STORE-PHL")]

    async def writer(i):
        order = lines if i % 2 else list(reversed(lines))  # opposite line orders
        r = await client.post(
            "/v1/stock/movements",
            headers=ADMIN,
            json={"movements": [{"sku": s, "location_id": loc, "kind": "receipt", "quantity": 1} for s, loc in order]},
        )
        assert r.status_code == 201, r.text

    await asyncio.gather(*(writer(i) for i in range(60)))
    for sku, loc in lines:
        assert (await _positions(client, sku))[loc]["on_hand"] == 60
    assert (await check_ledger(db))[1] == 0


async def test_stock_listing_pages_by_keyset(client):
    await build_network(client)
    for loc in ("DC-NJ", "STORE-EWR", "STORE-NYC", "STORE-PHL"):
        await receive(client, "SKU-A", loc, 1)
    r = await client.get("/v1/stock", params={"sku": "SKU-A", "limit": 2}, headers=ADMIN)
    page1 = [p["location_id"] for p in r.json()]
    r = await client.get(
        "/v1/stock",
        params={"sku": "SKU-A", "limit": 2, "after_sku": "SKU-A", "after_location_id": page1[-1]},
        headers=ADMIN,
    )
    page2 = [p["location_id"] for p in r.json()]
    assert page1 + page2 == ["DC-NJ", "STORE-EWR", "STORE-NYC", "STORE-PHL"]
