"""Orders and fulfillments, and the routing candidates for an order's SKUs."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from engine.store.availability import EXPIRED_HOLDS

CANDIDATES_SQL = f"""
WITH {EXPIRED_HOLDS},
stock AS (
    SELECT p.location_id, p.sku,
           greatest(0, p.on_hand - (p.reserved - coalesce(e.quantity, 0))
                       - coalesce(p.safety_stock, l.safety_stock)) AS available
    FROM stock_positions p
    JOIN locations l ON l.location_id = p.location_id AND l.active
    LEFT JOIN expired e ON e.sku = p.sku AND e.location_id = p.location_id
    WHERE p.sku = ANY($1::text[])
),
load AS (
    SELECT location_id, count(DISTINCT order_id)::integer AS orders
    FROM fulfillments
    WHERE created_at >= date_trunc('day', now()) AND status <> 'cancelled' AND status <> 'rerouted'
    GROUP BY location_id
)
SELECT l.location_id, l.kind, l.lat, l.lon, l.ships, l.pickup, l.curbside, l.pick_cost_per_unit,
       l.daily_order_capacity, coalesce(ld.orders, 0) AS orders_today,
       coalesce(jsonb_object_agg(s.sku, s.available) FILTER (WHERE s.available > 0), '{{}}') AS stock
FROM locations l
LEFT JOIN stock s ON s.location_id = l.location_id
LEFT JOIN load ld ON ld.location_id = l.location_id
WHERE l.active
GROUP BY l.location_id, ld.orders
"""


async def candidates(conn: asyncpg.Connection, skus: list[str]) -> list[asyncpg.Record]:
    """Every active location with its available units of `skus` and today's order count."""
    return await conn.fetch(CANDIDATES_SQL, skus)


async def weights(conn: asyncpg.Connection, skus: list[str]) -> dict[str, float]:
    rows = await conn.fetch("SELECT sku, weight_kg FROM items WHERE sku = ANY($1::text[])", skus)
    return {r["sku"]: r["weight_kg"] for r in rows}


async def today(conn: asyncpg.Connection):  # noqa: ANN201 - a date
    return await conn.fetchval("SELECT current_date")


async def insert_order(
    conn: asyncpg.Connection,
    *,
    order_id: str,
    owner: str,
    channel: str | None,
    method: str,
    request: dict,
    request_hash: bytes,
    status: str,
    unallocated: list,
    total_cost: float,
    explanation: dict,
) -> bool:
    """False if the order id exists already."""
    return bool(
        await conn.fetchval(
            """INSERT INTO orders (order_id, owner, channel, method, request, request_hash, status, unallocated,
                               total_cost, explanation)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING true""",
            order_id,
            owner,
            channel,
            method,
            request,
            request_hash,
            status,
            unallocated,
            total_cost,
            explanation,
        )
    )


async def insert_fulfillments(conn: asyncpg.Connection, order_id: str, rows: list[dict]) -> None:
    await conn.executemany(
        """INSERT INTO fulfillments (fulfillment_id, order_id, location_id, method, lines, cost, eta,
                                     reservation_id, status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open')""",
        [
            (
                r["fulfillment_id"],
                order_id,
                r["location_id"],
                r["method"],
                r["lines"],
                r["cost"],
                r["eta"],
                r["reservation_id"],
            )
            for r in rows
        ],
    )


async def get_order(conn: asyncpg.Connection, order_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT order_id, owner, channel, method, request, request_hash, status, excluded_locations, unallocated, "
        "total_cost, explanation, created_at FROM orders WHERE order_id = $1" + (" FOR UPDATE" if lock else ""),
        order_id,
    )


async def get_fulfillments(conn: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT fulfillment_id, location_id, method, lines, cost, eta, reservation_id, status
           FROM fulfillments WHERE order_id = $1 ORDER BY created_at, location_id""",
        order_id,
    )


async def set_fulfillment_status(conn: asyncpg.Connection, fulfillment_id: UUID, status: str) -> None:
    await conn.execute(
        "UPDATE fulfillments SET status = $2, updated_at = now() WHERE fulfillment_id = $1", fulfillment_id, status
    )


async def update_order(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    status: str,
    unallocated: list | None = None,
    total_cost: float | None = None,
    excluded_locations: list[str] | None = None,
    explanation: dict | None = None,
) -> None:
    await conn.execute(
        """UPDATE orders SET status = $2,
                             unallocated = coalesce($3, unallocated),
                             total_cost = coalesce($4, total_cost),
                             excluded_locations = coalesce($5, excluded_locations),
                             explanation = coalesce($6, explanation),
                             updated_at = now()
           WHERE order_id = $1""",
        order_id,
        status,
        unallocated,
        total_cost,
        excluded_locations,
        explanation,
    )
