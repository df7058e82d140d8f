"""Rebalancing runs, transfers and receipts against a real database, through the HTTP API."""

import asyncio
from uuid import UUID

from engine.services import rebalancing, runs
from engine.services.stock import check_ledger
from tests.helpers import ADMIN, build_network, make_key, receive


async def wait_for(client, run_id, limit_s=60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        r = await client.get(f"/v1/rebalancing-runs/{run_id}", headers=ADMIN)
        assert r.status_code == 200, r.text
        run = r.json()
        if run["status"] not in ("running", "applying"):
            return run
        assert loop.time() < deadline, run
        await asyncio.sleep(0.1)


async def propose(client, headers=ADMIN, **options):
    r = await client.post("/v1/rebalancing-runs", json=options or None, headers=headers)
    assert r.status_code == 202, r.text
    return await wait_for(client, r.json()["run_id"])


async def apply(client, run_id, headers=ADMIN):
    r = await client.post(f"/v1/rebalancing-runs/{run_id}/apply", headers=headers)
    assert r.status_code == 202, r.text
    return await wait_for(client, run_id)


async def position(db, sku, loc):
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT on_hand, reserved, in_transit_in FROM stock_positions WHERE sku = $1 AND location_id = $2", sku, loc
        )
    return tuple(row) if row else (0, 0, 0)


async def surplus_and_demand(client):
    """DC-NJ holds 20 of SKU-A and sells 1 a day: 14 days' cover is 14, so 6 may leave.
    STORE-NYC has none and sells 3 a day: it lacks 42."""
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 20)
    r = await client.put(
        "/v1/demand",
        json={
            "demand": [
                {"sku": "SKU-A", "location_id": "DC-NJ", "units_per_day": 1},
                {"sku": "SKU-A", "location_id": "STORE-NYC", "units_per_day": 3},
            ]
        },
        headers=ADMIN,
    )
    assert r.status_code == 200 and r.json() == {"rows": 2}, r.text


async def test_surplus_at_a_and_demand_at_b_yields_a_transfer_no_larger_than_the_surplus(client, db):
    await surplus_and_demand(client)
    planner = await make_key(client, "planner")
    run = await propose(client, planner, demand="given")
    assert run["status"] == "proposed", run
    [p] = run["proposals"]
    assert (p["from_location_id"], p["to_location_id"], p["sku"], p["quantity"]) == ("DC-NJ", "STORE-NYC", "SKU-A", 6)
    assert p["stockout_units_avoided"] == 6 and p["cost"] > 0 and p["status"] == "proposed"
    assert "DC-NJ" in p["reason"] and "STORE-NYC" in p["reason"]
    s = run["summary"]
    assert s["proposals"] == 1 and s["units"] == 6 and s["stockout_units_avoided"] == 6
    assert await position(db, "SKU-A", "DC-NJ") == (20, 0, 0)  # proposing moves nothing


async def test_applying_and_receiving_moves_stock_through_in_transit(client, db):
    await surplus_and_demand(client)
    run = await propose(client, demand="given")
    done = await apply(client, run["run_id"])
    assert done["status"] == "applied" and done["summary"]["apply"]["transfers"] == 1, done
    [p] = done["proposals"]
    assert p["status"] == "applied" and p["transfer_id"]
    assert await position(db, "SKU-A", "DC-NJ") == (14, 0, 0)
    assert await position(db, "SKU-A", "STORE-NYC") == (0, 0, 6)
    assert (await check_ledger(db))[1] == 0

    other_store = await make_key(client, "pos", "STORE-PHL")
    r = await client.post(f"/v1/transfers/{p['transfer_id']}/receive", headers=other_store)
    assert r.status_code == 403
    nyc = await make_key(client, "pos", "STORE-NYC")
    r = await client.post(f"/v1/transfers/{p['transfer_id']}/receive", headers=nyc)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "received" and r.json()["received_at"]
    assert await position(db, "SKU-A", "STORE-NYC") == (6, 0, 0)
    again = await client.post(f"/v1/transfers/{p['transfer_id']}/receive", headers=nyc)
    assert again.status_code == 200 and again.json()["received_at"] == r.json()["received_at"]
    assert await position(db, "SKU-A", "STORE-NYC") == (6, 0, 0)
    async with db.acquire() as conn:
        kinds = await conn.fetch(
            "SELECT kind, location_id, delta_on_hand, delta_in_transit FROM stock_movements "
            "WHERE kind LIKE 'transfer%' ORDER BY movement_id"
        )
    assert [tuple(k) for k in kinds] == [
        ("transfer_out", "DC-NJ", -6, 0),
        ("transfer_out", "STORE-NYC", 0, 6),
        ("transfer_in", "STORE-NYC", 6, -6),
    ]
    assert (await check_ledger(db))[1] == 0

    # Nothing new: the in-transit units count toward the store's cover; a new run proposes
    # only what is still short, from what is still surplus (none).
    rerun = await propose(client, demand="given")
    assert rerun["proposals"] == [] and rerun["summary"]["proposals"] == 0
    assert (await client.post(f"/v1/rebalancing-runs/{run['run_id']}/apply", headers=ADMIN)).status_code == 409


async def test_retries_with_an_idempotency_key_start_and_apply_once(client, db):
    await surplus_and_demand(client)
    key = {**ADMIN, "Idempotency-Key": "rebalance-1"}
    first = await client.post("/v1/rebalancing-runs", json={"demand": "given"}, headers=key)
    assert first.status_code == 202, first.text
    again = await client.post("/v1/rebalancing-runs", json={"demand": "given"}, headers=key)
    assert again.status_code == 202 and again.content == first.content
    run = await wait_for(client, first.json()["run_id"])
    assert run["status"] == "proposed"
    other = await client.post("/v1/rebalancing-runs", headers=key)  # another body, same key
    assert other.status_code == 409, other.text
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rebalancing_runs") == 1

    apply_key = {**ADMIN, "Idempotency-Key": "apply-1"}
    url = f"/v1/rebalancing-runs/{run['run_id']}/apply"
    answers = [await client.post(url, headers=apply_key) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202] and answers[0].content == answers[1].content
    done = await wait_for(client, run["run_id"])
    assert done["status"] == "applied" and done["summary"]["apply"]["transfers"] == 1, done
    assert (await client.post(url, headers=apply_key)).content == answers[0].content
    assert (await client.post(url, headers=ADMIN)).status_code == 409  # without the key: already applied
    assert await position(db, "SKU-A", "DC-NJ") == (14, 0, 0)
    assert (await check_ledger(db))[1] == 0


async def test_sku_ranges_planned_apart_give_the_plan_of_one_range(client, db, monkeypatch):
    """A run plans ranges of SKUs in parallel and writes them in SKU order: proposals are
    numbered 1..n without gaps, and equal those of a run that plans every SKU at once."""
    await build_network(client)
    demand = []
    for i, sku in enumerate(["SKU-A", "SKU-B", "SKU-C"]):
        await receive(client, sku, "DC-NJ", 20 + 10 * i)
        await receive(client, sku, "STORE-PHL", 30)
        demand += [
            {"sku": sku, "location_id": "DC-NJ", "units_per_day": 1},
            {"sku": sku, "location_id": "STORE-PHL", "units_per_day": 1},
            {"sku": sku, "location_id": "STORE-NYC", "units_per_day": 3 + i},
        ]
    r = await client.put("/v1/demand", json={"demand": demand}, headers=ADMIN)
    assert r.status_code == 200, r.text

    def plan_of(run):
        return [{k: v for k, v in p.items() if k != "transfer_id"} for p in run["proposals"]]

    with monkeypatch.context() as one_process:
        one_process.setattr(runs, "solver_processes", lambda: 1)
        whole = await propose(client, demand="given")
    # By default every solver process gets a range, even when few SKUs need planning.
    spread = await propose(client, demand="given")
    assert spread["summary"]["sku_ranges"] == min(3, runs.solver_processes())
    assert plan_of(spread) == plan_of(whole)
    monkeypatch.setattr(rebalancing, "SKUS_PER_SHARD", 1)
    apart = await propose(client, demand="given")
    assert apart["summary"]["sku_ranges"] == 3 and whole["summary"]["sku_ranges"] == 1
    assert [p["proposal_no"] for p in apart["proposals"]] == list(range(1, len(apart["proposals"]) + 1))
    assert {p["sku"] for p in apart["proposals"]} == {"SKU-A", "SKU-B", "SKU-C"}
    assert [p["sku"] for p in apart["proposals"]] == sorted(p["sku"] for p in apart["proposals"])
    assert plan_of(apart) == plan_of(whole)
    keys = ("positions_read", "skus_solved", "proposals", "units", "transfer_cost", "stockout_units_avoided")
    assert {k: apart["summary"][k] for k in keys} == {k: whole["summary"][k] for k in keys}


async def test_a_proposal_whose_stock_is_gone_is_skipped_and_nothing_oversells(client, db):
    await surplus_and_demand(client)
    run = await propose(client, demand="given")
    checkout = await make_key(client, "checkout")
    r = await client.post(
        "/v1/reservations", json={"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 16}]}, headers=checkout
    )
    assert r.status_code == 201, r.text  # 4 left: the 6 proposed are no longer there
    done = await apply(client, run["run_id"])
    [p] = done["proposals"]
    assert p["status"] == "skipped" and "only 4 available at DC-NJ" in p["skip_reason"]
    assert done["summary"]["apply"] == {**done["summary"]["apply"], "transfers": 0, "skipped": 1}
    assert await position(db, "SKU-A", "DC-NJ") == (20, 16, 0)
    assert await position(db, "SKU-A", "STORE-NYC") == (0, 0, 0)
    assert (await check_ledger(db))[1] == 0


async def test_demand_derived_from_recent_sales(client, db):
    await build_network(client)
    await receive(client, "SKU-B", "DC-NJ", 100)
    await receive(client, "SKU-B", "STORE-PHL", 60)
    r = await client.post(
        "/v1/stock/movements",
        json={"movements": [{"sku": "SKU-B", "location_id": "STORE-PHL", "kind": "sale", "quantity": 56}]},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    # 56 sold in 28 days: 2 a day, 28 for 14 days' cover; 4 left, so 24 short. The DC sold
    # nothing, so all 100 may leave.
    run = await propose(client, demand="history")
    [p] = run["proposals"]
    assert (p["from_location_id"], p["to_location_id"], p["quantity"]) == ("DC-NJ", "STORE-PHL", 24)


async def test_a_lane_dearer_than_the_stockout_proposes_nothing(client, db):
    await surplus_and_demand(client)
    run = await propose(client, demand="given", stockout_cost_per_unit=0.05)
    assert run["proposals"] == []


async def test_fixed_lane_costs_solve_a_mip(client, db):
    await surplus_and_demand(client)
    run = await propose(client, demand="given", lanes={"fixed_cost": 20.0})
    [p] = run["proposals"]
    assert p["quantity"] == 6 and p["cost"] > 20
    assert run["summary"]["solvers"] == {"cp-sat:optimal": 1}
    none = await propose(client, demand="given", lanes={"fixed_cost": 100.0})
    assert none["proposals"] == []  # 6 units x 10 saved never pays a 100 transfer


async def test_a_rebalancing_run_triggered_twice_at_once_runs_once(client, db):
    await surplus_and_demand(client)
    answers = await asyncio.gather(*(client.post("/v1/rebalancing-runs", headers=ADMIN) for _ in range(3)))
    assert sorted(a.status_code for a in answers) == [202, 409, 409]
    started = next(a.json() for a in answers if a.status_code == 202)
    await wait_for(client, started["run_id"])
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rebalancing_runs") == 1


async def test_bad_planner_input_is_refused_whole(client, db):
    await build_network(client)
    r = await client.put(
        "/v1/demand",
        json={
            "demand": [
                {"sku": "SKU-A", "location_id": "DC-NJ", "units_per_day": 1},
                {"sku": "SKU-NOPE", "location_id": "DC-NJ", "units_per_day": 1},
            ]
        },
        headers=ADMIN,
    )
    assert r.status_code == 422 and "SKU-NOPE" in r.text
    for body in (
        {"demand": [{"sku": "SKU-A", "location_id": "DC-NJ", "units_per_day": -1}]},
        {"demand": []},
        {"demand": [{"sku": "SKU-A", "location_id": "DC-NJ", "units_per_day": 1}] * 2},
    ):
        r = await client.put("/v1/demand", json=body, headers=ADMIN)
        assert r.status_code in (400, 422), (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM demand") == 0
    for body in ({"target_days_cover": 0}, {"demand": "guess"}, {"lanes": {"bogus": 1}}):
        r = await client.post("/v1/rebalancing-runs", json=body, headers=ADMIN)
        assert r.status_code in (400, 422), (body, r.text)
    checkout = await make_key(client, "checkout")
    assert (await client.post("/v1/rebalancing-runs", headers=checkout)).status_code == 403
    assert (await client.put("/v1/demand", json={"demand": []}, headers=checkout)).status_code in (400, 403)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rebalancing_runs") == 0
    r = await client.post(f"/v1/transfers/{UUID(int=1)}/receive", headers=ADMIN)
    assert r.status_code == 404
