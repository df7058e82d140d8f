"""Routing values: the cost model, the order and sites it is routed over, and the plan.

Money is in the deployment's currency units; distances are great-circle km; dates are
calendar days (today is always passed in, never read from a clock).
"""

from __future__ import annotations

from datetime import date

import msgspec

SHIP = "ship"
PICKUP = "pickup"
CURBSIDE = "curbside"
ORDER_METHODS = (SHIP, PICKUP, CURBSIDE)

SHIP_FROM_WAREHOUSE = "ship_from_warehouse"
SHIP_FROM_STORE = "ship_from_store"
TRANSFER_THEN_PICKUP = "transfer_then_pickup"

WAREHOUSE = "warehouse"
STORE = "store"


class CostModel(msgspec.Struct, frozen=True, kw_only=True):
    """What a plan costs. Defaults are the published multi-item fulfillment constants.

    - `package_cost`: per fulfillment (one package, or one pickup bag).
    - Per unit: the site's `pick_cost_per_unit` (`unit_cost` when the site has none) plus
      `km_cost` x km x weight factor, where the weight factor is
      max(1, weight_kg / `weight_reference_kg`). Pickup at the store itself travels 0 km;
      a transfer travels warehouse -> pickup store.
    - `unfilled_unit_penalty` per unit left unallocated. None: twice the cost of sending
      that unit alone from the worst site, i.e. for a unit of line l
      2 x (package_cost + max pick cost + km_cost x farthest km x weight factor of l
      + largest late-plus-capacity penalty), each maximum over the sites passed in as
      they would serve this order (ship: to the address; pickup: the store itself or a
      warehouse transfer). Without promise dates or capacities this is the published
      2 x package + 2 x (pick + distance cost from the farthest site).
    - Per fulfillment: `late_penalty_per_day` for each day its ETA is after `promise_by`;
      at a site with a daily order capacity, `capacity_penalty` x (load_after/capacity)^2
      where load_after = orders_today + 1.
    - A site already at or over capacity also pays half an unfilled-unit penalty per unit
      it serves. With the default unfilled penalty that is more than any other site can
      save, and no more than leaving the unit unfilled: a full site serves only what
      nothing else can (an exact tie only when it is the single worst site for a single
      unit), and the penalty shows in `cost.penalty` and the explanation.
    - ETA: ship = today + handling days of the site's kind + ceil(km / km_per_transit_day);
      pickup/curbside at a store that has everything = today (ready in
      `pickup_ready_hours`); transfer_then_pickup = today + handling_days_warehouse +
      transfer_days + ceil(km(warehouse, store) / km_per_transit_day).
    - `max_candidates` caps pruned shipping candidates (warehouses always kept);
      `time_limit_s` bounds one exact solve.
    """

    package_cost: float = 8.759
    unit_cost: float = 0.423
    km_cost: float = 0.000336
    weight_reference_kg: float = 1.0
    unfilled_unit_penalty: float | None = None
    late_penalty_per_day: float = 5.0
    capacity_penalty: float = 20.0
    handling_days_warehouse: int = 1
    handling_days_store: int = 0
    km_per_transit_day: float = 800.0
    pickup_ready_hours: int = 2
    transfer_days: int = 2
    max_candidates: int = 25
    time_limit_s: float = 0.05


class Line(msgspec.Struct, frozen=True):
    line_id: str
    sku: str
    quantity: int
    weight_kg: float = 0.0


class Site(msgspec.Struct, frozen=True):
    """A location as routing sees it. `stock` is available units per SKU, already net of
    reserved and safety stock; a missing SKU has none. `pick_cost_per_unit` None means
    `CostModel.unit_cost`."""

    location_id: str
    kind: str
    lat: float
    lon: float
    ships: bool
    pickup: bool
    curbside: bool
    pick_cost_per_unit: float | None
    daily_order_capacity: int | None
    orders_today: int
    stock: dict[str, int]


class Order(msgspec.Struct, frozen=True):
    """`method` is 'ship', 'pickup' or 'curbside'; the last two need `pickup_location_id`.

    allow_split=False means one package: every allocated unit from a single site.
    allow_partial=False means all or nothing: every unit is allocated, or none is.
    """

    order_id: str
    lat: float
    lon: float
    method: str
    pickup_location_id: str | None
    lines: list[Line]
    allow_split: bool = True
    allow_partial: bool = False
    promise_by: date | None = None


class LineAllocation(msgspec.Struct, frozen=True):
    line_id: str
    sku: str
    quantity: int


class Cost(msgspec.Struct, frozen=True):
    """A fulfillment's cost, rounded to cents for display; `penalty` is late + capacity."""

    package: float
    pick: float
    distance: float
    penalty: float
    total: float


class Fulfillment(msgspec.Struct, frozen=True):
    location_id: str
    method: str
    lines: list[LineAllocation]
    cost: Cost
    eta: date


class Explanation(msgspec.Struct, frozen=True):
    """How a plan was found. `considered` holds one {"location_id", "used", "reason"} per
    candidate (plus excluded or unusable locations that would otherwise have been one)."""

    candidates: int
    solver: str
    status: str
    solve_ms: float
    considered: list[dict]


class Plan(msgspec.Struct, frozen=True):
    """Fulfillments by location_id; `total_cost` is `plan_cost` rounded to cents and
    includes the penalty for every unit in `unallocated`."""

    fulfillments: list[Fulfillment]
    unallocated: list[LineAllocation]
    total_cost: float
    explanation: Explanation
