import asyncio

from engine.services.stock import check_ledger
from tests.helpers import ADMIN, build_network, make_key, receive

NYC = {"lat": 40.7128, "lon": -74.0060}


def order(order_id, *lines, method="ship", pickup=None, **extra):
    body = {
        "order_id": order_id,
        "destination": NYC,
        "method": method,
        "lines": [{"line_id": str(i + 1), "sku": s, "quantity": q} for i, (s, q) in enumerate(lines)],
        **extra,
    }
    if pickup:
        body["pickup_location_id"] = pickup
    return body


async def _reserved(db, sku, loc):
    async with db.acquire() as conn:
        return await conn.fetchval("SELECT reserved FROM stock_positions WHERE sku = $1 AND location_id = $2", sku, loc)


async def _total_reserved(db):
    async with db.acquire() as conn:
        return await conn.fetchval("SELECT coalesce(sum(reserved), 0) FROM stock_positions")


async def test_a_ship_order_is_routed_reserved_and_explained(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    await receive(client, "SKU-B", "DC-NJ", 10)
    checkout = await make_key(client, "checkout")
    r = await client.post("/v1/orders", json=order("web-1", ("SKU-A", 2), ("SKU-B", 1)), headers=checkout)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "allocated" and body["unallocated"] == []
    [f] = body["fulfillments"]
    assert f["location_id"] == "DC-NJ" and f["method"] == "ship_from_warehouse"
    assert f["reservation_id"] and f["cost"]["total"] > 8.759
    assert body["explanation"]["candidates"] >= 1 and body["explanation"]["solver"] in ("cp-sat", "greedy")
    assert await _reserved(db, "SKU-A", "DC-NJ") == 2 and await _reserved(db, "SKU-B", "DC-NJ") == 1
    assert (await client.get("/v1/orders/web-1", headers=checkout)).json()["fulfillments"][0]["fulfillment_id"] == f[
        "fulfillment_id"
    ]
    assert (await check_ledger(db))[1] == 0


async def test_the_order_id_makes_placing_idempotent(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    first = await client.post("/v1/orders", json=order("web-2", ("SKU-A", 1)), headers=ADMIN)
    again = await client.post("/v1/orders", json=order("web-2", ("SKU-A", 1)), headers=ADMIN)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["fulfillments"][0]["fulfillment_id"] == again.json()["fulfillments"][0]["fulfillment_id"]
    assert await _reserved(db, "SKU-A", "DC-NJ") == 1
    other = await client.post("/v1/orders", json=order("web-2", ("SKU-A", 3)), headers=ADMIN)
    assert other.status_code == 409


async def test_an_idempotency_key_returns_the_first_answer_and_refuses_another_order(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    headers = {**ADMIN, "Idempotency-Key": "checkout-77"}
    first = await client.post("/v1/orders", json=order("web-7", ("SKU-A", 1)), headers=headers)
    again = await client.post("/v1/orders", json=order("web-7", ("SKU-A", 1)), headers=headers)
    assert first.status_code == again.status_code == 201 and first.content == again.content
    other = await client.post("/v1/orders", json=order("web-8", ("SKU-A", 1)), headers=headers)
    assert other.status_code == 409
    assert await _reserved(db, "SKU-A", "DC-NJ") == 1
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders") == 1


async def test_a_quote_reserves_nothing_and_offers_alternatives(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    await receive(client, "SKU-A", "DC-NJ", 5)
    r = await client.post("/v1/orders/quote", json=order("q-1", ("SKU-A", 1)), headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["fulfillments"] and isinstance(r.json()["alternatives"], list)
    assert await _total_reserved(db) == 0


async def test_pickup_at_a_store_that_has_everything_is_served_there(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    await receive(client, "SKU-A", "DC-NJ", 50)
    r = await client.post(
        "/v1/orders", json=order("bopis-1", ("SKU-A", 2), method="pickup", pickup="STORE-NYC"), headers=ADMIN
    )
    assert r.status_code == 201, r.text
    [f] = r.json()["fulfillments"]
    assert (f["location_id"], f["method"]) == ("STORE-NYC", "pickup")
    assert await _reserved(db, "SKU-A", "STORE-NYC") == 2


async def test_curbside_needs_a_store_that_offers_it(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-EWR", 5)
    r = await client.post(
        "/v1/orders", json=order("curb-1", ("SKU-A", 1), method="curbside", pickup="STORE-EWR"), headers=ADMIN
    )
    assert r.status_code == 422 and "curbside" in r.text


async def test_cancel_releases_every_unit(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 3)
    await receive(client, "SKU-A", "STORE-NYC", 4)
    r = await client.post("/v1/orders", json=order("web-3", ("SKU-A", 5)), headers=ADMIN)
    assert r.status_code == 201 and r.json()["status"] == "allocated", r.text
    assert await _total_reserved(db) == 5
    r = await client.post("/v1/orders/web-3/cancel", headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert {f["status"] for f in r.json()["fulfillments"]} == {"cancelled"}
    assert await _total_reserved(db) == 0
    assert (await check_ledger(db))[1] == 0


async def test_a_rejected_location_is_never_chosen_again_for_that_order(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    await receive(client, "SKU-A", "STORE-PHL", 5)
    await receive(client, "SKU-A", "DC-NJ", 5)
    r = await client.post("/v1/orders", json=order("web-4", ("SKU-A", 1)), headers=ADMIN)
    first = r.json()["fulfillments"][0]
    seen = {first["location_id"]}
    current = first
    for _ in range(2):
        loc = current["location_id"]
        key = await make_key(client, "pos", loc) if loc.startswith("STORE") else ADMIN
        r = await client.post(f"/v1/orders/web-4/fulfillments/{current['fulfillment_id']}/reject", headers=key)
        assert r.status_code == 200, r.text
        open_ = [f for f in r.json()["fulfillments"] if f["status"] == "open"]
        assert len(open_) == 1 and open_[0]["location_id"] not in seen
        current = open_[0]
        seen.add(current["location_id"])
        assert await _reserved(db, "SKU-A", loc) == 0
    assert seen == {"STORE-NYC", "STORE-PHL", "DC-NJ"}
    assert (await check_ledger(db))[1] == 0


async def test_a_store_completes_its_fulfillment_and_the_units_become_a_sale(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    r = await client.post(
        "/v1/orders", json=order("bopis-2", ("SKU-A", 2), method="pickup", pickup="STORE-NYC"), headers=ADMIN
    )
    fid = r.json()["fulfillments"][0]["fulfillment_id"]
    other_store = await make_key(client, "pos", "STORE-PHL")
    assert (
        await client.post(f"/v1/orders/bopis-2/fulfillments/{fid}/complete", headers=other_store)
    ).status_code == 403
    till = await make_key(client, "pos", "STORE-NYC")
    r = await client.post(f"/v1/orders/bopis-2/fulfillments/{fid}/complete", headers=till)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    async with db.acquire() as conn:
        assert await conn.fetchrow(
            "SELECT on_hand, reserved FROM stock_positions WHERE sku = 'SKU-A' AND location_id = 'STORE-NYC'"
        ) == (3, 0)
    assert (await client.post("/v1/orders/bopis-2/cancel", headers=ADMIN)).status_code == 409


async def test_concurrent_checkouts_for_the_last_units_re_solve_instead_of_overselling(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 4)
    await receive(client, "SKU-A", "STORE-PHL", 3)
    answers = await asyncio.gather(
        *(client.post("/v1/orders", json=order(f"race-{i}", ("SKU-A", 1)), headers=ADMIN) for i in range(20))
    )
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers if a.status_code >= 500]
    placed = [a.json() for a in answers if a.status_code == 201]
    allocated = sum(1 for p in placed if p["status"] == "allocated")
    assert allocated <= 7
    assert await _total_reserved(db) == allocated
    if all(a.status_code == 201 for a in answers):
        assert allocated == 7  # nothing gave up, so every unit found an order
    assert (await check_ledger(db))[1] == 0


async def test_a_unit_taken_between_solve_and_reserve_leads_to_a_re_solve(client, db, monkeypatch):
    """A competing checkout takes the last unit right after this order's first solve."""
    from engine.core.model import Caller, Role
    from engine.core.reservations import Line
    from engine.services import orders as service
    from engine.services import reservations

    competitor = Caller(key_id="other-checkout", role=Role.CHECKOUT)

    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 1)
    await receive(client, "SKU-A", "STORE-PHL", 1)
    real_solve, solves = service._solve, []

    async def solve_then_lose_the_race(fn, *args, **kwargs):
        plan = await real_solve(fn, *args, **kwargs)
        if not solves:
            [chosen] = plan.fulfillments
            app_pool = client.app.state.pool  # this runs on the app's event loop
            await reservations.create(
                app_pool,
                competitor,
                [Line(sku="SKU-A", location_id=chosen.location_id, quantity=1)],
                ttl_seconds=600,
                reference="other-cart",
                idem_key=None,
            )
        solves.append(plan)
        return plan

    monkeypatch.setattr(service, "_solve", solve_then_lose_the_race)
    r = await client.post("/v1/orders", json=order("web-race", ("SKU-A", 1)), headers=ADMIN)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["explanation"]["attempts"] == 2 and len(solves) == 2
    taken = solves[0].fulfillments[0].location_id
    [f] = body["fulfillments"]
    assert f["location_id"] != taken  # the second solve saw fresh stock
    assert await _total_reserved(db) == 2  # the competitor's unit and this order's: no oversell
    assert (await check_ledger(db))[1] == 0


async def test_bad_order_bodies_are_4xx(client, db):
    await build_network(client)
    for body, code in [
        (order("x-1", ("SKU-A", 0)), 400),
        (order("x-2", ("NOPE", 1)), 422),
        (order("x-3", ("SKU-A", 1), method="pickup"), 400),
        ({**order("x-4", ("SKU-A", 1)), "pickup_location_id": "STORE-NYC"}, 400),
        (order("x-5", ("SKU-A", 1), method="pickup", pickup="DC-NJ"), 422),
        ({**order("x-6", ("SKU-A", 1)), "lines": [{"line_id": "1", "sku": "SKU-A", "quantity": 1}] * 2}, 400),
    ]:
        r = await client.post("/v1/orders", json=body, headers=ADMIN)
        assert r.status_code == code, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert await _total_reserved(db) == 0
