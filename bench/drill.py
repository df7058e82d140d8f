"""Crash drill: `kill -9` the service under write traffic, restart it, and prove that
nothing acknowledged was lost and nothing unacknowledged was half-written.

Clients reserve, commit, release, sell (POS), receive stock and place orders, each request
with an Idempotency-Key of its own, and record it as acknowledged (its answer arrived) or
in flight (the connection died first). Meanwhile the service process group is killed at
random moments and started again; PostgreSQL runs apart from it, so it lives on, as the
database of a crashed application server would. Every few cycles PostgreSQL crashes too
(when the drill runs its own), under the running service, which must recover by itself;
a request answered 503 meanwhile is, like one in flight, of unknown outcome. Afterwards,
with the service up:

- every acknowledged write is in the database exactly once, and asking again with its key
  returns the very bytes it was answered the first time;
- every request that was in flight is there in full or not at all (never a part, never a
  claimed key without its effect); sent again with its key and body it is answered with
  the stored first answer (if it had been applied) or applied now, and then it is there
  exactly once: never twice;
- `omniroute check` finds no drift; no position holds more than it has, and each
  position's `reserved` equals the live holds at it.

Command: `uv run --extra dev python -m bench.drill [--cycles 20] [--clients 32] [--seconds 4]
[--db-crash-every 5] [--workers 1]`.
The database is an embedded PostgreSQL the drill starts in a temporary directory, or a
fresh database on the server named by OMNIROUTE_DATABASE_URL (dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.common import BENCH_KEY, RawClient, Service, free_port, table
from engine.embedded import EmbeddedPostgres
from engine.services.setup import apply_migrations

# Where stock is held and shipped from; sales happen only at STORE-POS, which neither
# ships nor takes pickups, so a sale never takes stock that a hold counts on and
# "no position holds more than it has" is a strict check everywhere else.
LOCATIONS = {
    "DC-EAST": {"kind": "warehouse", "name": "East DC", "lat": 40.5, "lon": -74.4, "pick_cost_per_unit": 0.3},
    "DC-MID": {"kind": "warehouse", "name": "Midwest DC", "lat": 41.6, "lon": -87.9, "pick_cost_per_unit": 0.3},
    "STORE-NYC": {"kind": "store", "name": "Manhattan", "lat": 40.71, "lon": -74.01, "pickup": True},
    "STORE-PHL": {"kind": "store", "name": "Philadelphia", "lat": 39.95, "lon": -75.17, "pickup": True},
    "STORE-BOS": {"kind": "store", "name": "Boston", "lat": 42.36, "lon": -71.06, "pickup": True},
    "STORE-POS": {"kind": "store", "name": "Till store", "lat": 40.73, "lon": -73.99, "ships": False},
}
HOLD_SITES = [loc for loc in LOCATIONS if loc != "STORE-POS"]
SKUS = [f"DRILL-{i:03d}" for i in range(24)]
START_STOCK = {"warehouse": 400, "store": 40, "till": 100_000}
DESTINATIONS = [(40.71, -74.01), (39.95, -75.17), (42.36, -71.06), (41.88, -87.63), (38.90, -77.04)]
# Share of each kind of request; commit and release fall back to a reservation when the
# client holds nothing.
MIX = {"reserve": 30, "commit": 12, "release": 12, "sale": 16, "receipt": 14, "order": 16}
HOLD_TTL = 3600  # no hold expires during a drill: every change of state is a request's


@dataclass
class Op:
    """One request as sent, and what became of it."""

    op_id: str
    kind: str
    role: str
    path: str
    body: bytes
    lines: int
    cycle: int
    reservation_id: str | None = None  # the hold a commit or release acts on
    status: int | None = None  # None: in flight when the service died, or answered 503
    answer: bytes = b""
    unavailable: bool = False  # answered 503 (the database was down): outcome unknown too


@dataclass
class Drill:
    port: int
    keys: dict[str, str]
    rng: random.Random
    cycle: int = 0
    ops: list[Op] = field(default_factory=list)


@dataclass
class Report:
    cycles: int = 0
    db_crashes: int = 0
    requests: int = 0
    acknowledged: int = 0
    refused: int = 0  # acknowledged 409s (not enough stock): nothing may be written
    in_flight: int = 0
    unavailable: int = 0  # of those, answered 503 while the database was down
    in_flight_applied: int = 0  # in flight, found applied in full before the replay
    replayed: int = 0
    lost: int = 0
    half_written: int = 0
    double_effects: int = 0
    inconsistent_replays: int = 0
    errors: int = 0  # answers other than 2xx and 409 (a 5xx, or a 4xx the drill never provokes)
    drift: int = -1
    over_reserved: int = -1
    holds_mismatch: int = -1
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        bad = (
            self.lost,
            self.half_written,
            self.double_effects,
            self.inconsistent_replays,
            self.errors,
            self.drift,
            self.over_reserved,
            self.holds_mismatch,
        )
        return not any(bad)


def _idem(op_id: str) -> str:
    return f"Idempotency-Key: {op_id}\r\nContent-Type: application/json\r\n"


def _next_op(drill: Drill, holds: list[tuple[str, int]]) -> Op:
    rng = drill.rng
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    if kind in ("commit", "release") and not holds:
        kind = "reserve"
    op_id = f"drill-{uuid.uuid4().hex[:20]}"
    if kind == "reserve":
        picks = sorted({(rng.choice(SKUS), rng.choice(HOLD_SITES)) for _ in range(rng.randint(1, 3))})
        lines = [{"sku": s, "location_id": loc, "quantity": rng.randint(1, 3)} for s, loc in picks]
        body = {"lines": lines, "ttl_seconds": HOLD_TTL, "reference": op_id}
        return Op(op_id, kind, "checkout", "/v1/reservations", _json(body), len(lines), drill.cycle)
    if kind in ("commit", "release"):
        rid, n = holds.pop(rng.randrange(len(holds)))
        path = f"/v1/reservations/{rid}/{kind}"
        return Op(op_id, kind, "checkout", path, b"", n, drill.cycle, reservation_id=rid)
    if kind == "sale":
        skus = sorted(rng.sample(SKUS, rng.randint(1, 2)))
        movements = [
            {"sku": s, "location_id": "STORE-POS", "kind": "sale", "quantity": rng.randint(1, 2)} for s in skus
        ]
        body = {"movements": movements, "reference": op_id}
        return Op(op_id, kind, "pos", "/v1/stock/movements", _json(body), len(movements), drill.cycle)
    if kind == "receipt":
        movements = [
            {
                "sku": rng.choice(SKUS),
                "location_id": rng.choice(HOLD_SITES),
                "kind": "receipt",
                "quantity": rng.randint(10, 30),
            }
        ]
        body = {"movements": movements, "reference": op_id}
        return Op(op_id, kind, "admin", "/v1/stock/movements", _json(body), 1, drill.cycle)
    lat, lon = rng.choice(DESTINATIONS)
    skus = rng.sample(SKUS, rng.randint(1, 3))
    body = {
        "order_id": op_id,
        "channel": "web",
        "destination": {"lat": lat, "lon": lon},
        "method": "ship",
        "lines": [{"line_id": str(i + 1), "sku": s, "quantity": rng.randint(1, 2)} for i, s in enumerate(skus)],
        "allow_split": True,
        "allow_partial": True,
    }
    return Op(op_id, "order", "checkout", "/v1/orders", _json(body), len(skus), drill.cycle)


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


async def _send(client: RawClient, drill: Drill, op: Op) -> tuple[int, bytes]:
    return await client.request("POST", op.path, op.body, _idem(op.op_id), key=drill.keys[op.role])


async def _client(drill: Drill, stop: asyncio.Event) -> None:
    """Send requests one after another until `stop`; a request whose connection dies is
    recorded as in flight, and the client goes on with new requests once the service is
    back (as a till or a checkout would: it does not know whether the write happened)."""
    client = RawClient(drill.port)
    holds: list[tuple[str, int]] = []  # acknowledged active holds of this client
    op: Op | None = None
    while not stop.is_set():
        op = op or _next_op(drill, holds)
        try:
            await client.connect()
        except OSError:  # the service is down: nothing was sent
            await asyncio.sleep(0.02)
            continue
        drill.ops.append(op)
        try:
            op.status, op.answer = await _send(client, drill, op)
        except (OSError, asyncio.IncompleteReadError):
            op = None  # in flight: its fate is settled at the end
            continue
        if op.status == 503:  # the database is down: a commit may have landed all the same
            op.status, op.unavailable = None, True
            op = None
            await asyncio.sleep(0.05)
            continue
        if op.kind == "reserve" and op.status == 201:
            holds.append((json.loads(op.answer)["reservation_id"], op.lines))
        op = None
    await client.close()


# --- what the database holds for each request -------------------------------------------------

SNAPSHOT_SQL = {
    "reservations": """SELECT r.reference, r.reservation_id::text AS rid, r.status,
                              (SELECT count(*) FROM reservation_lines l WHERE l.reservation_id = r.reservation_id) AS n
                       FROM reservations r WHERE r.reference LIKE 'drill-%'""",
    "status": "SELECT reservation_id::text AS rid, status FROM reservations",
    "ledger": """SELECT reference, kind, count(*) AS n FROM stock_movements
                 WHERE kind IN ('reserve', 'commit', 'release', 'sale', 'receipt') GROUP BY reference, kind""",
    "orders": "SELECT order_id FROM orders WHERE order_id LIKE 'drill-%'",
    "keys": """SELECT idem_key, status_code, response FROM idempotency_keys WHERE idem_key LIKE 'drill-%'""",
}


@dataclass
class Snapshot:
    reservations: dict[str, list[tuple[str, str, int]]]  # reference -> [(rid, status, lines)]
    status: dict[str, str]
    ledger: Counter  # (reference, kind) -> rows
    orders: set[str]
    keys: dict[str, tuple[int | None, bytes | None]]


async def snapshot(conn: asyncpg.Connection) -> Snapshot:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        res: dict[str, list] = {}
        for r in await conn.fetch(SNAPSHOT_SQL["reservations"]):
            res.setdefault(r["reference"], []).append((r["rid"], r["status"], r["n"]))
        return Snapshot(
            reservations=res,
            status={r["rid"]: r["status"] for r in await conn.fetch(SNAPSHOT_SQL["status"])},
            ledger=Counter({(r["reference"], r["kind"]): r["n"] for r in await conn.fetch(SNAPSHOT_SQL["ledger"])}),
            orders={r["order_id"] for r in await conn.fetch(SNAPSHOT_SQL["orders"])},
            keys={
                r["idem_key"]: (r["status_code"], bytes(r["response"]) if r["response"] is not None else None)
                for r in await conn.fetch(SNAPSHOT_SQL["keys"])
            },
        )


def effect(op: Op, snap: Snapshot) -> str:
    """'none', 'full', 'double' or 'partial': how much of `op` the database holds. A key
    claimed without its effect (or an effect without its stored answer) is partial."""
    key = snap.keys.get(op.op_id)
    if key is not None and key[0] is None:
        return "partial"  # claimed, never finished: the claim outlived its transaction
    stored = key is not None and key[0] < 300
    if op.kind == "reserve":
        found = snap.reservations.get(op.op_id, [])
        if len(found) > 1:
            return "double"
        if not found:
            return "partial" if stored else "none"
        rid, _status, n = found[0]
        whole = n == op.lines and snap.ledger[(rid, "reserve")] == op.lines
        return "full" if whole and stored else "partial"
    if op.kind in ("commit", "release"):
        rows = snap.ledger[(op.reservation_id, op.kind)]
        final = "committed" if op.kind == "commit" else "released"
        if rows == 0 and not stored and snap.status.get(op.reservation_id) == "active":
            return "none"
        if rows == op.lines and stored and snap.status.get(op.reservation_id) == final:
            return "full"
        return "double" if rows > op.lines else "partial"
    if op.kind in ("sale", "receipt"):
        rows = snap.ledger[(op.op_id, op.kind)]
        if rows > op.lines:
            return "double"
        if rows == 0:
            return "partial" if stored else "none"
        return "full" if rows == op.lines and stored else "partial"
    placed = op.op_id in snap.orders
    if placed != stored:
        return "partial"
    return "full" if placed else "none"


async def positions_audit(conn: asyncpg.Connection) -> tuple[int, int]:
    """(positions holding more than they have outside the till store, positions whose
    `reserved` differs from the sum of their live holds)."""
    over = await conn.fetchval(
        """SELECT count(*) FROM stock_positions p JOIN locations l USING (location_id)
           WHERE p.location_id <> 'STORE-POS' AND p.reserved > p.on_hand - coalesce(p.safety_stock, l.safety_stock)"""
    )
    mismatch = await conn.fetchval(
        """SELECT count(*) FROM stock_positions p
           LEFT JOIN (SELECT sku, location_id, sum(quantity) AS held FROM reservation_lines
                      WHERE state = 'active' GROUP BY sku, location_id) h USING (sku, location_id)
           WHERE p.reserved <> coalesce(h.held, 0)"""
    )
    return over, mismatch


def omniroute_check(url: str) -> int:
    """`omniroute check` as ops would run it: the number of drifted positions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "check"],
        env={**env, "OMNIROUTE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode not in (0, 1):
        raise RuntimeError(f"omniroute check failed ({out.returncode}): {out.stderr}")
    return json.loads(out.stdout)["drifted"]


# --- the drill --------------------------------------------------------------------------------


async def _setup(port: int) -> dict[str, str]:
    """The small network, its stock, and one key per role the clients use."""
    admin = RawClient(port)
    try:

        async def call(method: str, path: str, body: object, expect: tuple[int, ...]) -> dict:
            status, answer = await admin.request(method, path, _json(body), "Content-Type: application/json\r\n")
            if status not in expect:
                raise RuntimeError(f"{method} {path}: {status} {answer[:300]!r}")
            return json.loads(answer)

        for loc, body in LOCATIONS.items():
            await call("PUT", f"/v1/locations/{loc}", body, (200, 201))
        await call("POST", "/v1/items/bulk", {"items": [{"sku": s, "name": s, "weight_kg": 1.0} for s in SKUS]}, (200,))
        movements = [
            {
                "sku": s,
                "location_id": loc,
                "kind": "receipt",
                "quantity": START_STOCK["till" if loc == "STORE-POS" else body["kind"]],
            }
            for loc, body in LOCATIONS.items()
            for s in SKUS
        ]
        await call("POST", "/v1/stock/movements", {"movements": movements, "reference": "drill-start"}, (201,))
        checkout = await call("POST", "/v1/api-keys", {"role": "checkout", "name": "drill checkout"}, (201,))
        pos = await call(
            "POST", "/v1/api-keys", {"role": "pos", "location_id": "STORE-POS", "name": "drill till"}, (201,)
        )
        return {"checkout": checkout["key"], "pos": pos["key"], "admin": BENCH_KEY}
    finally:
        await admin.close()


SERVICE_ENV = {
    # Nothing may change state on its own during a drill: every change is a request's.
    "OMNIROUTE_ROUTING_RUN_MINUTES": "0",
    "OMNIROUTE_REBALANCING_CRON": "off",
}


async def run(
    url: str,
    *,
    cycles: int,
    clients: int,
    seconds: float,
    workers: int = 1,
    seed: int = 7,
    log: Path | None = None,
    progress: bool = False,
    during: Callable[[], Awaitable[object]] | None = None,
    database: EmbeddedPostgres | None = None,
    db_crash_every: int = 0,
) -> Report:
    """Run the drill against the migrated, empty database at `url` and return its report.

    `during`, when given, is awaited after the kill cycles while the clients keep writing
    (a migration applied under load, say); with `cycles=0` nothing is killed, and the
    same checks judge what happened to the writes around it.

    With `database` (the server behind `url`) and `db_crash_every` k, after every k-th
    kill cycle PostgreSQL itself crashes too (`pg_ctl stop -m immediate`, no checkpoint)
    and is started again, while the service runs on: it must recover by itself."""
    started = time.perf_counter()
    rng = random.Random(seed)
    port = free_port()

    def start() -> Service:
        return Service(url, workers=workers, pool_max=max(20, clients), port=port, env=SERVICE_ENV, log=log)

    svc = await asyncio.to_thread(start)
    report = Report()
    try:
        drill = Drill(port=port, keys=await _setup(port), rng=rng)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_client(drill, stop)) for _ in range(clients)]
        for cycle in range(1, cycles + 1):
            await asyncio.sleep(rng.uniform(0.5, 1.5) * seconds)
            svc.kill()
            drill.cycle = cycle
            svc = await asyncio.to_thread(start)
            report.cycles = cycle
            if progress:
                print(f"cycle {cycle}/{cycles}: killed and restarted; {len(drill.ops)} requests so far", flush=True)
            if database is not None and db_crash_every and cycle % db_crash_every == 0:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * seconds)
                await _crash_database(database, svc, rng)
                report.db_crashes += 1
                if progress:
                    print("  PostgreSQL crashed and restarted; the service recovered by itself", flush=True)
        if during is not None:
            await asyncio.sleep(seconds)
            await during()
        await asyncio.sleep(seconds)  # traffic after the last restart (or `during`), too
        stop.set()
        await asyncio.gather(*tasks)
        await _verify(url, drill, report)
    finally:
        svc.stop()
    report.seconds = time.perf_counter() - started
    return report


async def _crash_database(database: EmbeddedPostgres, svc: Service, rng: random.Random) -> None:
    """Crash PostgreSQL under the running service, start it again, and wait for the
    service to be ready again on its own (same process: it is never restarted here)."""
    await asyncio.to_thread(database.stop, "immediate")
    await asyncio.sleep(rng.uniform(0.2, 1.0))
    await asyncio.to_thread(database.start)
    client = RawClient(svc.port)
    try:
        deadline = time.monotonic() + 60
        while (await client.request("GET", "/readyz"))[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not recover after PostgreSQL came back")
            await asyncio.sleep(0.1)
    finally:
        await client.close()
    if svc.proc.poll() is not None:
        raise RuntimeError("the service died when PostgreSQL crashed")


async def _verify(url: str, drill: Drill, report: Report) -> None:
    ops = drill.ops
    report.requests = len(ops)
    acked = [op for op in ops if op.status is not None]
    in_flight = [op for op in ops if op.status is None]
    report.acknowledged = sum(1 for op in acked if op.status < 300)
    report.refused = sum(1 for op in acked if op.status == 409)
    report.in_flight = len(in_flight)
    report.unavailable = sum(1 for op in in_flight if op.unavailable)
    for op in acked:
        if op.status >= 300 and op.status != 409:
            report.errors += 1
            report.problems.append(f"{op.kind} {op.op_id}: answered {op.status} {op.answer[:200]!r}")

    conn = await asyncpg.connect(url)
    try:
        before = await snapshot(conn)
        for op in acked:
            got = effect(op, before)
            want = "full" if op.status < 300 else "none"
            if got != want:
                report.lost += want == "full"
                report.half_written += got == "partial"
                report.double_effects += got == "double"
                report.problems.append(
                    f"acknowledged {op.kind} {op.op_id} ({op.status}, cycle {op.cycle}): found {got}"
                )
        applied = {}
        for op in in_flight:
            applied[op.op_id] = got = effect(op, before)
            if got in ("partial", "double"):
                report.half_written += got == "partial"
                report.double_effects += got == "double"
                report.problems.append(f"in-flight {op.kind} {op.op_id} (cycle {op.cycle}): found {got}")
        report.in_flight_applied = sum(1 for v in applied.values() if v == "full")

        # Ask again, with the same key and body, for everything: the acknowledged ones must
        # get the bytes they got, the in-flight ones their stored answer or a fresh one.
        again = [op for op in ops if op.status is None or op.status < 300]
        replays = await _replay(drill, again)
        report.replayed = len(in_flight)
        after = await snapshot(conn)
        for op, (status, answer) in zip(again, replays, strict=True):
            got = effect(op, after)
            if op.status is not None:
                if (status, answer) != (op.status, op.answer):
                    report.inconsistent_replays += 1
                    report.problems.append(f"replayed {op.kind} {op.op_id}: {op.status} then {status}")
                elif got != "full":
                    report.double_effects += got == "double"
                    report.inconsistent_replays += got != "double"
                    report.problems.append(f"replayed {op.kind} {op.op_id}: then found {got}")
                continue
            stored = before.keys.get(op.op_id)
            if applied[op.op_id] == "full" and (stored is None or (status, answer) != stored):
                report.inconsistent_replays += 1
                report.problems.append(f"in-flight {op.kind} {op.op_id}: replay {status} is not the stored answer")
            elif status < 300 and got != "full":
                report.double_effects += got == "double"
                report.inconsistent_replays += got != "double"
                report.problems.append(f"in-flight {op.kind} {op.op_id}: replayed {status}, found {got}")
            elif status == 409 and got != "none":
                report.inconsistent_replays += 1
                report.problems.append(f"in-flight {op.kind} {op.op_id}: refused on replay, found {got}")
            elif status >= 300 and status != 409:
                report.errors += 1
                report.problems.append(f"in-flight {op.kind} {op.op_id}: replayed {status} {answer[:200]!r}")
        report.over_reserved, report.holds_mismatch = await positions_audit(conn)
    finally:
        await conn.close()
    report.drift = await asyncio.to_thread(omniroute_check, url)


async def _replay(drill: Drill, ops: list[Op], concurrency: int = 8) -> list[tuple[int, bytes]]:
    """Each request again with its key and body, a few at a time. Order does not matter:
    every hold a commit or release names was acknowledged, so it exists."""
    results: list[tuple[int, bytes] | None] = [None] * len(ops)
    position = iter(range(len(ops)))

    async def worker() -> None:
        client = RawClient(drill.port)
        try:
            for i in position:
                results[i] = await _send(client, drill, ops[i])
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


# --- the database the drill runs on -----------------------------------------------------------


class Database:
    """A fresh database: on OMNIROUTE_DATABASE_URL's server (created, then dropped), else
    on an embedded PostgreSQL in a temporary directory (started, then stopped and removed)."""

    def __init__(self, server_url: str | None = None) -> None:
        self.pg: EmbeddedPostgres | None = None
        self.tmp: str | None = None
        if server_url is None:
            self.tmp = tempfile.mkdtemp(prefix="omniroute-drill-")
            self.pg = EmbeddedPostgres(Path(self.tmp))
            server_url = self.pg.start()
        self.server_url = server_url
        self.name = f"omniroute_drill_{os.getpid()}"
        self.url = urlunsplit(urlsplit(server_url)._replace(path="/" + self.name))

    async def create(self, *, migrated: bool = True) -> str:
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await admin.close()
        if migrated:
            await apply_migrations(self.url)
        return self.url

    async def drop(self) -> None:
        try:
            admin = await asyncpg.connect(self.server_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await admin.close()
        finally:
            if self.pg is not None:
                self.pg.stop()
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)


def summary(report: Report) -> str:
    row = {
        "cycles": report.cycles,
        "db crashes": report.db_crashes,
        "requests": report.requests,
        "acknowledged": report.acknowledged,
        "refused 409": report.refused,
        "in flight": report.in_flight,
        "of which 503": report.unavailable,
        "found applied": report.in_flight_applied,
        "replayed": report.replayed,
        "lost": report.lost,
        "half-written": report.half_written,
        "double": report.double_effects,
        "bad replays": report.inconsistent_replays,
        "errors": report.errors,
        "drift": report.drift,
        "over-reserved": report.over_reserved,
        "reserved != holds": report.holds_mismatch,
        "seconds": report.seconds,
    }
    return table([row], list(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="kill -9 and restart this many times")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=4.0, help="mean traffic time between kills")
    parser.add_argument("--workers", type=int, default=1, help="service worker processes (`serve --workers`)")
    parser.add_argument(
        "--db-crash-every",
        type=int,
        default=5,
        help="also crash PostgreSQL after every k-th cycle (the drill's own embedded server only; 0: never)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log", type=Path, help="append the service's output here")
    args = parser.parse_args(argv)

    async def go() -> Report:
        db = Database(os.environ.get("OMNIROUTE_DATABASE_URL") or None)
        try:
            url = await db.create()
            return await run(
                url,
                cycles=args.cycles,
                clients=args.clients,
                seconds=args.seconds,
                workers=args.workers,
                seed=args.seed,
                log=args.log,
                progress=True,
                database=db.pg,
                db_crash_every=args.db_crash_every,
            )
        finally:
            await db.drop()

    report = asyncio.run(go())
    print(summary(report))
    for line in report.problems[:50]:
        print("  " + line)
    print("drill passed" if report.ok else "DRILL FAILED", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
