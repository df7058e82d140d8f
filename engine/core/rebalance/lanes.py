"""Lanes priced by distance, for networks without a negotiated lane table."""

from __future__ import annotations

from collections.abc import Iterable

from engine.core.geo import haversine_km
from engine.core.rebalance.model import Lane
from engine.errors import BadInput


def distance_lanes(
    locations: Iterable[tuple[str, float, float]],
    *,
    unit_cost: float = 0.10,
    km_cost: float = 0.0005,
    fixed_cost: float = 0.0,
) -> dict[tuple[str, str], Lane]:
    """A lane for every ordered pair of distinct `locations` (location_id, lat, lon): per
    unit `unit_cost` + `km_cost` x great-circle km, plus `fixed_cost` per transfer. n
    locations give n x (n - 1) lanes. Raises BadInput for a location_id listed twice."""
    locs = list(locations)
    if len({loc[0] for loc in locs}) != len(locs):
        raise BadInput("a location is listed twice")
    lanes: dict[tuple[str, str], Lane] = {}
    for i, (a, lat_a, lon_a) in enumerate(locs):
        for b, lat_b, lon_b in locs[i + 1 :]:
            per_unit = unit_cost + km_cost * haversine_km(lat_a, lon_a, lat_b, lon_b)
            lanes[a, b] = Lane(a, b, per_unit, fixed_cost)
            lanes[b, a] = Lane(b, a, per_unit, fixed_cost)
    return lanes
