"""Routing runs (batch re-brokering) against a real database, through the HTTP API."""

import asyncio
from uuid import UUID

import msgspec

from engine.core.model import Caller, Role
from engine.core.reservations import Line
from engine.core.routing import CostModel
from engine.errors import OutOfStock
from engine.services import reservations, routing_runs
from engine.services.stock import check_ledger
from engine.store.db import create_pool
from tests.helpers import ADMIN, build_network, make_key, receive
from tests.integration.test_orders import order


async def wait_for(client, run_id, headers=ADMIN, limit_s=60.0):
    """Poll the run until it is no longer running; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        r = await client.get(f"/v1/routing-runs/{run_id}", headers=headers)
        assert r.status_code == 200, r.text
        run = r.json()
        if run["status"] != "running":
            return run
        assert loop.time() < deadline, f"run still running: {run}"
        await asyncio.sleep(0.1)


async def start_run(client, headers=ADMIN, **options):
    r = await client.post("/v1/routing-runs", json=options or None, headers=headers)
    assert r.status_code == 202, r.text
    return await wait_for(client, r.json()["run_id"], headers)


async def fulfillments(client, order_id):
    r = await client.get(f"/v1/orders/{order_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


async def positions(db):
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT p.sku, p.location_id, p.on_hand, p.reserved, coalesce(p.safety_stock, l.safety_stock) AS safety "
            "FROM stock_positions p JOIN locations l USING (location_id) ORDER BY 1, 2"
        )
    return {(r["sku"], r["location_id"]): (r["on_hand"], r["reserved"], r["safety"]) for r in rows}


async def split_scenario(client):
    """Online, order 1 (A) takes the DC's only A; order 2 (A + B) then needs A from
    Philadelphia and B from the DC: two shipments. Jointly, order 1 ships A from
    Philadelphia and order 2 ships both from the DC: one shipment each."""
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 1)
    await receive(client, "SKU-A", "STORE-PHL", 1)
    await receive(client, "SKU-B", "DC-NJ", 5)
    checkout = await make_key(client, "checkout")
    first = await client.post("/v1/orders", json=order("web-1", ("SKU-A", 1), allow_split=True), headers=checkout)
    second = await client.post(
        "/v1/orders", json=order("web-2", ("SKU-A", 1), ("SKU-B", 1), allow_split=True), headers=checkout
    )
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert [f["location_id"] for f in first.json()["fulfillments"]] == ["DC-NJ"]
    assert sorted(f["location_id"] for f in second.json()["fulfillments"]) == ["DC-NJ", "STORE-PHL"]
    return checkout


async def test_a_run_finds_the_cheaper_joint_plan_and_moves_the_holds(client, db):
    await split_scenario(client)
    cost_before = (await fulfillments(client, "web-1"))["total_cost"] + (await fulfillments(client, "web-2"))[
        "total_cost"
    ]
    planner = await make_key(client, "planner")
    run = await start_run(client, planner)

    assert run["status"] == "succeeded", run
    s = run["summary"]
    assert s["orders_changed_applied"] == 2 and s["orders_skipped"] == 0
    assert s["splits_removed_applied"] == 1 and s["shipments_before"] == 3 and s["shipments_after_planned"] == 2
    assert s["cost_after_applied"] < s["cost_before"] - 8
    assert s["lp_lower_bound"] is not None and s["lp_lower_bound"] <= s["cost_after_planned"] + 1e-6
    assert run["triggered_by"] and run["finished_at"]
    by_order = {c["order_id"]: c for c in run["changes"]}
    assert by_order["web-1"]["applied"] and by_order["web-2"]["applied"]
    assert "moved together with web-2" in by_order["web-1"]["reason"]

    one, two = await fulfillments(client, "web-1"), await fulfillments(client, "web-2")
    live = lambda o: [f for f in o["fulfillments"] if f["status"] == "open"]  # noqa: E731
    assert [f["location_id"] for f in live(one)] == ["STORE-PHL"]
    assert [f["location_id"] for f in live(two)] == ["DC-NJ"]
    assert sorted(f["status"] for f in two["fulfillments"]) == ["open", "rerouted", "rerouted"]
    assert one["total_cost"] + two["total_cost"] < cost_before - 8
    assert one["explanation"]["routing_run"]["run_id"] == run["run_id"]

    pos = await positions(db)
    assert pos[("SKU-A", "DC-NJ")][1] == 1 and pos[("SKU-A", "STORE-PHL")][1] == 1 and pos[("SKU-B", "DC-NJ")][1] == 1
    assert (await check_ledger(db))[1] == 0

    again = await start_run(client, planner)
    assert again["status"] == "succeeded"
    assert again["summary"]["orders_changed_planned"] == 0 and again["changes"] == []
    assert await positions(db) == pos


async def test_apply_false_plans_without_changing_anything(client, db):
    await split_scenario(client)
    before = await positions(db)
    run = await start_run(client, apply=False)
    assert run["summary"]["orders_changed_planned"] == 2 and run["summary"]["orders_changed_applied"] == 0
    assert all(not c["applied"] for c in run["changes"])
    assert await positions(db) == before


async def test_a_deferred_order_waits_unheld_until_a_run_routes_it(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 3)
    checkout = await make_key(client, "checkout")
    r = await client.post("/v1/orders", json=order("web-9", ("SKU-A", 2), defer=True), headers=checkout)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued" and r.json()["fulfillments"] == []
    assert (await positions(db))[("SKU-A", "DC-NJ")][1] == 0

    run = await start_run(client)
    assert run["summary"]["inputs"]["queued_orders"] == 1 and run["summary"]["queued_routed"] == 1
    placed = await fulfillments(client, "web-9")
    assert placed["status"] == "allocated"
    [f] = placed["fulfillments"]
    assert f["location_id"] == "DC-NJ" and f["status"] == "open" and f["reservation_id"]
    assert (await positions(db))[("SKU-A", "DC-NJ")][1] == 2
    assert (await check_ledger(db))[1] == 0


async def test_a_queued_order_can_be_cancelled_and_is_then_left_alone(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 3)
    r = await client.post("/v1/orders", json=order("web-10", ("SKU-A", 1), defer=True), headers=ADMIN)
    assert r.status_code == 201
    assert (await client.post("/v1/orders/web-10/cancel", headers=ADMIN)).json()["status"] == "cancelled"
    run = await start_run(client)
    assert run["summary"]["inputs"]["orders"] == 0 and run["changes"] == []


async def test_a_run_triggered_twice_at_once_runs_once(client, db):
    await split_scenario(client)
    answers = await asyncio.gather(*(client.post("/v1/routing-runs", headers=ADMIN) for _ in range(4)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [202, 409, 409, 409], [r.text for r in answers]
    started = next(r.json() for r in answers if r.status_code == 202)
    for refused in (r for r in answers if r.status_code == 409):
        assert refused.headers["content-type"].startswith("application/problem+json")
    await wait_for(client, started["run_id"])
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM routing_runs") == 1


async def test_a_retried_trigger_with_its_idempotency_key_gets_the_first_run(client, db):
    """A planner's client that retries after a timeout must not start a second run, nor be
    told 409 about its own run: it gets the first answer, at once or while the run is going."""
    await split_scenario(client)
    key = {**ADMIN, "Idempotency-Key": "nightly-2026-11-23"}
    answers = await asyncio.gather(*(client.post("/v1/routing-runs", headers=key) for _ in range(3)))
    assert [r.status_code for r in answers] == [202, 202, 202], [r.text for r in answers]
    assert len({r.content for r in answers}) == 1
    run_id = answers[0].json()["run_id"]
    await wait_for(client, run_id)
    again = await client.post("/v1/routing-runs", headers=key)
    assert again.status_code == 202 and again.content == answers[0].content
    other = await client.post("/v1/routing-runs", json={"apply": False}, headers=key)
    assert other.status_code == 409 and other.json()["idempotency_key"] == key["Idempotency-Key"], other.text
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM routing_runs") == 1
    fresh = await client.post("/v1/routing-runs", headers={**ADMIN, "Idempotency-Key": "nightly-2026-11-24"})
    assert fresh.status_code == 202 and fresh.json()["run_id"] != run_id
    await wait_for(client, fresh.json()["run_id"])


async def test_concurrent_triggers_from_separate_pools_run_once(client, db, database_url):
    """Two 'processes' (separate pools, so separate sessions) start a run at the same moment."""
    await split_scenario(client)
    pools = [await create_pool(database_url, min_size=2, max_size=4) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(
                routing_runs.run_now(p, f"proc-{i}", routing_runs.RunOptions(), CostModel())
                for i, p in enumerate(pools)
            ),
            return_exceptions=True,
        )
    finally:
        for p in pools:
            await p.close()
    assert sum(1 for x in results if not isinstance(x, Exception)) == 1, results
    assert sum(1 for x in results if type(x).__name__ == "Conflict") == 1, results


async def test_only_planners_and_admins_run_routing(client, db):
    await build_network(client)
    for role in ("checkout", "pos"):
        key = await make_key(client, role, "STORE-NYC" if role == "pos" else None)
        r = await client.post("/v1/routing-runs", headers=key)
        assert r.status_code == 403, r.text
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM routing_runs") == 0
    r = await client.post("/v1/routing-runs", json={"time_limit_s": -1}, headers=ADMIN)
    assert r.status_code in (400, 422) and r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/v1/routing-runs", json={"bogus": 1}, headers=ADMIN)
    assert r.status_code in (400, 422)
    assert (await client.get("/v1/routing-runs/00000000-0000-0000-0000-000000000000", headers=ADMIN)).status_code == 404


async def test_concurrent_checkout_during_a_run_never_oversells(client, db):
    """While the run reads, solves and moves holds, 16 checkouts keep taking and giving back
    the same units. Whatever wins, no position ever holds more than it has, every group is
    applied whole or skipped whole, and the ledger re-sums exactly."""
    await split_scenario(client)
    await receive(client, "SKU-A", "DC-NJ", 1)
    await receive(client, "SKU-A", "STORE-PHL", 1)
    shopper_key = Caller(key_id="shopper", role=Role.CHECKOUT)
    done = asyncio.Event()
    codes: list[int] = []

    async def shopper(i: int) -> None:
        # Straight at the service on the test's own pool: real concurrent connections
        # against the run, which the app executes on its own event loop.
        while not done.is_set():
            loc = "DC-NJ" if i % 2 else "STORE-PHL"
            try:
                _, body = await reservations.create(
                    db,
                    shopper_key,
                    [Line(sku="SKU-A", location_id=loc, quantity=1)],
                    ttl_seconds=60,
                    reference=f"cart-{i}",
                    idem_key=None,
                )
            except OutOfStock:
                codes.append(409)
                continue
            codes.append(201)
            await reservations.release(db, shopper_key, UUID(msgspec.json.decode(body)["reservation_id"]), None)

    shoppers = [asyncio.create_task(shopper(i)) for i in range(16)]
    await asyncio.sleep(0.05)
    r = await client.post("/v1/routing-runs", headers=ADMIN)
    assert r.status_code == 202
    async with db.acquire() as conn:
        status = "running"
        while status == "running":  # polled: the run lives on the app's loop, not this one  # noqa: ASYNC110
            await asyncio.sleep(0.05)
            status = await conn.fetchval("SELECT status FROM routing_runs WHERE run_id = $1", UUID(r.json()["run_id"]))
    done.set()
    await asyncio.gather(*shoppers)
    run = await wait_for(client, r.json()["run_id"])

    assert run["status"] == "succeeded", run
    assert set(codes) <= {201, 409} and len(codes) >= 16 and 201 in codes
    for (sku, loc), (on_hand, reserved, safety) in (await positions(db)).items():
        assert reserved <= on_hand - safety, (sku, loc, on_hand, reserved)
    async with db.acquire() as conn:
        held = await conn.fetchval("SELECT coalesce(sum(quantity), 0) FROM reservation_lines WHERE state = 'active'")
        total_reserved = await conn.fetchval("SELECT sum(reserved) FROM stock_positions")
    assert held == total_reserved == 3  # the two orders' units, wherever they ended up; shoppers gave theirs back
    # Which plan is cheapest depends on what the shoppers held when the run read the stock
    # (both orders move, only order 2's A line, or nothing when they held the spare units):
    # every group is applied whole or skipped whole, and each order ends where its change
    # says, or where it was.
    outcome: dict[int, set[bool]] = {}
    for c in run["changes"]:
        outcome.setdefault(c["group"], set()).add(c["applied"])
    assert all(len(applied) == 1 for applied in outcome.values()), run["changes"]
    expect = {"web-1": ["DC-NJ"], "web-2": ["DC-NJ", "STORE-PHL"]}
    for c in run["changes"]:
        expect[c["order_id"]] = sorted(f["location_id"] for f in (c["after"] if c["applied"] else c["before"]))
    for oid, locations in expect.items():
        o = await fulfillments(client, oid)
        assert o["status"] == "allocated" and o["unallocated"] == []
        assert sorted(f["location_id"] for f in o["fulfillments"] if f["status"] == "open") == locations
    assert (await check_ledger(db))[1] == 0
