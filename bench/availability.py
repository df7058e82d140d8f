"""Availability for a 10-SKU basket with a pickup radius: the service over HTTP against the
same SQL issued directly with asyncpg at the same concurrency (the ceiling).

    uv run --extra dev python -m bench.availability [--size large] [--clients 32] [--seconds 20]

Baskets draw SKUs by the network's Zipf-like popularity and shoppers from the 99 metros by
population (seeded), with a 50 km pickup radius.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import os
import random
from urllib.parse import urlencode

import asyncpg

from bench.common import RawClient, Service, database, run_load, table
from engine.config import FIXTURES_DIR
from engine.core.geo import bounding_box
from engine.services.reservations import sweep_expired
from engine.store import availability as store
from engine.store.db import create_pool


def baskets(n: int, n_skus: int, seed: int = 42) -> list[dict]:
    rng = random.Random(seed)
    with open(FIXTURES_DIR / "us_metros.csv") as f:
        metros = [(float(r["Latitude"]), float(r["Longitude"]), int(r["Population"])) for r in csv.DictReader(f)]
    cum_weights = list(itertools.accumulate(1 / r for r in range(1, n_skus + 1)))
    ranks_pool = range(1, n_skus + 1)
    metro_cum = list(itertools.accumulate(m[2] for m in metros))
    digits = 6 if n_skus >= 10_000 else 5  # as fixtures.generate numbers them
    out = []
    for _ in range(n):
        lat, lon, _pop = rng.choices(metros, cum_weights=metro_cum)[0]
        ranks = set()
        while len(ranks) < 10:
            ranks.add(rng.choices(ranks_pool, cum_weights=cum_weights)[0])
        skus = [f"SKU-{r:0{digits}d}" for r in sorted(ranks)]
        out.append(
            {
                "skus": skus,
                "lat": round(lat + rng.uniform(-0.2, 0.2), 4),
                "lon": round(lon + rng.uniform(-0.2, 0.2), 4),
                "radius_km": 50.0,
            }
        )
    return out


async def settle(url: str) -> int:
    """Release expired holds first, so every phase reads the same data (the service's own
    sweep would otherwise release them during a later phase)."""
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        return await sweep_expired(pool)
    finally:
        await pool.close()


async def sql_ceiling(url: str, reqs: list[dict], clients: int, seconds: float) -> dict:
    pool = await asyncpg.create_pool(url, min_size=clients, max_size=clients)

    def worker(cid: int):
        async def call(i: int) -> None:
            q = reqs[(cid * 7919 + i) % len(reqs)]
            box = bounding_box(q["lat"], q["lon"], q["radius_km"])
            async with pool.acquire() as conn:
                await store.fetch(
                    conn, q["skus"], lat=q["lat"], lon=q["lon"], radius_km=q["radius_km"], box=box, pickup_limit=20
                )

        return call

    await run_load(clients, 2, worker)  # warm-up
    result = await run_load(clients, seconds, worker)
    await pool.close()
    return result


async def http(port: int, reqs: list[dict], clients: int, seconds: float) -> dict:
    targets = [
        "/v1/availability?"
        + urlencode([("sku", s) for s in q["skus"]] + [("lat", q["lat"]), ("lon", q["lon"]), ("radius_km", 50)])
        for q in reqs
    ]
    conns = [RawClient(port) for _ in range(clients)]

    def worker(cid: int):
        async def call(i: int) -> None:
            status, _ = await conns[cid].request("GET", targets[(cid * 7919 + i) % len(targets)])
            if status != 200:
                raise RuntimeError(f"availability answered {status}")

        return call

    # Every basket once, then 2 s: the service's availability view is warm, as it is in a
    # service that has been up for a while (its misses after that are reported apart).
    for i in range(0, len(targets), clients):
        await asyncio.gather(*(conns[j].request("GET", t) for j, t in enumerate(targets[i : i + clients])))
    await run_load(clients, 2, worker)
    result = await run_load(clients, seconds, worker)
    for c in conns:
        await c.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="large", choices=["demo", "large"])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    url, pg = database(args.size)
    n_skus = 50_000 if args.size == "large" else 2_000
    reqs = baskets(5_000, n_skus)
    rows = []
    try:
        swept = asyncio.run(settle(url))
        if swept:
            print(f"released {swept} expired holds before measuring")
        ceiling = asyncio.run(sql_ceiling(url, reqs, args.clients, args.seconds))
        rows.append({"path": "asyncpg, same SQL (ceiling)", **ceiling, "ratio": 1.0})
        for workers in args.workers:
            svc = Service(url, workers=workers, pool_max=args.clients)
            try:
                res = asyncio.run(http(svc.port, reqs, args.clients, args.seconds))
            finally:
                svc.stop()
            rows.append({"path": f"HTTP GET, --workers {workers}", **res, "ratio": res["rps"] / ceiling["rps"]})
    finally:
        if pg is not None and pg.started_by_us:
            pg.stop()
    print(
        f"\navailability, 10-SKU basket, 50 km pickup radius, {args.size} network, "
        f"{args.clients} clients, {args.seconds:.0f} s each, {os.cpu_count()} cores"
    )
    print(table(rows, ["path", "requests", "rps", "p50", "p99", "ratio"]))
    print("(rps = requests/s; p50/p99 in ms, client side; ratio = rps / ceiling rps)")


if __name__ == "__main__":
    main()
