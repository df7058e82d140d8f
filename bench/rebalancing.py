"""Rebalancing on the 10M-position network: wall time, and transfer cost against the
stockout units it avoids.

    uv run --extra dev python -m bench.rebalancing [--size large] [--mip-skus 300]

Demand (set once, kept in the benchmark database): at every store position that holds
stock, on_hand / cover days with cover drawn (stably per position) between 4 and 34 days;
at one in four store positions without stock, 0.05-0.35 units a day (a SKU that sells
there but is out). Warehouses have no direct demand, so all their available stock may be
sent. Target cover 14 days, stockout cost 10 per unit, lanes 0.10 + 0.0005/km per unit.

Runs: per-unit lanes over the whole network (min-cost flow per SKU), then the same with
a fixed cost of 5 per transfer (a MIP per SKU) over the first `--mip-skus` SKUs that need
one. Reported with the same-run baseline of doing nothing (stockout units the targets
leave uncovered) and the value of each avoided unit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from bench.common import database, table
from engine.services import rebalancing, runs
from engine.store import meta
from engine.store import runs as runs_store
from engine.store.db import create_pool

DEMAND_SQL = """
INSERT INTO demand (sku, location_id, units_per_day)
SELECT p.sku, p.location_id,
       CASE WHEN p.on_hand > 0
            THEN p.on_hand / (4 + 30 * ((hashtext(p.sku || p.location_id) & 65535) / 65535.0))
            ELSE 0.05 + 0.3 * ((hashtext(p.location_id || p.sku) & 65535) / 65535.0) END
FROM stock_positions p JOIN locations l ON l.location_id = p.location_id AND l.kind = 'store'
WHERE p.on_hand > 0 OR hashtext(p.sku || 'out' || p.location_id) % 4 = 0
ON CONFLICT DO NOTHING
"""


async def ensure_demand(pool) -> int:  # noqa: ANN001
    async with pool.acquire() as conn:
        if await meta.get_setting(conn, "bench-demand") is None:
            t = time.perf_counter()
            await conn.execute("TRUNCATE demand")
            await conn.execute(DEMAND_SQL, timeout=900)
            await conn.execute("ANALYZE demand")
            await meta.set_setting(conn, "bench-demand", {"version": 1})
            print(f"demand set in {time.perf_counter() - t:.1f} s", flush=True)
        return await conn.fetchval("SELECT count(*) FROM demand")


async def one_run(pool, name: str, options: rebalancing.RunOptions) -> dict:  # noqa: ANN001
    t = time.perf_counter()
    run_id = await rebalancing.run_now(pool, "bench", options)
    wall = time.perf_counter() - t
    async with pool.acquire() as conn:
        row = await runs_store.get(conn, "rebalancing", run_id)
    if row["status"] != "proposed":
        raise SystemExit(f"{name}: run {run_id} ended {row['status']}: {row['error']}")
    s = row["summary"]
    return {
        "run": name,
        "positions read": s["positions_read"],
        "SKUs solved": s["skus_solved"],
        "proposals": s["proposals"],
        "units moved": s["units"],
        "transfer cost": s["transfer_cost"],
        "stockouts avoided": s["stockout_units_avoided"],
        "cost/unit avoided": s["transfer_cost"] / max(1, s["stockout_units_avoided"]),
        "net saving": s["stockout_units_avoided"] * options.stockout_cost_per_unit - s["transfer_cost"],
        "read s": s["read_ms"] / 1000,
        "solve s": s["solve_ms"] / 1000,
        "write s": s["write_ms"] / 1000,
        "wall s": wall,
        "solvers": ", ".join(f"{k} {v}" for k, v in sorted(s["solvers"].items())),
    }


async def main_async(url: str, mip_skus: int) -> None:
    pool = await create_pool(url, min_size=2, max_size=4)
    try:
        rows_demand = await ensure_demand(pool)
        async with pool.acquire() as conn:
            positions = await conn.fetchval("SELECT count(*) FROM stock_positions")
        flow = await one_run(pool, "per-unit lanes (min-cost flow)", rebalancing.RunOptions(demand="given"))
        async with pool.acquire() as conn:
            skus = [
                r[0]
                for r in await conn.fetch(
                    "SELECT DISTINCT sku FROM rebalancing_proposals WHERE run_id = "
                    "(SELECT run_id FROM rebalancing_runs ORDER BY started_at DESC LIMIT 1) ORDER BY sku LIMIT $1",
                    mip_skus,
                )
            ]
        mip_flow = await one_run(
            pool, f"same {len(skus)} SKUs, per-unit lanes", rebalancing.RunOptions(demand="given", skus=skus)
        )
        mip = await one_run(
            pool,
            f"same {len(skus)} SKUs, fixed cost 5 per transfer (MIP)",
            rebalancing.RunOptions(demand="given", skus=skus, lanes=rebalancing.LaneCosts(fixed_cost=5.0)),
        )
    finally:
        await pool.close()
    print(f"\nRebalancing: {positions:,} positions, {rows_demand:,} demand rows, {os.cpu_count()} cores")
    print("read, solve and write are each summed over SKU ranges, which run overlapped (pipelined over")
    print(f"{runs.solver_processes()} solver processes); wall is the run's own time, from trigger to finish.")
    rows = [flow, mip_flow, mip]
    print(table(rows, list(rows[0])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="large")
    ap.add_argument("--mip-skus", type=int, default=300)
    args = ap.parse_args()
    url, pg = database(args.size)
    try:
        asyncio.run(main_async(url, args.mip_skus))
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
