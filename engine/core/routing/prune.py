"""Which shipping sites the exact solve considers for one order."""

from __future__ import annotations

from collections.abc import Callable

from engine.core.geo import haversine_km
from engine.core.routing.model import WAREHOUSE, CostModel, Order, Site
from engine.core.routing.problem import fills_all, needs, stocks_any

NEAREST_PER_LINE = 5
NEAREST_WHOLE_ORDER = 5


def prune(order: Order, sites: list[Site], costs: CostModel) -> list[Site]:
    """Shipping candidates, nearest first (ties by location_id).

    Among the sites that ship and stock at least one ordered SKU: per line the 5 nearest
    stocking its SKU and the nearest that can fill the whole line, the 5 nearest that can
    fill the whole order, and every warehouse. Over `costs.max_candidates`, warehouses
    are all kept and the rest are kept in that order of preference (whole-order sites,
    whole-line sites, nearest stocking sites), nearer first. The caller removes excluded
    sites beforehand.
    """
    return prune_by(order, sites, costs, lambda s: haversine_km(s.lat, s.lon, order.lat, order.lon))


def prune_by(order: Order, sites: list[Site], costs: CostModel, km_to_order: Callable[[Site], float]) -> list[Site]:
    """`prune` with distances from the caller (the router has them already)."""
    lines = [line for line in order.lines if line.quantity > 0]
    pool = [s for s in sites if s.ships and stocks_any(s, lines)]
    km = {s.location_id: km_to_order(s) for s in pool}
    pool.sort(key=lambda s: (km[s.location_id], s.location_id))

    tier: dict[str, int] = {}

    def keep(site: Site, rank: int) -> None:
        tier[site.location_id] = min(rank, tier.get(site.location_id, rank))

    need = needs(lines)
    for site in [s for s in pool if fills_all(s, need)][:NEAREST_WHOLE_ORDER]:
        keep(site, 0)
    for line in lines:
        whole = next((s for s in pool if s.stock.get(line.sku, 0) >= line.quantity), None)
        if whole is not None:
            keep(whole, 1)
        for site in [s for s in pool if s.stock.get(line.sku, 0) > 0][:NEAREST_PER_LINE]:
            keep(site, 2)

    warehouses = [s for s in pool if s.kind == WAREHOUSE]
    others = sorted(
        (s for s in pool if s.kind != WAREHOUSE and s.location_id in tier),
        key=lambda s: (tier[s.location_id], km[s.location_id], s.location_id),
    )
    kept = warehouses + others[: max(0, costs.max_candidates - len(warehouses))]
    return sorted(kept, key=lambda s: (km[s.location_id], s.location_id))
