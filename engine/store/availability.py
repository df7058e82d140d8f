"""The availability reads: one statement per request, whatever the basket size.

`fetch` answers a request: per SKU one row with the ship total (sum of `available` over
active shipping locations) and one row per pickup location within the radius (nearest
first). `fill` reads what the availability cache keeps per SKU (engine.core.availability).
Both read a plain MVCC snapshot and take no locks, so they never wait on writers.
"""

from __future__ import annotations

import asyncpg

from engine.core.geo import EARTH_RADIUS_KM

# Distance on the same sphere as engine.core.geo.haversine_km.
_DISTANCE = f"""2 * {EARTH_RADIUS_KM} * asin(least(1, sqrt(
    power(sin(radians(l.lat - $2) / 2), 2)
    + cos(radians($2)) * cos(radians(l.lat)) * power(sin(radians(l.lon - $3) / 2), 2))))"""

# Holds past their expiry that the sweep has not released yet: every reader subtracts them
# from `reserved` (the SKUs are $1). One definition, shared with the routing candidates.
EXPIRED_HOLDS = """expired AS (
    SELECT rl.sku, rl.location_id, sum(rl.quantity)::integer AS quantity
    FROM reservation_lines rl
    WHERE rl.sku = ANY($1::text[]) AND rl.state = 'active' AND rl.expires_at <= now()
    GROUP BY rl.sku, rl.location_id
)"""

AVAILABILITY_SQL = f"""
WITH req AS (
    SELECT DISTINCT s.sku FROM unnest($1::text[]) AS s(sku)
),
near AS (
    SELECT l.location_id, l.curbside, l.safety_stock, {_DISTANCE} AS distance_km
    FROM locations l
    WHERE $2::float8 IS NOT NULL AND l.active AND l.pickup
      AND l.lat BETWEEN $5 AND $6 AND l.lon BETWEEN $7 AND $8
),
near_in_radius AS (
    SELECT * FROM near WHERE distance_km <= $4 ORDER BY distance_km, location_id LIMIT $9
),
{EXPIRED_HOLDS},
-- One range scan of the (sku, location_id) key per SKU, hash-joined to the locations.
ship AS (
    SELECT p.sku,
           sum(greatest(0, p.on_hand - (p.reserved - coalesce(e.quantity, 0))
                           - coalesce(p.safety_stock, l.safety_stock)))::bigint AS total
    FROM stock_positions p
    JOIN locations l ON l.location_id = p.location_id AND l.active AND l.ships
    LEFT JOIN expired e ON e.sku = p.sku AND e.location_id = p.location_id
    WHERE p.sku = ANY($1::text[])
    GROUP BY p.sku
)
SELECT r.sku, (i.sku IS NOT NULL) AS known, NULL::text AS location_id, coalesce(s.total, 0) AS available,
       NULL::float8 AS distance_km, NULL::boolean AS curbside
FROM req r
LEFT JOIN items i ON i.sku = r.sku
LEFT JOIN ship s ON s.sku = r.sku
UNION ALL
SELECT r.sku, true, n.location_id,
       coalesce(greatest(0, p.on_hand - (p.reserved - coalesce(e.quantity, 0))
                            - coalesce(p.safety_stock, n.safety_stock)), 0),
       n.distance_km, n.curbside
FROM req r CROSS JOIN near_in_radius n
LEFT JOIN stock_positions p ON p.sku = r.sku AND p.location_id = n.location_id
LEFT JOIN expired e ON e.sku = r.sku AND e.location_id = n.location_id
"""


async def fetch(
    conn: asyncpg.Connection,
    skus: list[str],
    *,
    lat: float | None,
    lon: float | None,
    radius_km: float,
    box: tuple[float, float, float, float],
    pickup_limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(AVAILABILITY_SQL, skus, lat, lon, radius_km, *box, pickup_limit)


SITES_SQL = """
SELECT location_id, lat, lon, curbside, active, ships, pickup, safety_stock FROM locations ORDER BY location_id
"""

# Per SKU: the ship total; the sites among $2 (by ordinal, from 1) where something is
# available, and how much; and what bounds how long that stays true without a write: seconds
# until its next hold expires, and whether a hold has already expired without the sweep
# releasing it (from `expired`, which the numbers subtract; the sweep's release may then
# change `available` without a stock event, so such a SKU is not kept). One range scan of
# the (sku, location_id) key per SKU serves both parts. The feed's published high-water mark
# comes from the same snapshot (replica fills, engine.services.availability).
FILL_SQL = f"""
WITH req AS (
    SELECT DISTINCT s.sku FROM unnest($1::text[]) AS s(sku)
),
{EXPIRED_HOLDS},
pos AS (
    SELECT p.sku,
           sum(c.available) FILTER (WHERE l.active AND l.ships)::bigint AS ship,
           array_agg(k.ord::integer) FILTER (WHERE k.ord IS NOT NULL AND c.available > 0) AS sites,
           array_agg(c.available) FILTER (WHERE k.ord IS NOT NULL AND c.available > 0) AS available
    FROM stock_positions p
    JOIN locations l ON l.location_id = p.location_id
    LEFT JOIN unnest($2::text[]) WITH ORDINALITY AS k(location_id, ord) ON k.location_id = p.location_id
    LEFT JOIN expired e ON e.sku = p.sku AND e.location_id = p.location_id
    CROSS JOIN LATERAL (
        SELECT greatest(0, p.on_hand - (p.reserved - coalesce(e.quantity, 0))
                           - coalesce(p.safety_stock, l.safety_stock)) AS available
    ) c
    WHERE p.sku = ANY($1::text[])
    GROUP BY p.sku
),
holds AS (
    SELECT rl.sku, extract(epoch FROM min(rl.expires_at) - now())::float8 AS expires_in
    FROM reservation_lines rl
    WHERE rl.sku = ANY($1::text[]) AND rl.state = 'active' AND rl.expires_at > now()
    GROUP BY rl.sku
)
SELECT r.sku, (i.sku IS NOT NULL) AS known, coalesce(x.ship, 0) AS ship,
       coalesce(x.sites, '{{}}') AS sites, coalesce(x.available, '{{}}') AS available,
       h.expires_in, EXISTS (SELECT 1 FROM expired e WHERE e.sku = r.sku) AS expired,
       (SELECT published_through FROM event_feed LIMIT 1) AS published_through
FROM req r
LEFT JOIN items i ON i.sku = r.sku
LEFT JOIN pos x ON x.sku = r.sku
LEFT JOIN holds h ON h.sku = r.sku
"""


async def sites(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(SITES_SQL)


async def fill(conn: asyncpg.Connection, skus: list[str], site_ids: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(FILL_SQL, skus, site_ids)
