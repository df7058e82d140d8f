"""Demand, rebalancing proposals, transfers: what a rebalancing run reads and writes."""

from __future__ import annotations

import io
from collections.abc import Iterable
from uuid import UUID

import asyncpg
from msgspec.structs import astuple

from engine.core import rebalance


async def upsert_demand(conn: asyncpg.Connection, rows: list[tuple[str, str, float]]) -> None:
    await conn.execute(
        """INSERT INTO demand (sku, location_id, units_per_day)
           SELECT * FROM unnest($1::text[], $2::text[], $3::float8[]) ORDER BY 1, 2
           ON CONFLICT (sku, location_id) DO UPDATE SET units_per_day = excluded.units_per_day, updated_at = now()""",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )


# Demand per position per day over the SKUs $4..$5: 'given' (the demand table), 'history'
# (units sold or committed over the last `params.days` days, per day), or 'auto' (given
# where a planner set it, else history).
_DEMAND = {
    "given": "SELECT sku, location_id, units_per_day AS demand FROM demand WHERE sku BETWEEN $4 AND $5",
    "history": """SELECT sku, location_id, sum(-delta_on_hand)::float8 / max(params.days) AS demand
                  FROM stock_movements, params
                  WHERE kind IN ('sale', 'commit') AND created_at >= now() - make_interval(days => params.days)
                    AND sku BETWEEN $4 AND $5
                  GROUP BY sku, location_id""",
}
_DEMAND["auto"] = f"""SELECT coalesce(g.sku, h.sku) AS sku, coalesce(g.location_id, h.location_id) AS location_id,
                             coalesce(g.demand, h.demand) AS demand
                      FROM ({_DEMAND["given"]}) g FULL JOIN ({_DEMAND["history"]}) h
                        ON g.sku = h.sku AND g.location_id = h.location_id"""


async def shards(
    conn: asyncpg.Connection, skus: list[str] | None, per_shard: int, at_least: int
) -> list[tuple[str, str]]:
    """The catalog's SKUs (or those of `skus` it knows) cut, in SKU order, into ranges of
    about `per_shard`, and into at least `at_least` (when there are that many SKUs):
    (first, last) of each."""
    rows = await conn.fetch(
        """WITH s AS (SELECT sku FROM items WHERE $1::text[] IS NULL OR sku = ANY($1::text[])),
                n AS (SELECT count(*)::integer AS n FROM s)
           SELECT min(sku) AS lo, max(sku) AS hi
           FROM (SELECT sku, ntile(greatest(ceil(n / $2::float8)::integer, least(n, $3))) OVER (ORDER BY sku) AS shard
                 FROM s, n) t
           GROUP BY shard ORDER BY lo""",
        skus,
        per_shard,
        at_least,
    )
    return [(r["lo"], r["hi"]) for r in rows]


async def needs(
    conn: asyncpg.Connection,
    *,
    demand: str,
    history_days: int,
    target_days: float,
    skus: list[str] | None,
    first: str,
    last: str,
) -> str:
    """Positions of the SKUs `first`..`last` with surplus or shortfall against `target_days`
    of cover (the rule of engine.core.rebalance.cover, applied here only to skip the
    positions that have neither), for SKUs that have both somewhere, at active locations:
    a JSON array of [sku, location_id, available, in_transit_in, demand_per_day], in
    (sku, location_id) order. One text value, so a solver process decodes it, not the
    event loop."""
    sql = f"""
    WITH params AS (SELECT $2::integer AS days),
    d AS ({_DEMAND[demand]}),
    pos AS (
        SELECT coalesce(p.sku, d.sku) AS sku, coalesce(p.location_id, d.location_id) AS location_id,
               coalesce(p.on_hand - p.reserved - coalesce(p.safety_stock, l.safety_stock), 0) AS available,
               coalesce(p.in_transit_in, 0) AS in_transit_in, coalesce(d.demand, 0)::float8 AS demand
        FROM (SELECT * FROM stock_positions WHERE sku BETWEEN $4 AND $5) p
        FULL JOIN d ON d.sku = p.sku AND d.location_id = p.location_id
        JOIN locations l ON l.location_id = coalesce(p.location_id, d.location_id) AND l.active
        WHERE $3::text[] IS NULL OR coalesce(p.sku, d.sku) = ANY($3::text[])
    ),
    judged AS (
        SELECT *, ceil(demand * $1 - 1e-6)::bigint AS goal FROM pos
    ),
    marked AS (
        SELECT *, least(available, available + in_transit_in - goal) > 0 AS gives,
                  greatest(available, 0) + in_transit_in < goal AS lacks
        FROM judged
    ),
    both_sides AS (SELECT sku FROM marked GROUP BY sku HAVING bool_or(gives) AND bool_or(lacks))
    SELECT coalesce(json_agg(json_build_array(m.sku, m.location_id, m.available::integer, m.in_transit_in, m.demand)
                             ORDER BY m.sku, m.location_id), '[]')::text
    FROM marked m JOIN both_sides b ON b.sku = m.sku
    WHERE m.gives OR m.lacks"""
    return await conn.fetchval(sql, target_days, history_days, skus, first, last, timeout=600)


async def locations(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT location_id, lat, lon FROM locations WHERE active ORDER BY location_id")


_PROPOSAL_COLUMNS = [
    "proposal_no",
    "run_id",
    "sku",
    "from_location_id",
    "to_location_id",
    "quantity",
    "cost",
    "stockout_units_avoided",
    *rebalance.Basis.__struct_fields__,
]


def proposal_lines(run_id: UUID, plans: Iterable[rebalance.SkuPlan]) -> tuple[int, bytes]:
    """The plans' proposals as COPY text lines without their proposal_no (see
    `write_proposals`), and how many. Pure formatting: the solver process calls it, so the
    event loop only numbers the lines. Ids cannot hold tabs, newlines or backslashes (their
    CHECK constraints), so nothing needs escaping."""
    rid = str(run_id)
    lines = [
        "\t".join(
            (
                rid,
                p.sku,
                p.from_location_id,
                p.to_location_id,
                str(p.quantity),
                repr(p.cost),
                str(p.stockout_units_avoided),
                *map(str, astuple(p.basis)),
            )
        )
        for plan in plans
        for p in plan.proposals
    ]
    return len(lines), "\n".join(lines).encode()


async def write_proposals(conn: asyncpg.Connection, first_no: int, count: int, lines: bytes) -> None:
    """COPY `count` lines from `proposal_lines`, numbered from `first_no` in order."""
    if not count:
        return
    numbered = b"".join(b"%d\t%b\n" % pair for pair in enumerate(lines.split(b"\n"), first_no))
    await conn.copy_to_table(
        "rebalancing_proposals", source=io.BytesIO(numbered), columns=_PROPOSAL_COLUMNS, format="text", timeout=600
    )


async def proposals(conn: asyncpg.Connection, run_id: UUID, *, after: int, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT proposal_no, sku, from_location_id, to_location_id, quantity, cost, stockout_units_avoided,
                  reason, source_available, source_in_transit, source_target, source_surplus,
                  dest_available, dest_in_transit, dest_target, dest_shortfall, status, skip_reason, transfer_id
           FROM rebalancing_proposals WHERE run_id = $1 AND proposal_no > $2 ORDER BY proposal_no LIMIT $3""",
        run_id,
        after,
        limit,
    )


async def to_apply(conn: asyncpg.Connection, run_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT proposal_no, sku, from_location_id, to_location_id, quantity FROM rebalancing_proposals
           WHERE run_id = $1 AND status = 'proposed' ORDER BY sku, from_location_id, to_location_id""",
        run_id,
    )


async def transfer(
    conn: asyncpg.Connection,
    *,
    transfer_id: UUID,
    run_id: UUID,
    proposal_no: int,
    sku: str,
    from_id: str,
    to_id: str,
    quantity: int,
    actor: str,
) -> str | None:
    """Book one proposal as a transfer; the reason it cannot be, or None."""
    reason = await conn.fetchval(
        "SELECT omniroute_transfer($1, $2, $3, $4, $5, $6, $7)",
        transfer_id,
        run_id,
        sku,
        from_id,
        to_id,
        quantity,
        actor,
    )
    await conn.execute(
        """UPDATE rebalancing_proposals SET status = $3, skip_reason = $4, transfer_id = $5
           WHERE run_id = $1 AND proposal_no = $2""",
        run_id,
        proposal_no,
        "skipped" if reason else "applied",
        reason,
        None if reason else transfer_id,
    )
    return reason


async def set_applying(conn: asyncpg.Connection, run_id: UUID, actor: str) -> str | None:
    """'proposed' -> 'applying'; returns the status it was in (None: no such run)."""
    row = await conn.fetchrow(
        """WITH old AS (SELECT status FROM rebalancing_runs WHERE run_id = $1 FOR UPDATE),
                upd AS (UPDATE rebalancing_runs r SET status = 'applying', phase = 'applying', applied_by = $2
                        FROM old WHERE r.run_id = $1 AND old.status = 'proposed' RETURNING r.run_id)
           SELECT (SELECT status FROM old) AS status""",
        run_id,
        actor,
    )
    return row["status"] if row else None


async def finish_apply(conn: asyncpg.Connection, run_id: UUID, result: dict) -> None:
    await conn.execute(
        """UPDATE rebalancing_runs SET status = 'applied', phase = 'done', applied_at = now(),
                  summary = summary || jsonb_build_object('apply', $2::jsonb)
           WHERE run_id = $1""",
        run_id,
        result,
    )


async def get_transfer(conn: asyncpg.Connection, transfer_id: UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT transfer_id, run_id, sku, from_location_id, to_location_id, quantity, status, created_by, created_at, "
        "received_by, received_at FROM transfers WHERE transfer_id = $1" + (" FOR UPDATE" if lock else ""),
        transfer_id,
    )


async def receive(conn: asyncpg.Connection, transfer_id: UUID, actor: str) -> None:
    """In-transit units arrive: on_hand rises, in_transit_in falls, one `transfer_in` row.
    The caller holds the transfer's row lock and has checked it is in transit."""
    await conn.execute(
        """WITH t AS (UPDATE transfers SET status = 'received', received_by = $2, received_at = now()
                      WHERE transfer_id = $1 RETURNING sku, to_location_id, quantity),
                p AS (UPDATE stock_positions p SET on_hand = p.on_hand + t.quantity,
                             in_transit_in = p.in_transit_in - t.quantity, updated_at = now()
                      FROM t WHERE p.sku = t.sku AND p.location_id = t.to_location_id)
           INSERT INTO stock_movements (sku, location_id, kind, delta_on_hand, delta_in_transit, reference, actor)
           SELECT sku, to_location_id, 'transfer_in', quantity, -quantity, $1::text, $2 FROM t""",
        transfer_id,
        actor,
    )
