"""Routing runs (batch re-brokering): read every open order, re-solve them jointly, apply
the groups of changes that lower the total cost, and record why.

Applying a group is one transaction: the orders are locked, checked unchanged since the run
read them, their old holds released and the new ones taken with the same conditional
reservation checkout uses, so no unit is ever promised twice; if the stock a group needs
was taken meanwhile, the whole group is skipped and reported, and those orders keep their
plans.
"""

from __future__ import annotations

import time
from datetime import date
from uuid import UUID

import asyncpg
import msgspec

from engine.core.access import require_role
from engine.core.model import Caller, Role
from engine.core.reservations import Status
from engine.core.routing import CostModel, Line, Order
from engine.core.routing.batch import BatchResult, Change, Pending, plan_run
from engine.errors import NotFound
from engine.services import idempotency, runs
from engine.services.orders import OrderRequest, fulfillment_rows, order_status, reserve_plan, sites_of
from engine.store import orders as orders_store
from engine.store import reservations as reservations_store
from engine.store import runs as store
from engine.store.db import with_retry

KIND = "routing"
MAX_TIME_LIMIT_S = 600.0


class RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    """`time_limit_s`: budget for the whole solve (framing and search); `bound_time_limit_s`: budget for the LP bound;
    `apply`: False plans and reports without changing anything."""

    time_limit_s: float = 30.0
    bound_time_limit_s: float = 30.0
    apply: bool = True


class RunOut(runs.RunRecord, kw_only=True):
    changes: list | None = None


def _out(row: asyncpg.Record) -> RunOut:
    return RunOut(**runs.record_fields(row), changes=row.get("changes"))


async def trigger(
    pool: asyncpg.Pool, caller: Caller, options: RunOptions, costs: CostModel, idem_key: str | None = None
) -> tuple[int, bytes]:
    """Start a run in the background and answer 202 with it (status 'running'). Conflict if
    one is running in any process. A retry with the same Idempotency-Key gets that answer."""
    require_role(caller, Role.PLANNER)

    async def begin() -> RunOut:
        run = await runs.start(pool, KIND, caller.key_id, msgspec.to_builtins(options))
        row = await store.get(run.conn, KIND, run.run_id)
        runs.in_background(pool, run, lambda r: execute(pool, r, options, costs))
        return _out(row)

    return await idempotency.start(pool, caller, idem_key, "routing-runs.start", msgspec.to_builtins(options), begin)


async def run_now(pool: asyncpg.Pool, triggered_by: str, options: RunOptions, costs: CostModel) -> UUID:
    """Run to the end in this task (the scheduler, the CLI). Conflict if one is running."""
    run = await runs.start(pool, KIND, triggered_by, msgspec.to_builtins(options))
    await runs.in_background(pool, run, lambda r: execute(pool, r, options, costs))
    return run.run_id


async def get(pool: asyncpg.Pool, caller: Caller, run_id: UUID) -> RunOut:
    require_role(caller, Role.PLANNER)
    async with pool.acquire() as conn:
        row = await store.get(conn, KIND, run_id, changes=True)
    if row is None:
        raise NotFound(f"no routing run {run_id}")
    return _out(row)


async def recent(pool: asyncpg.Pool, caller: Caller, limit: int) -> list[RunOut]:
    require_role(caller, Role.PLANNER)
    async with pool.acquire() as conn:
        return [_out(r) for r in await store.recent(conn, KIND, limit)]


# -- the run ------------------------------------------------------------------------------------


class _Snapshot(msgspec.Struct, frozen=True):
    """What the run read of one order, to check it is unchanged when applying."""

    owner: str
    status: str
    open_ids: frozenset[UUID]
    total_cost: float


async def _gather(conn: asyncpg.Connection) -> tuple[list[Pending], list, date, dict[str, _Snapshot], dict]:
    rows = await store.open_orders(conn)
    pending: list[Pending] = []
    snapshots: dict[str, _Snapshot] = {}
    skus: set[str] = set()
    requests = {}
    for r in rows:
        req = msgspec.convert(r["request"], OrderRequest)
        requests[r["order_id"]] = req
        skus.update(line.sku for line in req.lines)
    weights = await orders_store.weights(conn, sorted(skus))
    queued = 0
    for r in rows:
        req = requests[r["order_id"]]
        remaining: dict[str, int] = {}
        current: dict[str, dict[str, int]] = {}
        if r["status"] == "queued":
            queued += 1
            remaining = {line.line_id: line.quantity for line in req.lines}
        else:
            for f in r["open"]:
                for a in f["lines"]:
                    remaining[a["line_id"]] = remaining.get(a["line_id"], 0) + a["quantity"]
                    units = current.setdefault(f["location_id"], {})
                    units[a["line_id"]] = units.get(a["line_id"], 0) + a["quantity"]
            for a in r["unallocated"]:
                remaining[a["line_id"]] = remaining.get(a["line_id"], 0) + a["quantity"]
        if not remaining:
            continue
        sku_of = {line.line_id: line.sku for line in req.lines}
        order = Order(
            order_id=req.order_id,
            lat=req.destination.lat,
            lon=req.destination.lon,
            method=req.method,
            pickup_location_id=req.pickup_location_id,
            lines=[
                Line(line_id=lid, sku=sku_of[lid], quantity=n, weight_kg=weights.get(sku_of[lid], 0.0))
                for lid, n in remaining.items()
            ],
            allow_split=req.allow_split,
            allow_partial=req.allow_partial,
            promise_by=req.promise_by,
        )
        pending.append(Pending(order, current, frozenset(r["excluded_locations"])))
        snapshots[req.order_id] = _Snapshot(
            owner=r["owner"],
            status=r["status"],
            open_ids=frozenset(UUID(str(f["fulfillment_id"])) for f in r["open"]),
            total_cost=r["total_cost"],
        )
    site_rows = await orders_store.candidates(conn, sorted(skus))
    batch = {p.order.order_id for p in pending}
    others: dict[str, set[str]] = {}
    for r in await store.load_today(conn):
        if r["order_id"] not in batch:
            others.setdefault(r["location_id"], set()).add(r["order_id"])
    sites = [msgspec.structs.replace(s, orders_today=len(others.get(s.location_id, ()))) for s in sites_of(site_rows)]
    today = await orders_store.today(conn)
    inputs = {
        "orders": len(pending),
        "queued_orders": queued,
        "open_fulfillments": sum(len(s.open_ids) for s in snapshots.values()),
        "skus": len(skus),
        "locations": len(sites),
    }
    return pending, sites, today, snapshots, inputs


async def execute(pool: asyncpg.Pool, run: runs.Run, options: RunOptions, costs: CostModel) -> None:
    started = time.perf_counter()
    await run.phase("reading open orders")
    async with pool.acquire() as conn:
        pending, sites, today, snapshots, inputs = await _gather(conn)
    await run.phase(f"solving {inputs['orders']} orders")
    result, bound, bound_ms = await runs.solve(
        plan_run,
        pending,
        sites,
        costs,
        today=today,
        time_limit_s=options.time_limit_s,
        bound_time_limit_s=options.bound_time_limit_s,
    )
    joint: dict[int, list[Change]] = {}
    alone: list[list[Change]] = []
    for c in result.changes:  # queued pickups routed alone (group -1) are applied one by one
        if c.group >= 0:
            joint.setdefault(c.group, []).append(c)
        else:
            alone.append([c])
    groups = sorted([*joint.values(), *alone], key=lambda g: g[0].order_id)
    applied: dict[str, str | None] = {}
    if options.apply:
        for i, group in enumerate(groups):
            if i % 50 == 0:
                await run.phase(f"applying: {i} of {len(groups)} groups")
            skipped = await _apply_group(pool, run.run_id, group, snapshots)
            for c in group:
                applied[c.order_id] = skipped
    summary = _summary(result, bound, bound_ms, inputs, applied, options, time.perf_counter() - started)
    changes = [_change_out(c, applied, options.apply) for c in result.changes]
    await store.finish(run.conn, KIND, run.run_id, status="succeeded", summary=summary, changes=changes)


class _Skip(Exception):
    pass


async def _apply_group(
    pool: asyncpg.Pool, run_id: UUID, group: list[Change], snapshots: dict[str, _Snapshot]
) -> str | None:
    """Apply one group atomically; the reason it was skipped, or None."""
    ids = sorted(c.order_id for c in group)

    async def attempt() -> None:
        async with pool.acquire() as conn, conn.transaction():
            rows = {r["order_id"]: r for r in await store.lock_orders(conn, ids)}
            open_now = await store.open_fulfillment_ids(conn, ids)
            for oid in ids:
                snap, row = snapshots[oid], rows.get(oid)
                if row is None or row["status"] != snap.status or frozenset(open_now[oid]) != snap.open_ids:
                    raise _Skip(f"order {oid} changed after the run read it")
            for c in sorted(group, key=lambda c: c.order_id):
                for f in await orders_store.get_fulfillments(conn, c.order_id):
                    if f["status"] == "open":
                        await reservations_store.finish(
                            conn, f["reservation_id"], status=Status.RELEASED, actor=f"routing-run:{run_id}"
                        )
                        await orders_store.set_fulfillment_status(conn, f["fulfillment_id"], "rerouted")
            for c in sorted(group, key=lambda c: c.order_id):
                snap, row = snapshots[c.order_id], rows[c.order_id]
                try:
                    held = await reserve_plan(conn, snap.owner, c.order_id, c.after)
                except reservations_store.Shortage as exc:
                    raise _Skip("the stock it needs was taken after the run read it") from exc
                await orders_store.insert_fulfillments(conn, c.order_id, fulfillment_rows(c.after, held))
                total = c.cost_after if snap.status == "queued" else snap.total_cost - c.cost_before + c.cost_after
                await orders_store.update_order(
                    conn,
                    c.order_id,
                    status=order_status(len(c.after), len(c.unallocated_after)),
                    unallocated=msgspec.to_builtins(c.unallocated_after),
                    total_cost=round(total, 2),
                    explanation={**row["explanation"], "routing_run": {"run_id": str(run_id), "reason": c.reason}},
                )

    try:
        await with_retry(attempt)
    except _Skip as exc:
        return str(exc)
    return None


def _summary(
    result: BatchResult,
    bound: float | None,
    bound_ms: float,
    inputs: dict,
    applied: dict[str, str | None],
    options: RunOptions,
    wall_s: float,
) -> dict:
    done = {oid for oid, skipped in applied.items() if skipped is None}
    ship_changes = [c for c in result.changes if c.group >= 0]
    applied_delta = sum(c.cost_after - c.cost_before for c in ship_changes if c.order_id in done)
    applied_extra = sum(
        max(0, len(c.before) - 1) - max(0, len(c.after) - 1) for c in ship_changes if c.order_id in done
    )
    return {
        "inputs": inputs,
        "solver": "cp-sat (large-neighbourhood search)",
        "solver_status": result.status,
        "subproblems": result.subproblems,
        "solve_ms": result.solve_ms,
        "rebrokered_orders": result.orders,
        "cost_before": result.cost_before,
        "cost_after_planned": result.cost_after,
        "cost_after_applied": round(result.cost_before + applied_delta, 2),
        "lp_lower_bound": None if bound is None else round(bound, 2),
        "lp_bound_ms": bound_ms,
        "shipments_before": result.shipments_before,
        "shipments_after_planned": result.shipments_after,
        "splits_removed_planned": result.extra_shipments_before - result.extra_shipments_after,
        "splits_removed_applied": applied_extra,
        "orders_changed_planned": len(result.changes),
        "orders_changed_applied": len(done),
        "orders_skipped": sum(1 for s in applied.values() if s is not None),
        "queued_routed": sum(1 for c in result.changes if not c.before and c.order_id in done),
        "fulfillments_changed": sum(len(c.before) + len(c.after) for c in result.changes if c.order_id in done),
        "applied": options.apply,
        "wall_ms": round(wall_s * 1000, 1),
    }


def _change_out(c: Change, applied: dict[str, str | None], apply: bool) -> dict:
    out = {
        "order_id": c.order_id,
        "group": c.group,
        "applied": apply and applied.get(c.order_id, "not applied") is None,
        "before": [_brief(f) for f in c.before],
        "after": [_brief(f) for f in c.after],
        "unallocated_before": msgspec.to_builtins(c.unallocated_before),
        "unallocated_after": msgspec.to_builtins(c.unallocated_after),
        "cost_before": c.cost_before,
        "cost_after": c.cost_after,
        "reason": c.reason,
    }
    if apply and applied.get(c.order_id) is not None:
        out["skipped"] = applied[c.order_id]
    return out


def _brief(f) -> dict:  # noqa: ANN001 - a routing Fulfillment
    return {
        "location_id": f.location_id,
        "method": f.method,
        "lines": msgspec.to_builtins(f.lines),
        "cost": f.cost.total,
    }
