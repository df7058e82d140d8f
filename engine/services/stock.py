"""Booking caller movements and reading positions."""

from __future__ import annotations

import asyncpg
import msgspec

from engine.core import stock as rules
from engine.core.access import require_locations, require_role
from engine.core.model import Caller, Position, Role
from engine.errors import BadInput
from engine.services import idempotency
from engine.services.availability import stock_changed
from engine.store import catalog as catalog_store
from engine.store import events as events_store
from engine.store import stock as store


class MovementResult(msgspec.Struct, kw_only=True):
    movements: int
    positions: list[Position]
    discrepancies: list[Position] = []


async def record_movements(
    pool: asyncpg.Pool,
    caller: Caller,
    lines: list[rules.MovementLine],
    *,
    reference: str | None,
    idem_key: str | None,
) -> tuple[int, bytes]:
    """Book receipts, sales, adjustments, counts and returns: all lines or none.

    Gather: create and lock the positions in global order. Decide: the pure rules give
    each delta. Apply: positions and ledger rows in the same transaction, plus a
    `discrepancy` event for each sale that left on_hand below reserved.
    """
    require_role(caller, Role.POS)
    require_locations(caller, (line.location_id for line in lines))
    rules.validate_lines(lines)
    keys = [(line.sku, line.location_id) for line in lines]

    async def work(conn: asyncpg.Connection) -> tuple[int, MovementResult]:
        current = await store.lock_positions(conn, keys)
        if len(current) < len(keys):
            await _raise_unknown(conn, lines)
        deltas = rules.plan_movements(lines, current)
        await store.apply_deltas(conn, deltas, reference=reference, actor=caller.key_id)
        positions = await store.get_positions(conn, keys)
        short = {(d.sku, d.location_id) for d in deltas if d.discrepancy}
        discrepancies = [p for p in positions if (p.sku, p.location_id) in short]
        await events_store.record(
            conn,
            [
                ("discrepancy", p.sku, p.location_id, {"on_hand": p.on_hand, "reserved": p.reserved})
                for p in discrepancies
            ],
        )
        return 201, MovementResult(movements=len(deltas), positions=positions, discrepancies=discrepancies)

    body = {"lines": lines, "reference": reference}
    answer = await idempotency.run(pool, caller, idem_key, "stock.movements", body, work)
    stock_changed(line.sku for line in lines)
    return answer


async def _raise_unknown(conn: asyncpg.Connection, lines: list[rules.MovementLine]) -> None:
    skus = await catalog_store.unknown_skus(conn, sorted({line.sku for line in lines}))
    locs = await catalog_store.unknown_locations(conn, sorted({line.location_id for line in lines}))
    errors = [{"field": "sku", "message": f"unknown sku {s}"} for s in skus]
    errors += [{"field": "location_id", "message": f"unknown location {loc}"} for loc in locs]
    raise BadInput("unknown sku or location", errors=errors)


async def list_positions(
    pool: asyncpg.Pool, *, sku: str | None, location_id: str | None, after: tuple[str, str] | None, limit: int
) -> list[Position]:
    if sku is None and location_id is None:
        raise BadInput("give sku, location_id or both", errors=[{"field": "sku", "message": "required"}])
    async with pool.acquire() as conn:
        positions = await store.list_positions(conn, sku=sku, location_id=location_id, after=after, limit=limit)
        if not positions and after is None:
            # Nothing found: say so if it is because the filter names nothing that exists.
            errors = [
                {"field": "sku", "message": f"unknown sku {s}"}
                for s in await catalog_store.unknown_skus(conn, [sku] if sku else [])
            ]
            errors += [
                {"field": "location_id", "message": f"unknown location {loc}"}
                for loc in await catalog_store.unknown_locations(conn, [location_id] if location_id else [])
            ]
            if errors:
                raise BadInput("unknown sku or location", errors=errors)
        return positions


async def check_ledger(pool: asyncpg.Pool, limit: int = 100) -> tuple[int, int, list[dict]]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        return await store.ledger_drift(conn, limit)
