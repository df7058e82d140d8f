"""The data plane over HTTP on the 10M network, against the same SQL issued directly.

    uv run --extra dev python -m bench.http [--size large] [--clients 32 64] [--workers 1 2]
                                            [--pool 8] [--seconds 15]

For every --workers value (and every --pool value: the service's connections per process,
OMNIROUTE_POOL_MAX, by default the service's own default) the service runs as
`omniroute serve --workers N`; for every --clients value, in the same run:

  availability   a 10-SKU basket with a 50 km pickup radius near a US metro (seeded, as in
                 bench.availability): GET /v1/availability over HTTP, against the statement
                 the service runs (engine.store.availability.fetch) from asyncpg (the ceiling).
                 The HTTP load comes from this process's asyncio client, then, when `wrk` is
                 installed (Debian: apt-get install wrk), the same from wrk: a C generator
                 that leaves the service more of the cores they share.
  reservations   hold one unit at a seeded random position with stock, then release it:
                 POST /v1/reservations + POST …/release over HTTP, against the same two
                 service calls made straight on an asyncpg pool, no HTTP (the ceiling: the
                 same statements, one reservation per statement, no group commit).
  delivery       while the HTTP reservations run, one SSE consumer, in a process of its
                 own, follows /v1/events?kind=reservation; for each hold the load made, the
                 time from its 201 arriving to its `active` event arriving (a lower bound of
                 commit-to-delivery: the commit precedes the 201) and from the event's
                 created_at, stamped just before the commit, to its arrival (an upper bound).
                 The consumer is not the load generator, as a real one is not: inside the
                 generator's busy event loop, that loop's own delay would count as delivery
                 (`generator lag p99` reports it: how late the generator wakes a 5 ms sleep).
                 The consumer's process also runs the commit probe: every 20 ms an
                 autocommit UPDATE of one position's safety stock, straight to the
                 database, and a second stream following that position. PostgreSQL commits
                 before it answers, so sent-to-event is commit-to-delivery plus at most the
                 write's own round trip (`probe write p99`): the measure of the goal, its
                 events passing through the same publisher, tail and streams under the load.

A pair (hold + release) is one operation: rps counts pairs, p50/p99 are per pair. At the
end the ledger of every position is re-summed: drift must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from uuid import UUID

import asyncpg
import msgspec
import uvloop

from bench import availability as avail
from bench import reservations as resv
from bench.common import RawClient, Service, database, have_wrk, loop_lag, run_load, table, wrk_load
from bench.sse import SseClient, envelope
from engine.config import DEFAULT_POOL_MAX
from engine.core.model import Caller, Role
from engine.core.reservations import Line
from engine.services import reservations
from engine.services.stock import check_ledger
from engine.store.db import create_pool

JSON = "Content-Type: application/json\r\n"
TTL = 120


class _Created(msgspec.Struct):
    reservation_id: str


class _ReservationEvent(msgspec.Struct):
    reservation_id: str
    status: str


_created = msgspec.json.Decoder(_Created)
_event = msgspec.json.Decoder(_ReservationEvent)


def _pct(values: list[float], p: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def reserve_ceiling(url: str, positions: list[resv.Position], clients: int, seconds: float) -> dict:
    pool = await create_pool(url, min_size=clients, max_size=clients)
    caller = Caller(key_id="bench-ceiling", role=Role.ADMIN)
    n = len(positions)

    def worker(cid: int):
        async def call(i: int) -> None:
            sku, loc = positions[(cid * 7919 + i) % n]
            status, body = await reservations.create(
                pool,
                caller,
                [Line(sku=sku, location_id=loc, quantity=1)],
                ttl_seconds=TTL,
                reference=None,
                idem_key=None,
            )
            rid = UUID(_created.decode(body).reservation_id)
            status, _ = await reservations.release(pool, caller, rid, None)
            if status != 200:
                raise RuntimeError(f"release answered {status}")

        return call

    try:
        await run_load(clients, 2, worker)
        return await run_load(clients, seconds, worker)
    finally:
        await pool.close()


class _StockEvent(msgspec.Struct):
    safety_stock: int | None


_stock_event = msgspec.json.Decoder(_StockEvent)
PROBE_EVERY = 0.02  # seconds between probe writes
PROBE_CYCLE = 100  # safety-stock values the probe cycles through (2 s of writes: no mix-up)


async def _probe_position(url: str) -> tuple[str, str, int | None]:
    """A position with stock to spare: the probe moves its safety stock between 1 and
    PROBE_CYCLE, which moves `available` (one stock event each) and leaves the ledger alone."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT sku, location_id, safety_stock FROM stock_positions WHERE on_hand - reserved > $1 LIMIT 1",
            PROBE_CYCLE + 10,
        )
    finally:
        await conn.close()
    if row is None:
        raise RuntimeError("no position with stock to spare for the commit probe")
    return row["sku"], row["location_id"], row["safety_stock"]


def _consume(
    port: int, url: str, probe: tuple[str, str, int | None], ready: Event, stop: Event, out: Connection
) -> None:
    """In a process of its own: follow /v1/events?kind=reservation until `stop`, then send
    back (reservation_id, received, created_at) for each hold's `active` event.

    Also the commit probe: every PROBE_EVERY seconds one autocommit UPDATE of the probe
    position's safety stock, straight to the database, timed from sending it to its answer
    (PostgreSQL commits before it answers, so the commit lies between the two), and a
    second stream that follows that position's stock events. Its events go through the
    same publisher, tail and streams as the holds' events, under the same load; this
    process's loop is idle, so the two times bracket the commit closely."""
    sku, location_id, safety = probe

    async def follow() -> tuple[list[tuple[str, float, float]], list[tuple[float, float, float]]]:
        seen: list[tuple[str, float, float]] = []
        sent: dict[int, tuple[float, float]] = {}
        probed: list[tuple[float, float, float]] = []  # (sent, answered, received)

        async def read(feed: SseClient) -> None:
            async for message in feed:
                if message.data is None or message.event != "reservation":
                    continue
                env = envelope(message)
                ev = _event.decode(env.payload)
                if ev.status == "active":
                    seen.append((ev.reservation_id, message.received, env.created_at.timestamp()))

        async def read_probe(feed: SseClient) -> None:
            async for message in feed:
                if message.data is None or message.event != "stock":
                    continue
                value = _stock_event.decode(envelope(message).payload).safety_stock
                if value in sent:
                    probed.append((*sent.pop(value), message.received))

        async def write_probe(conn: asyncpg.Connection) -> None:
            i = 0
            while True:
                value = 1 + i % PROBE_CYCLE
                t0 = time.time()
                await conn.execute(
                    "UPDATE stock_positions SET safety_stock = $3 WHERE sku = $1 AND location_id = $2",
                    sku,
                    location_id,
                    value,
                )
                sent[value] = (t0, time.time())
                i += 1
                await asyncio.sleep(PROBE_EVERY)

        conn = await asyncpg.connect(url)
        try:
            async with (
                SseClient(port, "/v1/events?kind=reservation") as feed,
                SseClient(port, f"/v1/events?kind=stock&sku={sku}&location_id={location_id}") as probe_feed,
            ):
                tasks = [
                    asyncio.create_task(read(feed)),
                    asyncio.create_task(read_probe(probe_feed)),
                    asyncio.create_task(write_probe(conn)),
                ]
                ready.set()
                await asyncio.to_thread(stop.wait)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            await conn.execute(
                "UPDATE stock_positions SET safety_stock = $3 WHERE sku = $1 AND location_id = $2",
                sku,
                location_id,
                safety,
            )
        finally:
            await conn.close()
        return seen, probed

    out.send(asyncio.run(follow()))


async def reserve_http(
    port: int, url: str, positions: list[resv.Position], clients: int, seconds: float
) -> tuple[dict, dict]:
    """Hold + release pairs over HTTP, and the feed's delivery of each hold's event to a
    consumer in a process of its own (as a real consumer is: inside this busy load
    generator, its own event-loop delay would be counted as delivery; it is reported apart)."""
    conns = [RawClient(port) for _ in range(clients)]
    acked: dict[str, float] = {}
    n = len(positions)
    measuring = False

    def worker(cid: int):
        async def call(i: int) -> None:
            status, body = await conns[cid].request(
                "POST", "/v1/reservations", resv.body(positions[(cid * 7919 + i) % n], TTL), JSON
            )
            if status != 201:
                raise RuntimeError(f"POST /v1/reservations answered {status}: {body[:500]!r}")
            rid = _created.decode(body).reservation_id
            if measuring:
                acked[rid] = time.time()
            status, body = await conns[cid].request("POST", f"/v1/reservations/{rid}/release")
            if status != 200:
                raise RuntimeError(f"release answered {status}: {body[:500]!r}")

        return call

    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    probe = await _probe_position(url)
    consumer = ctx.Process(target=_consume, args=(port, url, probe, ready, stop, send), daemon=True)
    consumer.start()
    lag: list[float] = []
    try:
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the event-stream consumer did not connect")
        await run_load(clients, 2, worker)
        measuring = True
        ticker = asyncio.create_task(loop_lag(lag))
        began = time.time()
        result = await run_load(clients, seconds, worker)
        ended = time.time()
        measuring = False
        ticker.cancel()
        await asyncio.sleep(1.0)  # the last events of the run
        stop.set()
        seen, probed = await asyncio.to_thread(receive.recv)
    finally:
        stop.set()
        await asyncio.to_thread(consumer.join, 30)
        for c in conns:
            await c.close()
    probed = [p for p in probed if began <= p[0] and p[1] <= ended]  # written while the load ran
    lower: list[float] = []
    upper: list[float] = []
    for rid, received, created in seen:
        ack = acked.pop(rid, None)
        if ack is not None:
            lower.append((received - ack) * 1000)
            upper.append((received - created) * 1000)
    delivery = {
        "events": len(lower),
        "unmatched": len(acked),
        "201->event p50": _pct(lower, 50),
        "201->event p99": _pct(lower, 99),
        "created_at->event p50": _pct(upper, 50),
        "created_at->event p99": _pct(upper, 99),
        "generator lag p99": _pct(lag, 99),
        "probes": len(probed),
        "probe commit->event p50": _pct([(received - t0) * 1000 for t0, _, received in probed], 50),
        "probe commit->event p99": _pct([(received - t0) * 1000 for t0, _, received in probed], 99),
        "probe write p99": _pct([(t1 - t0) * 1000 for t0, t1, _ in probed], 99),
    }
    return result, delivery


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="large", choices=["demo", "large"])
    ap.add_argument("--clients", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pool", type=int, nargs="+", default=[DEFAULT_POOL_MAX], help="connections per service process")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--positions", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    # The generator runs on the event loop the service runs on: on asyncio's own loop it
    # spent more of the shared cores, and its delays counted as the service's latency.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    with_wrk = have_wrk()
    url, pg = database(args.size)
    rows: list[dict] = []
    deliveries: list[dict] = []
    try:
        n_skus = asyncio.run(_count(url, "SELECT count(*) FROM items"))
        baskets = avail.baskets(2000, n_skus, seed=args.seed)
        positions = asyncio.run(resv.plan(url, args.positions, args.seed)).spread
        for workers, pool in itertools.product(args.workers, args.pool):
            svc = Service(url, workers=workers, pool_max=pool)
            try:
                for clients in args.clients:
                    asyncio.run(avail.settle(url))
                    ceil = asyncio.run(avail.sql_ceiling(url, baskets, clients, args.seconds))
                    res = asyncio.run(avail.http(svc.port, baskets, clients, args.seconds, workers=workers))
                    rows.append(_row("availability", "SQL (ceiling)", workers, clients, clients, ceil, ceil))
                    rows.append(_row("availability", "HTTP GET", workers, pool, clients, res, ceil))
                    if with_wrk:
                        res = wrk_load(svc.port, avail.targets(baskets), clients, args.seconds)
                        rows.append(_row("availability", "HTTP GET from wrk", workers, pool, clients, res, ceil))
                    ceil = asyncio.run(reserve_ceiling(url, positions, clients, args.seconds))
                    res, delivery = asyncio.run(reserve_http(svc.port, url, positions, clients, args.seconds))
                    rows.append(_row("hold+release", "service calls (ceiling)", workers, clients, clients, ceil, ceil))
                    rows.append(_row("hold+release", "HTTP POST x2", workers, pool, clients, res, ceil))
                    deliveries.append({"workers": workers, "pool": pool, "clients": clients, **delivery})
                    print(json.dumps(rows[-4:] + deliveries[-1:], default=str), flush=True)
            finally:
                svc.stop()
        checked, drift = asyncio.run(_ledger(url))
    finally:
        if pg is not None:
            pg.stop()
    print(f"\nHTTP data plane, {args.size} network, {args.seconds:g} s per measurement (+2 s warm-up)")
    print(f"{os.cpu_count()} cores; command: uv run --extra dev python -m bench.http {' '.join(sys.argv[1:])}")
    columns = [
        *("path", "via", "workers", "pool", "clients", "requests", "rps", "p50", "p99", "ratio"),
        "connections per worker",
    ]
    print(table(rows, columns + ["requests per worker"] * with_wrk))
    print("(rps: availability requests or hold+release pairs per second; p50/p99 in ms, client side;")
    print(" pool: the service's connections per process, or the ceiling's connections in all;")
    print(" connections per worker: how the readers' keep-alive connections landed on the workers;")
    print(" requests per worker: the share of wrk's answers each worker gave)")
    if not with_wrk:
        print("(wrk is not installed, so no `HTTP GET from wrk` rows: apt-get install wrk)")
    print("\nchange feed delivery of each hold's event to one SSE client, during the HTTP holds above (ms)")
    print(table(deliveries, list(deliveries[0])))
    print(f"\nledger: {checked:,} positions re-summed, drift {drift}")
    if drift:
        raise SystemExit("ledger drift")


def _row(path: str, via: str, workers: int, pool: int, clients: int, res: dict, ceil: dict) -> dict:
    """One table row; `pool` is the service's connections per process, or the ceiling's in all."""
    return {
        "path": path,
        "via": via,
        "workers": workers,
        "pool": pool,
        "clients": clients,
        **res,
        "ratio": res["rps"] / ceil["rps"],
    }


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _ledger(url: str) -> tuple[int, int]:
    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        checked, drift, _ = await check_ledger(pool)
        return checked, drift
    finally:
        await pool.close()


if __name__ == "__main__":
    main()
