"""Planner run records (routing and rebalancing runs share one shape), and what a routing
run reads: the open orders with their open fulfillments, and today's load per location."""

from __future__ import annotations

from uuid import UUID

import asyncpg

# The tables a run record lives in, by kind. Never built from caller input.
TABLES = {"routing": "routing_runs", "rebalancing": "rebalancing_runs"}
_RUNNING = {"routing": "('running')", "rebalancing": "('running', 'applying')"}

RUN_COLUMNS = "run_id, status, triggered_by, phase, options, summary, error, started_at, finished_at"


async def create(conn: asyncpg.Connection, kind: str, run_id: UUID, triggered_by: str, options: dict) -> bool:
    """False if a run of this kind is running already (the partial unique index)."""
    try:
        await conn.execute(
            f"INSERT INTO {TABLES[kind]} (run_id, status, triggered_by, phase, options) "
            "VALUES ($1, 'running', $2, 'starting', $3)",
            run_id,
            triggered_by,
            options,
        )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def running(conn: asyncpg.Connection, kind: str) -> UUID | None:
    return await conn.fetchval(f"SELECT run_id FROM {TABLES[kind]} WHERE status IN {_RUNNING[kind]}")


async def fail_interrupted(conn: asyncpg.Connection, kind: str) -> int:
    """Mark runs left running by a process that died (the caller holds the run lock)."""
    result = await conn.execute(
        f"UPDATE {TABLES[kind]} SET status = CASE WHEN status = 'applying' THEN 'proposed' ELSE 'failed' END, "
        "error = 'interrupted: the process running it stopped', finished_at = coalesce(finished_at, now()) "
        f"WHERE status IN {_RUNNING[kind]}"
    )
    return int(result.split()[-1])


async def set_phase(conn: asyncpg.Connection, kind: str, run_id: UUID, phase: str) -> None:
    await conn.execute(f"UPDATE {TABLES[kind]} SET phase = $2 WHERE run_id = $1", run_id, phase)


async def finish(
    conn: asyncpg.Connection,
    kind: str,
    run_id: UUID,
    *,
    status: str,
    summary: dict | None,
    error: str | None = None,
    changes: list | None = None,
) -> None:
    extra = ", changes = $5" if changes is not None else ""
    args = [run_id, status, summary, error] + ([changes] if changes is not None else [])
    await conn.execute(
        f"UPDATE {TABLES[kind]} SET status = $2, phase = 'done', summary = $3, error = $4, "
        f"finished_at = now(){extra} WHERE run_id = $1",
        *args,
    )


async def fail(conn: asyncpg.Connection, kind: str, run_id: UUID, *, status: str, error: str) -> None:
    """Record why a run stopped, keeping what it had written (its summary, its proposals)."""
    await conn.execute(
        f"UPDATE {TABLES[kind]} SET status = $2, phase = 'stopped', error = $3, "
        "finished_at = coalesce(finished_at, now()) WHERE run_id = $1",
        run_id,
        status,
        error,
    )


async def get(conn: asyncpg.Connection, kind: str, run_id: UUID, *, changes: bool = False) -> asyncpg.Record | None:
    columns = RUN_COLUMNS + (", changes" if changes else "")
    if kind == "rebalancing":
        columns += ", applied_by, applied_at"
    return await conn.fetchrow(f"SELECT {columns} FROM {TABLES[kind]} WHERE run_id = $1", run_id)


async def recent(conn: asyncpg.Connection, kind: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {RUN_COLUMNS} FROM {TABLES[kind]} ORDER BY started_at DESC LIMIT $1", limit)


# -- what a routing run reads --------------------------------------------------------------

OPEN_STATUSES = ["queued", "allocated", "partially_allocated", "backordered"]


async def open_orders(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Orders still to serve, with their open fulfillments; an order with a completed
    fulfillment has started shipping and is left as it is."""
    return await conn.fetch(
        """SELECT o.order_id, o.owner, o.request, o.status, o.excluded_locations, o.unallocated, o.total_cost,
                  o.explanation,
                  coalesce(jsonb_agg(jsonb_build_object(
                      'fulfillment_id', f.fulfillment_id, 'location_id', f.location_id, 'method', f.method,
                      'lines', f.lines, 'reservation_id', f.reservation_id) ORDER BY f.fulfillment_id)
                    FILTER (WHERE f.status = 'open'), '[]') AS open
           FROM orders o
           LEFT JOIN fulfillments f ON f.order_id = o.order_id AND f.status IN ('open', 'completed')
           WHERE o.status = ANY($1::text[])
           GROUP BY o.order_id
           HAVING NOT coalesce(bool_or(f.status = 'completed'), false)
           ORDER BY o.order_id""",
        OPEN_STATUSES,
    )


async def load_today(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(location_id, order_id) for every order with a live fulfillment created today."""
    return await conn.fetch(
        """SELECT DISTINCT location_id, order_id FROM fulfillments
           WHERE created_at >= date_trunc('day', now()) AND status <> 'cancelled' AND status <> 'rerouted'"""
    )


async def lock_orders(conn: asyncpg.Connection, order_ids: list[str]) -> list[asyncpg.Record]:
    """Lock the orders in order_id order (one global order, so two writers never deadlock)."""
    return await conn.fetch(
        "SELECT order_id, owner, status, unallocated, total_cost, explanation FROM orders "
        "WHERE order_id = ANY($1::text[]) ORDER BY order_id FOR UPDATE",
        order_ids,
    )


async def open_fulfillment_ids(conn: asyncpg.Connection, order_ids: list[str]) -> dict[str, set[UUID]]:
    rows = await conn.fetch(
        "SELECT order_id, fulfillment_id FROM fulfillments WHERE order_id = ANY($1::text[]) AND status = 'open'",
        order_ids,
    )
    out: dict[str, set[UUID]] = {o: set() for o in order_ids}
    for r in rows:
        out[r["order_id"]].add(r["fulfillment_id"])
    return out
