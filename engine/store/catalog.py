"""Locations and items."""

from __future__ import annotations

import asyncpg

from engine.core.model import Item, Location

LOCATION_COLUMNS = (
    "location_id",
    "kind",
    "name",
    "lat",
    "lon",
    "postal_code",
    "timezone",
    "ships",
    "pickup",
    "curbside",
    "daily_order_capacity",
    "pick_cost_per_unit",
    "safety_stock",
    "active",
)
_LOCATION_COLS = ", ".join(LOCATION_COLUMNS)


def location_row(loc: Location) -> tuple:
    """The values of `loc` in LOCATION_COLUMNS order."""
    return (
        loc.location_id,
        loc.kind.value,
        loc.name,
        loc.lat,
        loc.lon,
        loc.postal_code,
        loc.timezone,
        loc.ships,
        loc.pickup,
        loc.curbside,
        loc.daily_order_capacity,
        loc.pick_cost_per_unit,
        loc.safety_stock,
        loc.active,
    )


def _location(row: asyncpg.Record) -> Location:
    return Location(**dict(row))


async def upsert_location(conn: asyncpg.Connection, loc: Location) -> tuple[Location, bool]:
    """Insert or replace a location; returns it and whether it was created."""
    row = await conn.fetchrow(
        f"""INSERT INTO locations ({_LOCATION_COLS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
            ON CONFLICT (location_id) DO UPDATE SET
                kind = EXCLUDED.kind, name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
                postal_code = EXCLUDED.postal_code, timezone = EXCLUDED.timezone,
                ships = EXCLUDED.ships, pickup = EXCLUDED.pickup, curbside = EXCLUDED.curbside,
                daily_order_capacity = EXCLUDED.daily_order_capacity,
                pick_cost_per_unit = EXCLUDED.pick_cost_per_unit,
                safety_stock = EXCLUDED.safety_stock, active = EXCLUDED.active, updated_at = now()
            RETURNING {_LOCATION_COLS}, (xmax = 0) AS created""",
        *location_row(loc),
    )
    created = row["created"]
    return Location(**{k: v for k, v in row.items() if k != "created"}), created


async def get_location(conn: asyncpg.Connection, location_id: str) -> Location | None:
    row = await conn.fetchrow(f"SELECT {_LOCATION_COLS} FROM locations WHERE location_id = $1", location_id)
    return _location(row) if row else None


async def list_locations(
    conn: asyncpg.Connection, *, kind: str | None, after: str | None, limit: int
) -> list[Location]:
    rows = await conn.fetch(
        f"""SELECT {_LOCATION_COLS} FROM locations
            WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR location_id > $2)
            ORDER BY location_id LIMIT $3""",
        kind,
        after,
        limit,
    )
    return [_location(r) for r in rows]


async def upsert_items(conn: asyncpg.Connection, items: list[Item]) -> int:
    """Insert or replace many items in one statement; returns how many were created."""
    return await conn.fetchval(
        """WITH up AS (
               INSERT INTO items (sku, name, weight_kg)
               SELECT * FROM unnest($1::text[], $2::text[], $3::float8[])
               ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, weight_kg = EXCLUDED.weight_kg,
                                               updated_at = now()
               RETURNING (xmax = 0) AS created)
           SELECT count(*) FILTER (WHERE created) FROM up""",
        [i.sku for i in items],
        [i.name for i in items],
        [i.weight_kg for i in items],
    )


async def get_item(conn: asyncpg.Connection, sku: str) -> Item | None:
    row = await conn.fetchrow("SELECT sku, name, weight_kg FROM items WHERE sku = $1", sku)
    return Item(**dict(row)) if row else None


async def unknown_skus(conn: asyncpg.Connection, skus: list[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT s FROM unnest($1::text[]) s WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.sku = s) ORDER BY s",
        skus,
    )
    return [r[0] for r in rows]


async def unknown_locations(conn: asyncpg.Connection, location_ids: list[str]) -> list[str]:
    rows = await conn.fetch(
        """SELECT s FROM unnest($1::text[]) s
           WHERE NOT EXISTS (SELECT 1 FROM locations l WHERE l.location_id = s) ORDER BY s""",
        location_ids,
    )
    return [r[0] for r in rows]
