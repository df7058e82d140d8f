"""`POST /v1/orders` over HTTP on the demo network: 3-line ship orders to shoppers in the
99 metros (by population), SKUs by popularity, seeded; latency and throughput at a few
client counts, with the per-order solve time the service reports beside it.

    uv run --extra dev python -m bench.orders [--clients 1 8] [--orders 600]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import random
import statistics
import time

from bench.common import RawClient, Service, database, summarize, table
from engine.config import FIXTURES_DIR


def orders(n: int, seed: int, tag: str) -> list[bytes]:
    rng = random.Random(seed)
    with open(FIXTURES_DIR / "us_metros.csv") as f:
        metros = [(float(r["Latitude"]), float(r["Longitude"]), int(r["Population"])) for r in csv.DictReader(f)]
    metro_cum = list(itertools.accumulate(m[2] for m in metros))
    sku_cum = list(itertools.accumulate(1 / r for r in range(1, 2001)))
    out = []
    for i in range(n):
        lat, lon, _ = rng.choices(metros, cum_weights=metro_cum)[0]
        ranks = set()
        while len(ranks) < 3:
            ranks.add(rng.choices(range(1, 2001), cum_weights=sku_cum)[0])
        out.append(
            json.dumps(
                {
                    "order_id": f"bench-{tag}-{i}",
                    "channel": "web",
                    "destination": {
                        "lat": round(lat + rng.uniform(-0.2, 0.2), 4),
                        "lon": round(lon + rng.uniform(-0.2, 0.2), 4),
                    },
                    "lines": [
                        {"line_id": str(k + 1), "sku": f"SKU-{r:05d}", "quantity": 1}
                        for k, r in enumerate(sorted(ranks))
                    ],
                    "allow_split": True,
                    "allow_partial": True,
                }
            ).encode()
        )
    return out


async def run(port: int, bodies: list[bytes], clients: int) -> tuple[dict, list[float], dict]:
    conns = [RawClient(port) for _ in range(clients)]
    queue = iter(bodies)
    latencies: list[float] = []
    solve_ms: list[float] = []
    statuses: dict[int, int] = {}

    async def loop(c: RawClient) -> None:
        for body in queue:
            t = time.perf_counter()
            status, payload = await c.request("POST", "/v1/orders", body, "Content-Type: application/json\r\n")
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 201:
                raise RuntimeError(f"POST /v1/orders answered {status}: {payload[:300]!r}")
            solve_ms.append(json.loads(payload)["explanation"]["solve_ms"])

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        await c.close()
    return summarize(latencies, elapsed), solve_ms, statuses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--orders", type=int, default=600)
    args = ap.parse_args()
    url, pg = database("demo")
    rows = []
    tag = str(int(time.time()))
    try:
        svc = Service(url, workers=1, pool_max=20)
        try:
            asyncio.run(run(svc.port, orders(40, 1, f"{tag}-warm"), 4))
            for i, clients in enumerate(args.clients):
                res, solve, statuses = asyncio.run(
                    run(svc.port, orders(args.orders, 7 + i, f"{tag}-{clients}"), clients)
                )
                q = statistics.quantiles(solve, n=100, method="inclusive")
                rows.append(
                    {"clients": clients, **res, "solve p50": q[49], "solve p99": q[98], "201": statuses.get(201, 0)}
                )
        finally:
            svc.stop()
    finally:
        if pg is not None and pg.started_by_us:
            pg.stop()
    print(f"\nPOST /v1/orders, 3-line ship orders, demo network (116 locations, 2,000 SKUs), {os.cpu_count()} cores")
    print(table(rows, ["clients", "requests", "rps", "p50", "p99", "solve p50", "solve p99", "201"]))
    print("(rps = orders/s; p50/p99 in ms, client side; solve = the router's own time per order, from the explanation)")


if __name__ == "__main__":
    main()
