"""Reservations: the reserve function call, lifecycle statements, expiry sweep."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from engine.core.reservations import Line, Reservation, Status

OUT_OF_STOCK = "OM001"


class Shortage(Exception):
    def __init__(self, shortages: list[dict]) -> None:
        super().__init__("insufficient stock")
        self.shortages = shortages


async def reserve(
    conn: asyncpg.Connection,
    *,
    reservation_id: UUID,
    owner: str,
    reference: str | None,
    ttl_seconds: int,
    lines: list[Line],
) -> tuple[datetime, datetime]:
    """One statement: all lines held, or Shortage (and nothing held). Returns
    (created_at, expires_at) by the database clock."""
    try:
        row = await conn.fetchrow(
            "SELECT created_at, expires_at FROM omniroute_reserve($1, $2, $3, $4, $5::text[], $6::text[], $7::int[])",
            reservation_id,
            owner,
            reference,
            ttl_seconds,
            [line.sku for line in lines],
            [line.location_id for line in lines],
            [line.quantity for line in lines],
        )
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == OUT_OF_STOCK:
            raise Shortage(json.loads(exc.detail)) from exc
        raise
    return row["created_at"], row["expires_at"]


async def get(
    conn: asyncpg.Connection, reservation_id: UUID, *, lock: bool = False
) -> tuple[Reservation | None, datetime]:
    """The reservation (None if there is none) and the database clock, `now()`, by which
    expiry is judged: one statement, one round trip. `lock` takes the reservation's row lock
    first (FOR UPDATE, waiting out a writer and reading its committed row); its lines are
    fixed once written, apart from their state, which is not read here."""
    rows = await conn.fetch(
        """SELECT now() AS now, r.reservation_id, r.owner, r.reference, r.status, r.expires_at, r.created_at,
                  l.sku, l.location_id, l.quantity
           FROM (SELECT 1) one
           LEFT JOIN LATERAL (
               SELECT reservation_id, owner, reference, status, expires_at, created_at FROM reservations
               WHERE reservation_id = $1"""
        + (" FOR UPDATE" if lock else "")
        + """
           ) r ON true
           LEFT JOIN reservation_lines l ON l.reservation_id = r.reservation_id
           ORDER BY l.sku, l.location_id""",
        reservation_id,
    )
    header = rows[0]
    if header["reservation_id"] is None:
        return None, header["now"]
    reservation = Reservation(
        reservation_id=header["reservation_id"],
        owner=header["owner"],
        reference=header["reference"],
        status=Status(header["status"]),
        expires_at=header["expires_at"],
        created_at=header["created_at"],
        lines=[Line(sku=r["sku"], location_id=r["location_id"], quantity=r["quantity"]) for r in rows],
    )
    return reservation, header["now"]


async def finish(conn: asyncpg.Connection, reservation_id: UUID, *, status: Status, actor: str) -> int:
    """Commit or release the still-active lines of a locked reservation, in one statement.

    Commit: on_hand and reserved both drop (a `commit` movement). Release or expiry:
    reserved drops (a `release` movement). Positions are locked in (sku, location_id)
    order first, the order every writer uses. Returns the number of lines moved: fewer
    than expected means an expiry released some at the same moment.
    """
    commit = status is Status.COMMITTED
    await conn.execute(
        """SELECT 1 FROM stock_positions p
           JOIN reservation_lines l ON l.sku = p.sku AND l.location_id = p.location_id
           WHERE l.reservation_id = $1 AND l.state = 'active'
           ORDER BY p.sku, p.location_id FOR UPDATE OF p""",
        reservation_id,
    )
    return await conn.fetchval(
        """WITH lines AS (
               UPDATE reservation_lines SET state = $3 WHERE reservation_id = $1 AND state = 'active'
               RETURNING sku, location_id, quantity),
           positions AS (
               UPDATE stock_positions p
               SET reserved = p.reserved - l.quantity,
                   on_hand = p.on_hand - CASE WHEN $2 THEN l.quantity ELSE 0 END,
                   updated_at = now()
               FROM lines l
               WHERE p.sku = l.sku AND p.location_id = l.location_id),
           ledger AS (
               INSERT INTO stock_movements (sku, location_id, kind, delta_on_hand, delta_reserved, reference, actor)
               SELECT sku, location_id, CASE WHEN $2 THEN 'commit' ELSE 'release' END,
                      CASE WHEN $2 THEN -quantity ELSE 0 END, -quantity, $1::text, $4
               FROM lines)
           UPDATE reservations SET status = $3, updated_at = now() WHERE reservation_id = $1
           RETURNING (SELECT count(*) FROM lines)""",
        reservation_id,
        commit,
        status.value,
        actor,
    )


async def extend(conn: asyncpg.Connection, reservation_id: UUID, expires_at: datetime) -> int:
    """Move the expiry of the active lines and the header; returns the lines moved."""
    return await conn.fetchval(
        """WITH l AS (UPDATE reservation_lines SET expires_at = $2 WHERE reservation_id = $1 AND state = 'active'
                     RETURNING 1)
           UPDATE reservations SET expires_at = $2, updated_at = now() WHERE reservation_id = $1
           RETURNING (SELECT count(*) FROM l)""",
        reservation_id,
        expires_at,
    )


async def release_expired(conn: asyncpg.Connection, limit: int) -> int:
    """Release up to `limit` expired lines anywhere; returns how many."""
    return await conn.fetchval("SELECT omniroute_release_expired(NULL, NULL, $1)", limit)


class BatchItem(msgspec.Struct, frozen=True, kw_only=True):
    reservation_id: UUID
    owner: str
    reference: str | None
    ttl_seconds: int
    lines: list[Line]


async def reserve_batch(conn: asyncpg.Connection, items: list[BatchItem]) -> list[tuple[datetime, datetime] | Shortage]:
    """Many reservations, one statement and one commit; each all-or-nothing on its own.
    Returns, in order, (created_at, expires_at) for a held one or its Shortage."""
    lines = [line for item in items for line in item.lines]
    rows = await conn.fetch(
        """SELECT idx, created_at, expires_at, shortages FROM omniroute_reserve_batch(
               $1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::text[], $8::int[])
           ORDER BY idx""",
        [i.reservation_id for i in items],
        [i.owner for i in items],
        [i.reference for i in items],
        [i.ttl_seconds for i in items],
        [len(i.lines) for i in items],
        [line.sku for line in lines],
        [line.location_id for line in lines],
        [line.quantity for line in lines],
    )
    return [
        Shortage(r["shortages"]) if r["shortages"] is not None else (r["created_at"], r["expires_at"]) for r in rows
    ]
