"""Availability for a 10-SKU basket with a pickup radius: the service over HTTP against the
same SQL issued directly with asyncpg at the same concurrency (the ceiling).

    uv run --extra dev python -m bench.availability [--size large] [--clients 32] [--seconds 20]
                                                    [--write-rate 50]

Baskets draw SKUs by the network's Zipf-like popularity and shoppers from the 99 metros by
population (seeded), with a 50 km pickup radius.

Read-only first; then mixed: the same reads while WRITERS clients hold and release one unit
of the SKUs the baskets ask for (each as often as the baskets ask for it), paced to
--write-rate hold+release pairs a second in all, through the service for the HTTP rows and
through the service's own calls on an asyncpg pool for the ceiling. Every write changes the
SKU's availability, so the service's view must drop it and read it again.

The HTTP rows come from this process's asyncio client (its own event-loop lag reported);
when `wrk` is installed (Debian: apt-get install wrk), each read-only HTTP row is followed
by the same load from wrk, a C generator that leaves the service more of the shared cores.
With --workers 1 a row `through Litestar (no shortcut)` asks the same baskets with a
trailing slash (`/v1/availability/?…`): the same operation, which the shortcut for
`GET /v1/availability` (api.routes.availability.shortcut) leaves to Litestar's routing,
middleware and handler: the baseline for what the shortcut buys, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import itertools
import json
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode
from uuid import UUID

import asyncpg

from bench import reservations as resv
from bench.common import RawClient, Service, database, have_wrk, loop_lag, run_load, table, wrk_load
from engine.config import FIXTURES_DIR
from engine.core.geo import bounding_box
from engine.core.model import Caller, Role
from engine.core.reservations import Line
from engine.services import reservations
from engine.services.reservations import sweep_expired
from engine.store import availability as store
from engine.store.db import create_pool

JSON = "Content-Type: application/json\r\n"


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


WRITERS = 8
TTL = 120


class Writes:
    """Hold+release pairs on the baskets' SKUs, paced to `rate` pairs a second over `writers`
    loops, while `run` lasts. `pair(w, position)` makes one for loop `w` (by whatever path)."""

    def __init__(self, positions: list[resv.Position], rate: float, writers: int = WRITERS) -> None:
        self.positions = positions
        self.rate = rate
        self.writers = writers
        self.done = 0

    async def run(self, pair: Callable[[int, resv.Position], Awaitable[None]], seconds: float) -> None:
        interval = self.writers / self.rate
        start = time.perf_counter()

        async def loop(w: int) -> None:
            k = 0
            while True:
                due = start + (k + w / self.writers) * interval
                if due - start >= seconds:
                    return
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await pair(w, self.positions[(w * 7919 + k) % len(self.positions)])
                self.done += 1
                k += 1

        await asyncio.gather(*(loop(w) for w in range(self.writers)))


async def writer_positions(url: str, reqs: list[dict], seed: int = 7) -> list[resv.Position]:
    """For every SKU the baskets ask for, as often as they ask for it, one location with
    stock to hold there."""
    asked = collections.Counter(s for q in reqs for s in q["skus"])
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT DISTINCT ON (sku) sku, location_id FROM stock_positions
               WHERE sku = ANY($1) AND on_hand - reserved > 10 ORDER BY sku, location_id""",
            list(asked),
        )
    finally:
        await conn.close()
    positions = [(r["sku"], r["location_id"]) for r in rows for _ in range(asked[r["sku"]])]
    random.Random(seed).shuffle(positions)
    return positions


async def _measure(
    clients: int, seconds: float, worker: Callable, writes: Writes | None, pair: Callable | None
) -> dict:
    """Warm-up, then the measurement; the writes (if any) run through both."""
    writing = asyncio.create_task(writes.run(pair, seconds + 2.5)) if writes is not None else None
    await run_load(clients, 2, worker)
    before = writes.done if writes is not None else 0
    lag: list[float] = []
    ticker = asyncio.create_task(loop_lag(lag))
    began = time.perf_counter()
    try:
        result = await run_load(clients, seconds, worker)
    finally:
        ticker.cancel()
    result["generator lag p99"] = statistics.quantiles(lag, n=100)[98] if len(lag) > 1 else None
    if writes is not None:
        result["writes/s"] = (writes.done - before) / (time.perf_counter() - began)
        await writing
    return result


async def sql_ceiling(url: str, reqs: list[dict], clients: int, seconds: float, writes: Writes | None = None) -> dict:
    pool = await asyncpg.create_pool(url, min_size=clients, max_size=clients)
    write_pool = await create_pool(url, min_size=1, max_size=WRITERS) if writes else None
    caller = Caller(key_id="bench-writer", role=Role.ADMIN)

    def worker(cid: int):
        async def call(i: int) -> None:
            q = reqs[(cid * 7919 + i) % len(reqs)]
            box = bounding_box(q["lat"], q["lon"], q["radius_km"])
            async with pool.acquire() as conn:
                await store.fetch(
                    conn, q["skus"], lat=q["lat"], lon=q["lon"], radius_km=q["radius_km"], box=box, pickup_limit=20
                )

        return call

    async def pair(_w: int, pos: resv.Position) -> None:
        _, body = await reservations.create(
            write_pool,
            caller,
            [Line(sku=pos[0], location_id=pos[1], quantity=1)],
            ttl_seconds=TTL,
            reference=None,
            idem_key=None,
        )
        await reservations.release(write_pool, caller, UUID(json.loads(body)["reservation_id"]), None)

    try:
        return await _measure(clients, seconds, worker, writes, pair)
    finally:
        await pool.close()
        if write_pool is not None:
            await write_pool.close()


async def _view_lookups(port: int) -> collections.Counter:
    """The service's availability-view lookups so far, by result (one process's)."""
    client = RawClient(port)
    try:
        _, text = await client.request("GET", "/metrics")
    finally:
        await client.close()
    counts: collections.Counter = collections.Counter()
    for line in text.decode().splitlines():
        if line.startswith("omniroute_availability_cache_lookups_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            counts[result] = float(line.rsplit(" ", 1)[1])
    return counts


def targets(reqs: list[dict], path: str = "/v1/availability") -> list[str]:
    return [
        f"{path}?"
        + urlencode([("sku", s) for s in q["skus"]] + [("lat", q["lat"]), ("lon", q["lon"]), ("radius_km", 50)])
        for q in reqs
    ]


async def warm(port: int, targets: list[str], conns: list[RawClient], workers: int) -> None:
    """Ask every target once on each of the service's `workers` processes (each keeps its own
    view), through `conns` and, while some process has none of them, extra connections.
    Before this, a second worker got only the baskets that its share of the connections
    happened to ask, and its misses counted in a warm service's figures."""
    await asyncio.gather(*(c.request("GET", targets[0]) for c in conns))
    extra: list[RawClient] = []
    while len({c.served_by for c in conns + extra}) < workers:
        if len(extra) >= 64 * workers:
            raise RuntimeError(f"only {len({c.served_by for c in conns + extra})} of {workers} workers answered")
        extra.append(RawClient(port))
        await extra[-1].request("GET", targets[0])
    by_worker = collections.defaultdict(list)
    for c in conns + extra:
        by_worker[c.served_by].append(c)

    async def ask(group: list[RawClient]) -> None:
        for i in range(0, len(targets), len(group)):
            await asyncio.gather(
                *(c.request("GET", t) for c, t in zip(group, targets[i : i + len(group)], strict=False))
            )

    try:
        await asyncio.gather(*(ask(group) for group in by_worker.values()))
    finally:
        for c in extra:
            await c.close()


async def http(
    port: int,
    reqs: list[dict],
    clients: int,
    seconds: float,
    writes: Writes | None = None,
    *,
    workers: int = 1,
    path: str = "/v1/availability",
) -> dict:
    targets_ = targets(reqs, path)
    conns = [RawClient(port) for _ in range(clients)]
    writer_conns = [RawClient(port) for _ in range(WRITERS)] if writes else []

    def worker(cid: int):
        async def call(i: int) -> None:
            status, _ = await conns[cid].request("GET", targets_[(cid * 7919 + i) % len(targets_)])
            if status != 200:
                raise RuntimeError(f"availability answered {status}")

        return call

    async def pair(w: int, pos: resv.Position) -> None:
        conn = writer_conns[w]
        status, body = await conn.request("POST", "/v1/reservations", resv.body(pos, TTL), JSON)
        if status != 201:
            raise RuntimeError(f"POST /v1/reservations answered {status}: {body[:300]!r}")
        rid = json.loads(body)["reservation_id"]
        status, body = await conn.request("POST", f"/v1/reservations/{rid}/release")
        if status != 200:
            raise RuntimeError(f"release answered {status}: {body[:300]!r}")

    # Every basket once on every worker, then 2 s: each process's availability view is warm,
    # as it is in a service that has been up for a while (its misses after that are
    # reported apart).
    await warm(port, targets_, conns, workers)
    before = await _view_lookups(port)
    result = await _measure(clients, seconds, worker, writes, pair)
    if workers == 1:  # with more, /metrics answers for whichever process takes the request
        after = await _view_lookups(port)
        hits, total = after["hit"] - before["hit"], sum(after.values()) - sum(before.values())
        result["view hits"] = f"{hits / total:.1%}" if total else ""
    else:  # how the kernel spread the readers' keep-alive connections over the workers
        spread = collections.Counter(c.served_by for c in conns)
        result["connections per worker"] = "/".join(str(n) for n in sorted(spread.values(), reverse=True))
    for c in conns + writer_conns:
        await c.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="large", choices=["demo", "large"])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--write-rate", type=float, default=50, help="hold+release pairs/s when mixed (0: skip)")
    args = ap.parse_args()

    with_wrk = have_wrk()
    url, pg = database(args.size)
    n_skus = 50_000 if args.size == "large" else 2_000
    reqs = baskets(5_000, n_skus)
    rows, mixed = [], []
    try:
        swept = asyncio.run(settle(url))
        if swept:
            print(f"released {swept} expired holds before measuring")
        ceiling = asyncio.run(sql_ceiling(url, reqs, args.clients, args.seconds))
        rows.append({"path": "asyncpg, same SQL (ceiling)", **ceiling, "ratio": 1.0})
        writes = None
        if args.write_rate > 0:
            positions = asyncio.run(writer_positions(url, reqs))
            writes = Writes(positions, args.write_rate)
            mixed_ceiling = asyncio.run(sql_ceiling(url, reqs, args.clients, args.seconds, writes))
            mixed.append({"path": "asyncpg, same SQL (ceiling)", **mixed_ceiling, "ratio": 1.0})
        for workers in args.workers:
            svc = Service(url, workers=workers, pool_max=args.clients + WRITERS)
            try:
                res = asyncio.run(http(svc.port, reqs, args.clients, args.seconds, workers=workers))
                rows.append({"path": f"HTTP GET, --workers {workers}", **res, "ratio": res["rps"] / ceiling["rps"]})
                if workers == 1:
                    # The same operation with a trailing slash: Litestar's own handler, past
                    # its routing and middleware, without the shortcut. The baseline it beats.
                    res = asyncio.run(http(svc.port, reqs, args.clients, args.seconds, path="/v1/availability/"))
                    rows.append(
                        {"path": "  through Litestar (no shortcut)", **res, "ratio": res["rps"] / ceiling["rps"]}
                    )
                if with_wrk:  # the view is warm: the run above asked every basket
                    res = wrk_load(svc.port, targets(reqs), args.clients, args.seconds)
                    rows.append(
                        {
                            "path": f"HTTP GET, --workers {workers}, from wrk",
                            **res,
                            "ratio": res["rps"] / ceiling["rps"],
                        }
                    )
                if writes is not None:
                    res = asyncio.run(http(svc.port, reqs, args.clients, args.seconds, writes, workers=workers))
                    mixed.append(
                        {"path": f"HTTP GET, --workers {workers}", **res, "ratio": res["rps"] / mixed_ceiling["rps"]}
                    )
            finally:
                svc.stop()
    finally:
        if pg is not None and pg.started_by_us:
            pg.stop()
    print(
        f"\navailability, 10-SKU basket, 50 km pickup radius, {args.size} network, "
        f"{args.clients} clients, {args.seconds:.0f} s each, {os.cpu_count()} cores"
    )
    extra = ["view hits", "connections per worker", "generator lag p99"]
    print(
        table(rows, ["path", "requests", "rps", "p50", "p99", "ratio", *extra, *(["requests per worker"] * with_wrk)])
    )
    print("(rps = requests/s; p50/p99 in ms, client side; ratio = rps / ceiling rps)")
    if not with_wrk:
        print("(wrk is not installed, so no `from wrk` rows: apt-get install wrk)")
    if mixed:
        print(
            f"\nmixed: the same reads while {WRITERS} writers hold and release one unit of the baskets' SKUs, "
            f"{args.write_rate:g} pairs/s asked for"
        )
        print(table(mixed, ["path", "requests", "rps", "p50", "p99", "ratio", "writes/s", *extra]))
        print("(view hits: SKU lookups answered from the view's memory, one worker only)")


if __name__ == "__main__":
    main()
