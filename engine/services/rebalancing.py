"""Rebalancing: demand in, transfer proposals out, then transfers and their receipt.

A run reads the positions that have surplus or shortfall (SQL skips the rest of the
network), solves SKU by SKU in the solver process (`engine.core.rebalance`), and stores
every proposal with its reason. Applying books each proposal with one conditional
statement (`omniroute_transfer`): stock leaves the source only while its available covers
it, so applying under live checkout traffic never oversells; a proposal whose stock has
gone is skipped and reported.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from uuid import UUID, uuid4

import asyncpg
import msgspec

from engine.core import rebalance
from engine.core.access import require_locations, require_role
from engine.core.model import Caller, Role
from engine.errors import BadInput, Conflict, NotFound
from engine.services import idempotency, runs
from engine.services.availability import stock_changed
from engine.store import catalog as catalog_store
from engine.store import meta
from engine.store import rebalancing as store
from engine.store import runs as runs_store
from engine.store.db import with_retry

KIND = "rebalancing"
APPLY_CHUNK = 200
# SKUs per range planned at once: about 400,000 positions on a 200-location network.
SKUS_PER_SHARD = 2000


class DemandRow(msgspec.Struct, frozen=True):
    sku: str
    location_id: str
    units_per_day: float


class LaneCosts(msgspec.Struct, frozen=True, kw_only=True):
    """Every lane between two active locations: unit_cost + km_cost x km per unit, and
    fixed_cost per transfer; `overrides` replace single lanes."""

    unit_cost: float = 0.10
    km_cost: float = 0.0005
    fixed_cost: float = 0.0
    overrides: list[rebalance.Lane] = []


class RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    target_days_cover: float = 14.0
    stockout_cost_per_unit: float = 10.0
    demand: str = "auto"  # given | history | auto
    history_days: int = 28
    lanes: LaneCosts = LaneCosts()
    max_sources_per_destination: int = 8
    time_limit_s: float = 1.0
    skus: list[str] | None = None


class TransferOut(msgspec.Struct, kw_only=True):
    transfer_id: UUID
    run_id: UUID | None
    sku: str
    from_location_id: str
    to_location_id: str
    quantity: int
    status: str
    created_by: str
    created_at: str
    received_by: str | None
    received_at: str | None


class RebalancingRunOut(runs.RunRecord, kw_only=True):
    applied_by: str | None = None
    applied_at: str | None = None
    proposals: list[dict] | None = None
    next_after: int | None = None


async def put_demand(pool: asyncpg.Pool, caller: Caller, rows: list[DemandRow]) -> int:
    require_role(caller, Role.PLANNER)
    skus = sorted({r.sku for r in rows})
    locs = sorted({r.location_id for r in rows})

    async def attempt() -> int:
        async with pool.acquire() as conn, conn.transaction():
            unknown = [("sku", s) for s in await catalog_store.unknown_skus(conn, skus)]
            unknown += [("location_id", loc) for loc in await catalog_store.unknown_locations(conn, locs)]
            if unknown:
                raise BadInput(
                    "unknown sku or location",
                    errors=[{"field": f"demand[].{f}", "message": f"unknown {f} {v}"} for f, v in unknown],
                )
            await store.upsert_demand(conn, [(r.sku, r.location_id, r.units_per_day) for r in rows])
            return len(rows)

    return await with_retry(attempt)


_BASIS = rebalance.Basis.__struct_fields__


def _proposal(p: asyncpg.Record, target_days: float) -> dict:
    out = {k: v for k, v in p.items() if k not in _BASIS}
    if out["reason"] is None:
        basis = rebalance.Basis(*(p[k] for k in _BASIS))
        out["reason"] = rebalance.explain(p["from_location_id"], p["to_location_id"], basis, target_days)
    out["transfer_id"] = str(p["transfer_id"]) if p["transfer_id"] else None
    return out


def _out(row: asyncpg.Record, proposals: list[asyncpg.Record] | None = None, limit: int = 0) -> RebalancingRunOut:
    out = RebalancingRunOut(
        **runs.record_fields(row),
        applied_by=row.get("applied_by"),
        applied_at=row["applied_at"].isoformat() if row.get("applied_at") else None,
    )
    if proposals is not None:
        days = msgspec.convert(row["options"], RunOptions).target_days_cover
        out.proposals = [_proposal(p, days) for p in proposals]
        out.next_after = proposals[-1]["proposal_no"] if len(proposals) == limit else None
    return out


async def trigger(
    pool: asyncpg.Pool, caller: Caller, options: RunOptions, idem_key: str | None = None
) -> tuple[int, bytes]:
    """Start a run in the background and answer 202 with it. A retry with the same
    Idempotency-Key gets that answer and starts nothing."""
    require_role(caller, Role.PLANNER)

    async def begin() -> RebalancingRunOut:
        run = await runs.start(pool, KIND, caller.key_id, msgspec.to_builtins(options))
        row = await runs_store.get(run.conn, KIND, run.run_id)
        runs.in_background(pool, run, lambda r: execute(pool, r, options))
        return _out(row)

    return await idempotency.start(
        pool, caller, idem_key, "rebalancing-runs.start", msgspec.to_builtins(options), begin
    )


async def run_now(pool: asyncpg.Pool, triggered_by: str, options: RunOptions) -> UUID:
    run = await runs.start(pool, KIND, triggered_by, msgspec.to_builtins(options))
    await runs.in_background(pool, run, lambda r: execute(pool, r, options))
    return run.run_id


async def get(pool: asyncpg.Pool, caller: Caller, run_id: UUID, *, after: int, limit: int) -> RebalancingRunOut:
    require_role(caller, Role.PLANNER)
    async with pool.acquire() as conn:
        row = await runs_store.get(conn, KIND, run_id)
        if row is None:
            raise NotFound(f"no rebalancing run {run_id}")
        return _out(row, await store.proposals(conn, run_id, after=after, limit=limit), limit)


class Shard(msgspec.Struct, frozen=True):
    """One range of SKUs planned in a solver process: its proposals as COPY lines (see
    engine.store.rebalancing.proposal_lines) and what the run's summary counts."""

    positions: int
    skus: int
    lanes: int
    count: int
    lines: bytes
    units: int
    transfer_cost: float
    stockout_units_avoided: int
    solvers: dict[str, int]
    solve_s: float


_lanes_cache: tuple[object, dict] | None = None


def _lanes(locations: list[tuple[str, float, float]], options: LaneCosts) -> dict:
    """Every lane between the active locations, built once per solver process and run."""
    global _lanes_cache
    key = (locations, msgspec.json.encode(options))
    if _lanes_cache is None or _lanes_cache[0] != key:
        lanes = rebalance.distance_lanes(
            locations, unit_cost=options.unit_cost, km_cost=options.km_cost, fixed_cost=options.fixed_cost
        )
        for lane in options.overrides:
            lanes[(lane.from_id, lane.to_id)] = lane
        _lanes_cache = (key, lanes)
    return _lanes_cache[1]


def plan_shard(run_id: UUID, needs_json: str, locations: list[tuple[str, float, float]], options: RunOptions) -> Shard:
    """The solve of one range of SKUs, in a solver process: decode the positions, plan
    every SKU, format the proposals for COPY."""
    t = time.perf_counter()
    rows = msgspec.json.decode(needs_json, type=list[tuple[str, str, int, int, float]])
    needs = [rebalance.Need(*r) for r in rows]
    lanes = _lanes(locations, options.lanes)
    policy = rebalance.Policy(
        target_days_cover=options.target_days_cover,
        stockout_cost_per_unit=options.stockout_cost_per_unit,
        max_sources_per_destination=options.max_sources_per_destination,
        time_limit_s=options.time_limit_s,
    )
    plans = rebalance.rebalance(needs, lanes, policy)
    solvers: dict[str, int] = {}
    for p in plans:
        key = f"{p.solver}:{p.status}"
        solvers[key] = solvers.get(key, 0) + 1
    proposals = [x for p in plans for x in p.proposals]
    count, lines = store.proposal_lines(run_id, plans)
    return Shard(
        positions=len(needs),
        skus=len(plans),
        lanes=len(lanes),
        count=count,
        lines=lines,
        units=sum(x.quantity for x in proposals),
        transfer_cost=sum(x.cost for x in proposals),
        stockout_units_avoided=sum(x.stockout_units_avoided for x in proposals),
        solvers=solvers,
        solve_s=time.perf_counter() - t,
    )


async def execute(pool: asyncpg.Pool, run: runs.Run, options: RunOptions) -> None:
    """Gather, decide, apply, pipelined over ranges of SKUs: while the solver processes
    plan some ranges, the next is read and the finished ones are written, in SKU order,
    all in the one transaction that finishes the run (a run that fails leaves no
    proposals)."""
    t0 = time.perf_counter()
    await run.phase("reading SKUs and locations")
    async with pool.acquire() as conn:
        bounds = await store.shards(conn, options.skus, SKUS_PER_SHARD, runs.solver_processes())
        locations = [(r["location_id"], r["lat"], r["lon"]) for r in await store.locations(conn)]
    read_s = write_s = 0.0

    async def prepare(first: str, last: str) -> Shard:
        nonlocal read_s
        t = time.perf_counter()
        async with pool.acquire() as conn:
            needs_json = await store.needs(
                conn,
                demand=options.demand,
                history_days=options.history_days,
                target_days=options.target_days_cover,
                skus=options.skus,
                first=first,
                last=last,
            )
        read_s += time.perf_counter() - t
        return await runs.solve(plan_shard, run.run_id, needs_json, locations, options)

    # Enough ranges under way to keep every solver process busy, and no more: finished
    # ranges wait in memory until their turn to be written.
    ahead = runs.solver_processes() + 1
    todo = iter(bounds)
    pending: deque[asyncio.Task[Shard]] = deque()

    def refill() -> None:
        while len(pending) < ahead and (nxt := next(todo, None)) is not None:
            pending.append(asyncio.create_task(prepare(*nxt)))

    totals = {"positions_read": 0, "skus_solved": 0, "lanes": 0, "proposals": 0, "units": 0}
    cost = solve_s = 0.0
    avoided = 0
    solvers: dict[str, int] = {}
    try:
        refill()
        async with pool.acquire() as conn, conn.transaction():
            for done in range(len(bounds)):
                await run.phase(f"planning SKU ranges: {done} of {len(bounds)} written")
                shard = await pending.popleft()
                refill()
                t = time.perf_counter()
                await store.write_proposals(conn, totals["proposals"] + 1, shard.count, shard.lines)
                write_s += time.perf_counter() - t
                totals["positions_read"] += shard.positions
                totals["skus_solved"] += shard.skus
                totals["lanes"] = shard.lanes
                totals["proposals"] += shard.count
                totals["units"] += shard.units
                cost += shard.transfer_cost
                avoided += shard.stockout_units_avoided
                solve_s += shard.solve_s
                for key, n in shard.solvers.items():
                    solvers[key] = solvers.get(key, 0) + n
            summary = {
                **totals,
                "transfer_cost": round(cost, 2),
                "stockout_units_avoided": avoided,
                "solvers": solvers,
                "sku_ranges": len(bounds),
                "solver_processes": runs.solver_processes(),
                # Phases overlap: each is the sum over SKU ranges, and may exceed the wall time.
                "read_ms": round(read_s * 1000, 1),
                "solve_ms": round(solve_s * 1000, 1),
                "write_ms": round(write_s * 1000, 1),
                "wall_ms": round((time.perf_counter() - t0) * 1000, 1),
            }
            await runs_store.finish(conn, KIND, run.run_id, status="proposed", summary=summary)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def apply(pool: asyncpg.Pool, caller: Caller, run_id: UUID, idem_key: str | None = None) -> tuple[int, bytes]:
    """Start booking the run's proposals as transfers (in the background); Conflict unless
    the run is 'proposed' and no other rebalancing run is running or applying. A run whose
    applying stops half-way (a crash, a shutdown) returns to 'proposed': applying it again
    books only the proposals not yet applied or skipped. A retry with the same
    Idempotency-Key gets the first answer instead of a Conflict."""
    require_role(caller, Role.PLANNER)
    return await idempotency.start(
        pool,
        caller,
        idem_key,
        "rebalancing-runs.apply",
        {"run_id": str(run_id)},
        lambda: _start_apply(pool, caller, run_id),
    )


async def _start_apply(pool: asyncpg.Pool, caller: Caller, run_id: UUID) -> RebalancingRunOut:
    conn = await pool.acquire()
    try:
        if not await meta.try_lock(conn, runs.LOCKS[KIND]):
            raise Conflict("a rebalancing run is under way; apply when it has finished")
        try:
            await runs_store.fail_interrupted(conn, KIND)
            status = await store.set_applying(conn, run_id, caller.key_id)
            if status is None:
                raise NotFound(f"no rebalancing run {run_id}")
            if status != "proposed":
                raise Conflict(f"rebalancing run {run_id} is {status}; only a proposed run can be applied")
            row = await runs_store.get(conn, KIND, run_id)
        except BaseException:
            await meta.unlock(conn, runs.LOCKS[KIND])
            raise
    except BaseException:
        await pool.release(conn)
        raise
    run = runs.Run(KIND, run_id, conn)
    runs.in_background(pool, run, lambda r: _apply(pool, r, caller.key_id), failed_status="proposed")
    return _out(row)


async def _apply(pool: asyncpg.Pool, run: runs.Run, actor: str) -> None:
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        todo = await store.to_apply(conn, run.run_id)
    applied = skipped = units = 0
    for i in range(0, len(todo), APPLY_CHUNK):
        chunk = todo[i : i + APPLY_CHUNK]
        await run.phase(f"applying: {i} of {len(todo)} proposals")

        async def attempt(chunk: list[asyncpg.Record] = chunk) -> tuple[int, int, int]:
            done = gone = moved = 0
            async with pool.acquire() as conn, conn.transaction():
                for p in chunk:
                    reason = await store.transfer(
                        conn,
                        transfer_id=uuid4(),
                        run_id=run.run_id,
                        proposal_no=p["proposal_no"],
                        sku=p["sku"],
                        from_id=p["from_location_id"],
                        to_id=p["to_location_id"],
                        quantity=p["quantity"],
                        actor=actor,
                    )
                    if reason is None:
                        done += 1
                        moved += p["quantity"]
                    else:
                        gone += 1
            return done, gone, moved

        d, g, m = await with_retry(attempt)
        stock_changed(p["sku"] for p in chunk)
        applied, skipped, units = applied + d, skipped + g, units + m
    result = {
        "transfers": applied,
        "skipped": skipped,
        "units_in_transit": units,
        "wall_ms": round((time.perf_counter() - t0) * 1000, 1),
    }
    await store.finish_apply(run.conn, run.run_id, result)


# -- transfers --------------------------------------------------------------------------------


def _transfer_out(row: asyncpg.Record) -> TransferOut:
    return TransferOut(
        transfer_id=row["transfer_id"],
        run_id=row["run_id"],
        sku=row["sku"],
        from_location_id=row["from_location_id"],
        to_location_id=row["to_location_id"],
        quantity=row["quantity"],
        status=row["status"],
        created_by=row["created_by"],
        created_at=row["created_at"].isoformat(),
        received_by=row["received_by"],
        received_at=row["received_at"].isoformat() if row["received_at"] else None,
    )


async def get_transfer(pool: asyncpg.Pool, caller: Caller, transfer_id: UUID) -> TransferOut:
    require_role(caller, Role.PLANNER, Role.POS)
    async with pool.acquire() as conn:
        row = await store.get_transfer(conn, transfer_id)
    if row is None or (
        caller.role is Role.POS and caller.location_id not in (row["from_location_id"], row["to_location_id"])
    ):
        raise NotFound(f"no transfer {transfer_id}")
    return _transfer_out(row)


async def receive(pool: asyncpg.Pool, caller: Caller, transfer_id: UUID) -> TransferOut:
    """The units arrived at the destination: transfer_in. Receiving again changes nothing."""
    require_role(caller, Role.POS)

    async def attempt() -> TransferOut:
        async with pool.acquire() as conn, conn.transaction():
            row = await store.get_transfer(conn, transfer_id, lock=True)
            if row is None:
                raise NotFound(f"no transfer {transfer_id}")
            require_locations(caller, [row["to_location_id"]])
            if row["status"] == "in_transit":
                await store.receive(conn, transfer_id, caller.key_id)
                row = await store.get_transfer(conn, transfer_id)
            return _transfer_out(row)

    out = await with_retry(attempt)
    stock_changed([out.sku])
    return out
