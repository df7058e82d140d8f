"""Reservations: the service over HTTP (`POST /v1/reservations`, one 1-unit line) against the
per-line conditional UPDATE that `omniroute_reserve` runs, issued directly with asyncpg at
the same concurrency (the ceiling).

    uv run --extra dev python -m bench.reservations [--size large] [--clients 32 64] [--seconds 15]

Two scenarios, each at every --clients value:

  hot     every request reserves at one SKU-location (row-lock contention). Before each
          measurement the position is topped up to --hot-units available with a `receipt`
          booked through the API, so every request must succeed.
  spread  requests walk a seeded list of positions with available >= 1, drawn at random
          from the whole network; every measurement starts at the first position the
          service has not touched yet, and the ceiling's holds are undone before the
          service's run, so both see the same fresh positions. 409 is legitimate here (a
          position ran out); anything else than 201 or 409 is an error.

The ceiling's UPDATEs are not in the ledger, so after each ceiling run `reserved` is given
back exactly (per position); the service's holds are left in place (they are in the ledger
and expire after --ttl seconds). A correctness phase races 64 clients for exactly 500 units
at a fresh position, and at the end the whole ledger is re-summed: drift must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from bench.common import RawClient, Service, database, run_load, table
from engine.services.stock import check_ledger

JSON = "Content-Type: application/json\r\n"
MAX_RECEIPT = 1_000_000  # api.schemas.MAX_QUANTITY: larger top-ups are split into several receipts
OVERSELL_UNITS = 500
OVERSELL_CLIENTS = 64
WARMUP_SECONDS = 2.0

# The statement omniroute_reserve runs for each line (migrations/0002_reservations.sql).
CEILING_SQL = """UPDATE stock_positions p SET reserved = p.reserved + 1, updated_at = now()
FROM locations l
WHERE p.sku = $1 AND p.location_id = $2
  AND l.location_id = p.location_id AND l.active
  AND p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock) >= 1"""

UNDO_SQL = """UPDATE stock_positions p SET reserved = p.reserved - t.n
FROM unnest($1::text[], $2::text[], $3::int[]) AS t(sku, location_id, n)
WHERE p.sku = t.sku AND p.location_id = t.location_id"""

AVAILABLE_SQL = """SELECT p.on_hand, p.reserved,
       p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock) AS available
FROM stock_positions p JOIN locations l ON l.location_id = p.location_id
WHERE p.sku = $1 AND p.location_id = $2"""

SAMPLE_SQL = """SELECT t.i, p.sku, p.location_id, p.on_hand, p.reserved, p.in_transit_in,
       p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock) AS available
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(sku, location_id, i)
JOIN stock_positions p ON p.sku = t.sku AND p.location_id = t.location_id
JOIN locations l ON l.location_id = p.location_id AND l.active
ORDER BY t.i"""


Position = tuple[str, str]


@dataclass
class Plan:
    hot: Position
    fresh: Position  # on_hand 0, reserved 0: the oversell check's position
    spread: list[Position]
    spread_offset: int = 0  # first spread position the service has not reserved at yet
    ceiling_leftover: Counter = field(default_factory=Counter)


@dataclass
class Tally:
    ok: int = 0
    conflict: int = 0


def body(pos: Position, ttl: int) -> bytes:
    return json.dumps(
        {"lines": [{"sku": pos[0], "location_id": pos[1], "quantity": 1}], "ttl_seconds": ttl},
        separators=(",", ":"),
    ).encode()


# --- choosing positions -------------------------------------------------------------------


async def plan(url: str, n_spread: int, seed: int) -> Plan:
    """Seeded random (sku, location) pairs over the whole network, kept in draw order."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(url)
    try:
        skus = [r["sku"] for r in await conn.fetch("SELECT sku FROM items ORDER BY sku")]
        locs = await conn.fetch("SELECT location_id, kind FROM locations WHERE active ORDER BY location_id")
        stores = [r["location_id"] for r in locs if r["kind"] == "store"]
        hot = (skus[0], stores[0] if stores else locs[0]["location_id"])  # the top seller at one store
        loc_ids = [r["location_id"] for r in locs]
        seen: set[Position] = {hot}
        spread: list[Position] = []
        fresh: Position | None = None
        total = len(skus) * len(loc_ids)
        while (len(spread) < n_spread or fresh is None) and len(seen) < total:
            batch: list[Position] = []
            while len(batch) < 100_000 and len(seen) < total:
                pos = (rng.choice(skus), rng.choice(loc_ids))
                if pos not in seen:
                    seen.add(pos)
                    batch.append(pos)
            rows = await conn.fetch(SAMPLE_SQL, [p[0] for p in batch], [p[1] for p in batch])
            for r in rows:
                if r["available"] >= 1 and len(spread) < n_spread:
                    spread.append((r["sku"], r["location_id"]))
                elif fresh is None and r["on_hand"] == 0 and r["reserved"] == 0 and r["in_transit_in"] == 0:
                    fresh = (r["sku"], r["location_id"])
        if fresh is None or not spread:
            raise RuntimeError(f"no position with on_hand 0 ({fresh}) or none with available >= 1 ({len(spread)})")
        return Plan(hot=hot, fresh=fresh, spread=spread)
    finally:
        await conn.close()


async def available(url: str, pos: Position) -> asyncpg.Record:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(AVAILABLE_SQL, *pos)
    finally:
        await conn.close()


async def receipt(port: int, pos: Position, quantity: int) -> None:
    """Book `quantity` units in at `pos` through the API (admin key), in receipts of at most 1M."""
    client = RawClient(port)
    try:
        while quantity > 0:
            q = min(quantity, MAX_RECEIPT)
            payload = json.dumps(
                {
                    "movements": [{"sku": pos[0], "location_id": pos[1], "kind": "receipt", "quantity": q}],
                    "reference": "bench-reservations",
                }
            ).encode()
            status, answer = await client.request("POST", "/v1/stock/movements", payload, JSON)
            if status != 201:
                raise RuntimeError(f"POST /v1/stock/movements {payload!r} answered {status}: {answer[:2000]!r}")
            quantity -= q
    finally:
        await client.close()


async def top_up(url: str, port: int, pos: Position, units: int) -> None:
    """Make `available` at `pos` at least `units` (a receipt for the difference)."""
    before = (await available(url, pos))["available"]
    if before < units:
        await receipt(port, pos, units - before)


# --- the ceiling: the conditional UPDATE from asyncpg ---------------------------------------


async def ceiling(url: str, positions: list[Position], start: int, clients: int, seconds: float) -> dict:
    """The per-line UPDATE on positions[start], positions[start + 1], ... (shared cursor,
    wrapping), autocommit, then every unit it reserved is given back."""
    pool = await asyncpg.create_pool(url, min_size=clients, max_size=clients)
    taken: Counter = Counter()  # position index -> units reserved, warm-up included
    tally = Tally()
    cursor = itertools.count(start)
    n = len(positions)

    def worker(cid: int):
        async def call(i: int) -> None:
            k = next(cursor) % n
            async with pool.acquire() as conn:
                status = await conn.execute(CEILING_SQL, *positions[k])
            if status == "UPDATE 1":
                taken[k] += 1
                tally.ok += 1
            elif status == "UPDATE 0":
                tally.conflict += 1
            else:
                raise RuntimeError(f"ceiling UPDATE answered {status!r}")

        return call

    try:
        await run_load(clients, WARMUP_SECONDS, worker)
        tally = Tally()
        result = await run_load(clients, seconds, worker)
    finally:
        # Not booked in the ledger: give it all back, exactly.
        keys = sorted(taken)
        async with pool.acquire() as conn:
            await conn.execute(
                UNDO_SQL, [positions[k][0] for k in keys], [positions[k][1] for k in keys], [taken[k] for k in keys]
            )
        await pool.close()
    return {**result, "ok": tally.ok, "conflict": tally.conflict}


# --- the service over HTTP ------------------------------------------------------------------


async def service(
    port: int, positions: list[Position], start: int, clients: int, seconds: float, ttl: int, allow_409: bool
) -> tuple[dict, int]:
    """POST /v1/reservations for positions[start], ...; returns the result and the next start."""
    bodies = {}
    conns = [RawClient(port) for _ in range(clients)]
    tally = Tally()
    cursor = itertools.count(start)
    used = start

    def worker(cid: int):
        async def call(i: int) -> None:
            nonlocal used
            k = next(cursor)
            used = max(used, k + 1)
            b = bodies.get(k % len(positions))
            if b is None:
                b = bodies[k % len(positions)] = body(positions[k % len(positions)], ttl)
            status, answer = await conns[cid].request("POST", "/v1/reservations", b, JSON)
            if status == 201:
                tally.ok += 1
            elif status == 409 and allow_409:
                tally.conflict += 1
            else:
                raise RuntimeError(f"POST /v1/reservations {b.decode()} answered {status}: {answer[:2000]!r}")

        return call

    try:
        await run_load(clients, WARMUP_SECONDS, worker)
        tally = Tally()
        result = await run_load(clients, seconds, worker)
    finally:
        for c in conns:
            await c.close()
    return {**result, "ok": tally.ok, "conflict": tally.conflict}, used


async def oversell_check(url: str, port: int, pos: Position, ttl: int) -> tuple[bool, str]:
    """Exactly OVERSELL_UNITS available at a fresh position; OVERSELL_CLIENTS clients reserve
    1 unit each until every one of them has been told 409. Exactly that many may succeed."""
    state = await available(url, pos)
    if state["available"] < OVERSELL_UNITS:
        await receipt(port, pos, OVERSELL_UNITS - state["available"])
    before = await available(url, pos)
    if before["available"] != OVERSELL_UNITS:
        return False, f"could not set up {OVERSELL_UNITS} available at {pos}: {dict(before)}"
    b = body(pos, ttl)
    conns = [RawClient(port) for _ in range(OVERSELL_CLIENTS)]
    tally = Tally()

    async def racer(cid: int) -> None:
        while True:
            status, answer = await conns[cid].request("POST", "/v1/reservations", b, JSON)
            if status == 201:
                tally.ok += 1
            elif status == 409:
                tally.conflict += 1
                return
            else:
                raise RuntimeError(f"POST /v1/reservations {b.decode()} answered {status}: {answer[:2000]!r}")

    try:
        await asyncio.gather(*(racer(c) for c in range(OVERSELL_CLIENTS)))
    finally:
        for c in conns:
            await c.close()
    after = await available(url, pos)
    held = after["reserved"] - before["reserved"]
    ok = tally.ok == OVERSELL_UNITS and held == OVERSELL_UNITS and after["available"] == 0
    verdict = (
        f"oversell check: {tally.ok}/{OVERSELL_UNITS} {'ok' if ok else 'FAILED'} "
        f"({OVERSELL_CLIENTS} clients at {pos[0]}@{pos[1]}: {tally.ok} x 201, {tally.conflict} x 409; "
        f"reserved +{held}, available now {after['available']})"
    )
    return ok, verdict


async def ledger(url: str) -> tuple[int, int, list[dict]]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        return await check_ledger(pool)
    finally:
        await pool.close()


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="large", choices=["demo", "large"])
    ap.add_argument("--clients", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--positions", type=int, default=200_000, help="spread: how many positions to walk")
    ap.add_argument("--hot-units", type=int, default=10_000_000, help="hot: available before each measurement")
    ap.add_argument("--ttl", type=int, default=900, help="ttl_seconds of the service's holds")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workers", type=int, default=1, help="service processes (omniroute serve --workers)")
    args = ap.parse_args()

    url, pg = database(args.size)
    rows: list[dict] = []
    notes: list[str] = []
    failed = False
    try:
        p = asyncio.run(plan(url, args.positions, args.seed))
        for clients in args.clients:
            svc = Service(url, workers=args.workers, pool_max=clients)
            try:
                # hot: one row, every request succeeds
                asyncio.run(top_up(url, svc.port, p.hot, args.hot_units))
                ceil = asyncio.run(ceiling(url, [p.hot], 0, clients, args.seconds))
                if ceil["conflict"]:
                    raise RuntimeError(f"hot ceiling ran out of stock ({ceil['conflict']} UPDATE 0): raise --hot-units")
                rows.append(
                    {"scenario": "hot", "path": "asyncpg UPDATE (ceiling)", "clients": clients, **ceil, "ratio": 1.0}
                )
                asyncio.run(top_up(url, svc.port, p.hot, args.hot_units))
                res, _ = asyncio.run(service(svc.port, [p.hot], 0, clients, args.seconds, args.ttl, False))
                rows.append(
                    {
                        "scenario": "hot",
                        "path": f"HTTP POST, --workers {args.workers}",
                        "clients": clients,
                        **res,
                        "ratio": res["rps"] / ceil["rps"],
                    }
                )

                # spread: fresh random positions, 409 allowed
                ceil = asyncio.run(ceiling(url, p.spread, p.spread_offset, clients, args.seconds))
                rows.append(
                    {"scenario": "spread", "path": "asyncpg UPDATE (ceiling)", "clients": clients, **ceil, "ratio": 1.0}
                )
                res, p.spread_offset = asyncio.run(
                    service(svc.port, p.spread, p.spread_offset, clients, args.seconds, args.ttl, True)
                )
                rows.append(
                    {
                        "scenario": "spread",
                        "path": f"HTTP POST, --workers {args.workers}",
                        "clients": clients,
                        **res,
                        "ratio": res["rps"] / ceil["rps"],
                    }
                )
                notes.append(
                    f"spread, {clients} clients: ceiling {ceil['ok']} reserved / {ceil['conflict']} no row "
                    f"(position out of stock); service {res['ok']} x 201 / {res['conflict']} x 409"
                )

                if clients == max(args.clients):
                    ok, verdict = asyncio.run(oversell_check(url, svc.port, p.fresh, args.ttl))
                    failed |= not ok
            finally:
                svc.stop()
        if p.spread_offset > len(p.spread):
            notes.append(f"spread: the service walked {p.spread_offset} positions > {len(p.spread)}: it wrapped")
        checked, drifted, sample = asyncio.run(ledger(url))
        failed |= drifted != 0
    finally:
        if pg is not None and pg.started_by_us:
            pg.stop()

    print(
        f"\nreservations, one line of 1 unit, {args.size} network, {args.seconds:.0f} s each "
        f"(+{WARMUP_SECONDS:.0f} s warm-up), service pool_max = clients; "
        f"hot = {p.hot[0]}@{p.hot[1]}, spread = {len(p.spread):,} seeded random positions with available >= 1"
    )
    print(table(rows, ["scenario", "path", "clients", "requests", "ok", "rps", "p50", "p99", "ratio"]))
    print(
        "(rps = requests/s; p50/p99 in ms, client side; ok = 201 (service) or 1 row updated (ceiling); "
        "ratio = service rps / ceiling rps, same scenario and clients)"
    )
    for note in notes:
        print(note)
    print(verdict)
    print(f"ledger: {checked:,} positions checked, drift {drifted}" + (f": {sample[:5]}" if drifted else ""))
    print(
        f"cpu_count {os.cpu_count()}; command: uv run --extra dev python -m bench.reservations "
        + " ".join(sys.argv[1:])
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
