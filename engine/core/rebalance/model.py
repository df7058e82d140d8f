"""Rebalancing values: stock positions, lanes between locations, the policy, and the plan.

Quantities are whole units; money is in the deployment's currency units; demand is units
per day. Nothing here reads a clock: the caller measures demand and in-transit stock.
"""

from __future__ import annotations

import msgspec


class Need(msgspec.Struct, frozen=True):
    """One (sku, location) stock position as rebalancing sees it.

    `available` is on_hand - reserved - safety_stock and may be negative (counted as 0);
    `in_transit_in` is units already on their way here; `demand_per_day` is >= 0.
    """

    sku: str
    location_id: str
    available: int
    in_transit_in: int
    demand_per_day: float


class Lane(msgspec.Struct, frozen=True):
    """A way to move stock from `from_id` to `to_id`: `unit_cost` per unit plus
    `fixed_cost` once per transfer (one (from, to, sku) proposal)."""

    from_id: str
    to_id: str
    unit_cost: float
    fixed_cost: float = 0.0


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """How much stock a location should hold and what a move is worth.

    - `target_days_cover`: a location wants demand_per_day x this many units.
    - `stockout_cost_per_unit`: the value of one unit of projected stockout avoided; a unit
      moves only when its lane costs less than this.
    - `max_sources_per_destination`: each short location keeps only its cheapest lanes
      from surplus locations (bounds the problem size, may miss a better plan).
    - `time_limit_s`: per-SKU CP-SAT time limit (fixed lane costs only).
    """

    target_days_cover: float = 14.0
    stockout_cost_per_unit: float = 10.0
    max_sources_per_destination: int = 8
    time_limit_s: float = 1.0


class Basis(msgspec.Struct, frozen=True, array_like=True):
    """The numbers a proposal rests on: the source's available, in-transit, target and
    surplus, and the destination's (available floored at 0), in-transit, target and
    shortfall. Stored as numbers; `explain` words them."""

    source_available: int
    source_in_transit: int
    source_target: int
    source_surplus: int
    dest_available: int
    dest_in_transit: int
    dest_target: int
    dest_shortfall: int


class Proposal(msgspec.Struct, frozen=True):
    """Move `quantity` units of `sku`. `cost` is unit_cost x quantity + fixed_cost rounded
    to cents (display only); every unit moved avoids one unit of projected stockout."""

    from_location_id: str
    to_location_id: str
    sku: str
    quantity: int
    cost: float
    stockout_units_avoided: int
    basis: Basis


def explain(from_id: str, to_id: str, basis: Basis, target_days_cover: float) -> str:
    """Why a transfer from `from_id` to `to_id` was proposed, in words."""
    b = basis
    return (
        f"{from_id} has {b.source_surplus} over its target of {b.source_target} "
        f"(available {b.source_available}, in transit {b.source_in_transit}); "
        f"{to_id} is {b.dest_shortfall} short of its target of {b.dest_target} "
        f"(available {b.dest_available}, in transit {b.dest_in_transit}); "
        f"target = {target_days_cover:g} days of cover"
    )


class SkuPlan(msgspec.Struct, frozen=True):
    """One SKU's proposals, sorted by (from_location_id, to_location_id).

    `solver` is "min-cost-flow", "cp-sat" or "none"; `status` is "optimal", "feasible"
    (CP-SAT hit its time limit), "trivial" (nothing to solve) or "fallback" (CP-SAT found
    nothing better than its min-cost-flow hint, which is what is proposed).
    """

    sku: str
    proposals: list[Proposal]
    solver: str
    status: str
