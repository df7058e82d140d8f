"""Stock positions and the movement ledger."""

from __future__ import annotations

import asyncpg

from engine.core.model import Position
from engine.core.stock import Current, Delta


async def lock_positions(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Current]:
    """Create missing positions (known sku and location only) and lock all of them.

    Rows are created and locked in (sku, location_id) order, the one global order every
    writer uses, so two writers never deadlock on each other. Pairs whose sku or location
    does not exist are absent from the result.
    """
    skus = [k[0] for k in keys]
    locs = [k[1] for k in keys]
    await conn.execute(
        """INSERT INTO stock_positions (sku, location_id)
           SELECT k.sku, k.location_id
           FROM unnest($1::text[], $2::text[]) AS k(sku, location_id)
           JOIN items i ON i.sku = k.sku
           JOIN locations l ON l.location_id = k.location_id
           ORDER BY 1, 2
           ON CONFLICT DO NOTHING""",
        skus,
        locs,
    )
    rows = await conn.fetch(
        """SELECT p.sku, p.location_id, p.on_hand, p.reserved
           FROM stock_positions p
           JOIN unnest($1::text[], $2::text[]) AS k(sku, location_id)
             ON p.sku = k.sku AND p.location_id = k.location_id
           ORDER BY p.sku, p.location_id
           FOR UPDATE OF p""",
        skus,
        locs,
    )
    return {(r["sku"], r["location_id"]): Current(on_hand=r["on_hand"], reserved=r["reserved"]) for r in rows}


async def apply_deltas(conn: asyncpg.Connection, deltas: list[Delta], *, reference: str | None, actor: str) -> None:
    """Write the ledger rows and move the positions by the same deltas (one transaction)."""
    args = (
        [d.sku for d in deltas],
        [d.location_id for d in deltas],
        [d.kind.value for d in deltas],
        [d.delta_on_hand for d in deltas],
    )
    await conn.execute(
        """WITH d AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
                                 AS d(sku, location_id, kind, delta)),
                upd AS (UPDATE stock_positions p SET on_hand = p.on_hand + d.delta, updated_at = now()
                        FROM d WHERE p.sku = d.sku AND p.location_id = d.location_id)
           INSERT INTO stock_movements (sku, location_id, kind, delta_on_hand, reference, actor)
           SELECT sku, location_id, kind, delta, $5, $6 FROM d""",
        *args,
        reference,
        actor,
    )


# `reserved` as callers see it: holds past their expiry that the sweep has not released
# yet no longer count (the position row still carries them until it does).
_POSITION_SQL = """
    SELECT p.sku, p.location_id, p.on_hand, p.reserved - coalesce(e.quantity, 0) AS reserved,
           coalesce(p.safety_stock, l.safety_stock) AS safety_stock, p.in_transit_in
    FROM stock_positions p JOIN locations l ON l.location_id = p.location_id
    LEFT JOIN LATERAL (
        SELECT sum(rl.quantity)::integer AS quantity FROM reservation_lines rl
        WHERE rl.sku = p.sku AND rl.location_id = p.location_id AND rl.state = 'active' AND rl.expires_at <= now()
    ) e ON true
"""


async def get_positions(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> list[Position]:
    rows = await conn.fetch(
        _POSITION_SQL
        + """JOIN unnest($1::text[], $2::text[]) AS k(sku, location_id)
               ON p.sku = k.sku AND p.location_id = k.location_id
             ORDER BY p.sku, p.location_id""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return [Position(**dict(r)) for r in rows]


async def list_positions(
    conn: asyncpg.Connection,
    *,
    sku: str | None,
    location_id: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[Position]:
    """Positions filtered by sku and/or location, in (sku, location_id) order, keyset-paged."""
    rows = await conn.fetch(
        _POSITION_SQL
        + """WHERE ($1::text IS NULL OR p.sku = $1)
               AND ($2::text IS NULL OR p.location_id = $2)
               AND ($3::text IS NULL OR (p.sku, p.location_id) > ($3, $4))
             ORDER BY p.sku, p.location_id
             LIMIT $5""",
        sku,
        location_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [Position(**dict(r)) for r in rows]


async def ledger_drift(conn: asyncpg.Connection, limit: int = 100) -> tuple[int, int, list[dict]]:
    """Re-sum the ledger: (positions checked, positions drifted, first `limit` drifts).

    A position drifts when its on_hand, reserved or in_transit_in differs from the sum of
    its movements; a ledger total with no position row drifts too.
    """
    row = await conn.fetchrow(
        """WITH sums AS (
               SELECT sku, location_id, sum(delta_on_hand)::bigint AS on_hand,
                      sum(delta_reserved)::bigint AS reserved, sum(delta_in_transit)::bigint AS in_transit_in
               FROM stock_movements GROUP BY sku, location_id),
           cmp AS (
               SELECT coalesce(p.sku, s.sku) AS sku, coalesce(p.location_id, s.location_id) AS location_id,
                      p.on_hand AS pos_on_hand, s.on_hand AS ledger_on_hand,
                      p.reserved AS pos_reserved, s.reserved AS ledger_reserved,
                      p.in_transit_in AS pos_in_transit, s.in_transit_in AS ledger_in_transit
               FROM stock_positions p FULL JOIN sums s ON s.sku = p.sku AND s.location_id = p.location_id),
           bad AS (
               SELECT * FROM cmp
               WHERE coalesce(pos_on_hand, 0) <> coalesce(ledger_on_hand, 0)
                  OR coalesce(pos_reserved, 0) <> coalesce(ledger_reserved, 0)
                  OR coalesce(pos_in_transit, 0) <> coalesce(ledger_in_transit, 0))
           SELECT (SELECT count(*) FROM cmp) AS checked, (SELECT count(*) FROM bad) AS drifted,
                  (SELECT coalesce(jsonb_agg(b ORDER BY b.sku, b.location_id), '[]')
                   FROM (SELECT * FROM bad ORDER BY sku, location_id LIMIT $1) b) AS sample""",
        limit,
    )
    return row["checked"], row["drifted"], row["sample"]
