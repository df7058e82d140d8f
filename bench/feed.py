"""Change feed: what writing events costs the reservation path, and how soon a server-sent-
events consumer hears of a commit.

    uv run --extra dev python -m bench.feed [--size demo] [--clients 8] [--rounds 6] [--seconds 5]
                                            [--rate 200] [--streams 4] [--latency-seconds 15]

write cost   reserve-then-release pairs (engine.store.reservations, each step its own
             transaction, one 1-unit line at seeded random positions) from --clients
             connections, in alternating rounds with the feed's triggers disabled ("off") and
             enabled with a publisher numbering events every 20 ms ("on"); the same run, so the
             ratio survives a noisy machine. Each pair writes 4 events when on.
delivery     `omniroute serve`; --streams SSE consumers of the whole feed; writers POST
             reservations at --rate per second in total. Per event: received time minus its
             created_at (an upper bound of commit-to-delivery); per reservation: received
             time minus the time its 201 arrived (a lower bound: the commit precedes the answer).
reads        --events published events (50,000 SKUs x 200 locations) added in one transaction
             that is rolled back at the end: a page read near the head, from the oldest event,
             and filtered by one SKU (the worst case: the whole look-ahead window of a page),
             then the purge of a third of them. Baseline: the primary-key lookup of one event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid

import asyncpg

from bench.common import RawClient, Service, database, table
from bench.sse import SseClient, delivery_ms
from engine.core.reservations import Line, Status
from engine.services.jobs import LOCKS
from engine.store import events as events_store
from engine.store import meta
from engine.store import reservations as reservations_store
from engine.store.db import create_pool

FEED_TRIGGERS = [  # migrations/0005_change_feed.sql
    ("stock_positions", "stock_positions_update_events"),
    ("stock_positions", "stock_positions_insert_events"),
    ("reservations", "reservations_insert_events"),
    ("reservations", "reservations_update_events"),
]
JSON = "Content-Type: application/json\r\n"

SAMPLE_SQL = """SELECT p.sku, p.location_id FROM stock_positions p JOIN locations l USING (location_id)
WHERE l.active AND p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock) >= 50
ORDER BY md5(p.sku || p.location_id || $1) LIMIT $2"""


def _quantiles(values: list[float]) -> dict:
    ms = sorted(values)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"p50": q[49], "p99": q[98], "max": ms[-1]}


async def positions(url: str, seed: int, n: int) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        return [(r[0], r[1]) for r in await conn.fetch(SAMPLE_SQL, str(seed), n)]
    finally:
        await conn.close()


async def set_triggers(conn: asyncpg.Connection, enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    for table_name, trigger in FEED_TRIGGERS:
        await conn.execute(f"ALTER TABLE {table_name} {verb} TRIGGER {trigger}")


async def write_round(pool: asyncpg.Pool, where: list, clients: int, seconds: float, rng: random.Random) -> dict:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client(cid: int) -> None:
        local = random.Random(rng.random())
        while time.perf_counter() < stop_at:
            sku, loc = local.choice(where)
            rid = uuid.uuid4()
            started = time.perf_counter()
            async with pool.acquire() as conn:
                await reservations_store.reserve(
                    conn,
                    reservation_id=rid,
                    owner="bench-feed",
                    reference=None,
                    ttl_seconds=600,
                    lines=[Line(sku=sku, location_id=loc, quantity=1)],
                )
                async with conn.transaction():
                    await reservations_store.get(conn, rid, lock=True)
                    await reservations_store.finish(conn, rid, status=Status.RELEASED, actor="bench-feed")
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - began
    return {"pairs": len(latencies), "rate": len(latencies) / elapsed, **_quantiles([x * 1000 for x in latencies])}


async def publisher(url: str, stop: asyncio.Event) -> int:
    """The service's publisher loop, under its advisory lock: there must never be two."""
    conn = await asyncpg.connect(url)
    total = 0
    try:
        if not await meta.try_lock(conn, LOCKS["publish-events"]):
            raise RuntimeError("a service publishes the feed of this database: stop it first")
        while not stop.is_set():
            n = len((await events_store.publish(conn, 5000)).events)
            total += n
            if n < 5000:
                await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return total


async def write_cost(url: str, args: argparse.Namespace) -> list[dict]:
    where = await positions(url, args.seed, 5000)
    rng = random.Random(args.seed)
    pool = await create_pool(url, min_size=args.clients, max_size=args.clients)
    admin = await asyncpg.connect(url)
    results: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        for _ in range(args.rounds):
            for mode in rng.sample(["off", "on"], 2):
                await set_triggers(admin, mode == "on")
                stop = asyncio.Event()
                pub = asyncio.create_task(publisher(url, stop)) if mode == "on" else None
                results[mode].append(await write_round(pool, where, args.clients, args.seconds, rng))
                if pub is not None:
                    stop.set()
                    await pub
    finally:
        await set_triggers(admin, True)
        await admin.close()
        await pool.close()
    rows = []
    base = statistics.median(r["rate"] for r in results["off"])
    for mode in ("off", "on"):
        rs = results[mode]
        rate = statistics.median(r["rate"] for r in rs)
        rows.append(
            {
                "triggers": mode,
                "clients": args.clients,
                "rounds": len(rs),
                "pairs/s (median)": rate,
                "p50 ms": statistics.median(r["p50"] for r in rs),
                "p99 ms": statistics.median(r["p99"] for r in rs),
                "ratio": rate / base,
            }
        )
    return rows


async def delivery(url: str, args: argparse.Namespace) -> dict:
    where = await positions(url, args.seed + 1, 20_000)
    svc = Service(url)
    acked: dict[str, float] = {}
    from_commit: list[float] = []
    from_ack: list[float] = []
    seen = [0] * args.streams
    try:
        ready = asyncio.Event()
        connected = 0

        async def consumer(i: int) -> None:
            nonlocal connected
            async with SseClient(svc.port, "/v1/events") as feed:
                connected += 1
                if connected == args.streams:
                    ready.set()
                async for message in feed:
                    if message.data is None:
                        continue
                    seen[i] += 1
                    from_commit.append(delivery_ms(message))
                    if message.event == "reservation":
                        rid = json.loads(message.data)["payload"]["reservation_id"]
                        if rid in acked:
                            from_ack.append((message.received - acked[rid]) * 1000)

        consumers = [asyncio.create_task(consumer(i)) for i in range(args.streams)]
        await asyncio.wait_for(ready.wait(), 30)
        writers = 8
        interval = writers / args.rate
        stop_at = time.perf_counter() + args.latency_seconds

        async def writer(w: int) -> None:
            client = RawClient(svc.port)
            local = random.Random(args.seed + w)
            next_at = time.perf_counter() + local.uniform(0, interval)
            try:
                while next_at < stop_at:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += interval
                    sku, loc = local.choice(where)
                    body = json.dumps(
                        {"lines": [{"sku": sku, "location_id": loc, "quantity": 1}], "ttl_seconds": 600}
                    ).encode()
                    status, answer = await client.request("POST", "/v1/reservations", body, JSON)
                    if status == 201:
                        acked[json.loads(answer)["reservation_id"]] = time.time()
            finally:
                await client.close()

        began = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        written = len(acked)
        elapsed = time.perf_counter() - began
        await asyncio.sleep(1.0)  # the last events arrive
        for c in consumers:
            c.cancel()
        for outcome in await asyncio.gather(*consumers, return_exceptions=True):
            if not isinstance(outcome, asyncio.CancelledError):
                raise RuntimeError(f"an SSE consumer failed: {outcome!r}")
    finally:
        svc.stop()
    return {
        "streams": args.streams,
        "reservations/s": written / elapsed,
        "events per stream": min(seen),
        "created_at->SSE p50": _quantiles(from_commit)["p50"],
        "p99": _quantiles(from_commit)["p99"],
        "max": _quantiles(from_commit)["max"],
        "201->SSE p50": _quantiles(from_ack)["p50"],
        "p99 ": _quantiles(from_ack)["p99"],
    }


async def reads(url: str, args: argparse.Namespace) -> list[dict]:
    conn = await asyncpg.connect(url)
    rows = []
    try:
        async with conn.transaction():
            began = time.perf_counter()
            await conn.execute("DELETE FROM events")  # only the synthetic ones, until the rollback
            await conn.execute(
                """INSERT INTO events (kind, sku, location_id, payload, seq, published_at)
                   SELECT 'stock', 'SKU-' || (i % 50000), 'LOC-' || (i % 200),
                          jsonb_build_object('on_hand', i, 'available', i), nextval('event_seq'),
                          now() - interval '100 hours' * (i <= $1 / 3)::int
                   FROM generate_series(1, $1) i""",
                args.events,
            )
            await conn.execute("UPDATE event_feed SET published_through = (SELECT max(seq) FROM events)")
            await conn.execute("ANALYZE events")
            print(f"{args.events:,} events written in {time.perf_counter() - began:.1f} s", flush=True)
            first, head = await conn.fetchrow("SELECT min(seq), max(seq) FROM events WHERE seq IS NOT NULL")
            oldest = first - 1
            cases = [
                ("primary-key lookup of one event (baseline)", None),
                ("100 events after the head - 100", (head - 100, {})),
                ("100 events after the oldest", (oldest, {})),
                ("1 SKU, from the oldest (a whole 50,000-seq window)", (oldest, {"skus": ["SKU-7"]})),
            ]
            base = None
            for label, case in cases:
                times = []
                for _ in range(20):
                    t = time.perf_counter()
                    if case is None:
                        await conn.fetchrow("SELECT * FROM events WHERE event_id = $1", head // 2)
                    else:
                        after, filters = case
                        await events_store.page(conn, after, limit=100, upto=after + 50_000, **filters)
                    times.append((time.perf_counter() - t) * 1000)
                median = statistics.median(times)
                base = base or median
                rows.append({"read": label, "ms (median of 20)": median, "ratio": median / base})
            began = time.perf_counter()
            purged = 0
            while deleted := await events_store.purge(conn, hours=args.retention, limit=10_000):
                purged += deleted
            rows.append(
                {"read": f"purge: {purged:,} events older than the retention", "s": time.perf_counter() - began}
            )
            raise _Rollback
    except _Rollback:
        pass
    try:
        # The rolled-back rows left dead index entries above the feed's head, which every
        # page read from the head would step over until a vacuum: remove them now.
        await conn.execute("VACUUM events")
    finally:
        await conn.close()
    return rows


class _Rollback(Exception):
    """Undo the synthetic events."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="demo", choices=["demo", "large"])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rate", type=float, default=200, help="delivery: reservations per second, all writers")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--latency-seconds", type=float, default=15)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--events", type=int, default=3_000_000, help="reads: synthetic events")
    ap.add_argument("--retention", type=float, default=72, help="reads: purge retention (hours)")
    ap.add_argument("--only", choices=["write-cost", "delivery", "reads"], help="run one part")
    args = ap.parse_args()
    url, pg = database(args.size)
    try:
        if args.only in (None, "write-cost"):
            rows = asyncio.run(write_cost(url, args))
            print(f"\nwrite cost: reserve + release pairs, {args.size} network, {args.seconds:.0f} s rounds")
            print(table(rows, list(rows[0])))
        if args.only in (None, "delivery"):
            row = asyncio.run(delivery(url, args))
            print(f"\ndelivery: {args.streams} SSE streams of the whole feed, reservations over HTTP at --rate")
            print(table([row], list(row)))
            print("(ms; created_at->SSE is an upper bound of commit-to-delivery, 201->SSE a lower bound)")
        if args.only in (None, "reads"):
            rows = asyncio.run(reads(url, args))
            print(f"\nreads: {args.events:,} events, page limit 100")
            print(table(rows, ["read", "ms (median of 20)", "ratio", "s"]))
        print(f"cpu_count 2; command: {' '.join(['python -m bench.feed', *sys.argv[1:]])}")
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
