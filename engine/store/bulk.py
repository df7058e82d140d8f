"""Bulk loading of a generated network (locations, items, stock positions and their ledger).

Everything goes in with COPY (binary, via asyncpg) in ONE transaction: either the whole
network is there or none of it. Nothing is upserted: the ids must not exist yet (the
primary keys reject duplicates and the transaction rolls back).

Positions are streamed in batches in (sku, location_id) order, which appends to the
right edge of the primary-key index. The foreign keys of `stock_positions` are dropped for
the COPY and re-added with their exact definitions before commit, inside the same
transaction (which holds the table exclusively meanwhile): PostgreSQL then validates them
in one pass instead of 10M row-by-row trigger checks (about 125 s of a 166 s load).

Each position with on_hand != 0 gets one `receipt` row in `stock_movements`, so the
ledger invariant holds from the start (reserved and in_transit_in start at 0).

The change feed gets ONE `reload` event instead of one `stock` event per position (10M for
the large network): the trigger that writes those is disabled for the COPY, inside the same
transaction, so no other writer ever runs without it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING

import asyncpg

from engine.store import events
from engine.store.catalog import LOCATION_COLUMNS, location_row

if TYPE_CHECKING:
    from fixtures.generate import Network

ITEM_COLUMNS = ("sku", "name", "weight_kg")
POSITION_COLUMNS = ("sku", "location_id", "on_hand", "safety_stock")
MOVEMENT_COLUMNS = ("sku", "location_id", "kind", "delta_on_hand", "reference", "actor")
POSITION_EVENTS_TRIGGER = "stock_positions_insert_events"  # migrations/0005_change_feed.sql

FIXTURES_ACTOR = "fixtures"


async def analyze(conn: asyncpg.Connection) -> None:
    await conn.execute("ANALYZE locations, items, stock_positions, stock_movements")


async def _foreign_keys(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'",
        table,
    )
    return [(r[0], r[1]) for r in rows]


async def load_network(
    conn: asyncpg.Connection,
    net: Network,
    *,
    reference: str,
    progress: Callable[[int], None] | None = None,
    batch: int = 200_000,
) -> dict:
    """Insert `net` in one transaction; return row counts per table.

    `progress(n)` is called after each batch with the number of positions written so far.
    """
    if batch < 1:
        raise ValueError("batch must be positive")
    location_rows = [location_row(loc) for loc in net.locations]
    item_rows = [(item.sku, item.name, item.weight_kg) for item in net.items]

    positions = 0
    movements = 0
    async with conn.transaction():
        await conn.copy_records_to_table("locations", records=location_rows, columns=LOCATION_COLUMNS)
        await conn.copy_records_to_table("items", records=item_rows, columns=ITEM_COLUMNS)
        fks = await _foreign_keys(conn, "stock_positions")
        for name, _ in fks:
            await conn.execute(f'ALTER TABLE stock_positions DROP CONSTRAINT "{name}"')
        await conn.execute(f"ALTER TABLE stock_positions DISABLE TRIGGER {POSITION_EVENTS_TRIGGER}")
        rows = net.positions()
        while True:
            chunk = list(islice(rows, batch))
            if not chunk:
                break
            await conn.copy_records_to_table("stock_positions", records=chunk, columns=POSITION_COLUMNS)
            receipts = [
                (sku, location_id, "receipt", on_hand, reference, FIXTURES_ACTOR)
                for sku, location_id, on_hand, _ in chunk
                if on_hand
            ]
            if receipts:
                await conn.copy_records_to_table("stock_movements", records=receipts, columns=MOVEMENT_COLUMNS)
            positions += len(chunk)
            movements += len(receipts)
            if progress is not None:
                progress(positions)
        for name, definition in fks:
            await conn.execute(f'ALTER TABLE stock_positions ADD CONSTRAINT "{name}" {definition}')
        await conn.execute(f"ALTER TABLE stock_positions ENABLE TRIGGER {POSITION_EVENTS_TRIGGER}")
        await events.record_reload(
            conn,
            {"reason": "bulk load", "reference": reference, "locations": len(location_rows), "positions": positions},
        )
    return {
        "locations": len(location_rows),
        "items": len(item_rows),
        "positions": positions,
        "movements": movements,
    }
