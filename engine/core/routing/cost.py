"""The one cost function every plan is scored with (router, baselines, brute force).

`Pricing` holds what one order's costs depend on (distances, unfilled penalties) so the
solver's coefficients and `plan_cost` come from the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, timedelta

from engine.core.geo import haversine_km
from engine.core.routing.model import (
    CURBSIDE,
    PICKUP,
    SHIP,
    SHIP_FROM_STORE,
    SHIP_FROM_WAREHOUSE,
    TRANSFER_THEN_PICKUP,
    WAREHOUSE,
    Cost,
    CostModel,
    Fulfillment,
    Line,
    LineAllocation,
    Order,
    Site,
)


def ship_method(site: Site) -> str:
    return SHIP_FROM_WAREHOUSE if site.kind == WAREHOUSE else SHIP_FROM_STORE


def at_capacity(site: Site) -> bool:
    return site.daily_order_capacity is not None and site.orders_today >= site.daily_order_capacity


class Pricing:
    """Costs for one order over one set of sites, on one day."""

    def __init__(self, order: Order, sites: Iterable[Site], costs: CostModel, today: date) -> None:
        self.order = order
        self.costs = costs
        self.today = today
        self.by_id = {s.location_id: s for s in sites}
        self._km: dict[str, float] = {}
        self.store = self.by_id.get(order.pickup_location_id) if order.pickup_location_id else None
        if costs.unfilled_unit_penalty is None:
            lone = [(s, m, self.km(s, m)) for s in self.by_id.values() if (m := self._lone_method(s)) is not None]
            self._max_pick = max((self.pick(s) for s, _, _ in lone), default=costs.unit_cost)
            self._max_km = max((km for _, _, km in lone), default=0.0)
            dated = order.promise_by is not None
            self._max_penalty = max(
                (self.fixed(s, m, km)[1] for s, m, km in lone if dated or s.daily_order_capacity is not None),
                default=0.0,
            )
        self._unfilled = {line.line_id: self._unfilled_for(line) for line in order.lines}

    def _lone_method(self, site: Site) -> str | None:
        """How `site` would serve this order on its own, for the default unfilled penalty."""
        if self.order.method == SHIP or self.store is None:
            return ship_method(site)
        if site.location_id == self.store.location_id:
            return self.order.method
        return TRANSFER_THEN_PICKUP if site.kind == WAREHOUSE else None

    # -- per site and line -----------------------------------------------------------

    def km_to_order(self, site: Site) -> float:
        km = self._km.get(site.location_id)
        if km is None:
            km = self._km[site.location_id] = haversine_km(site.lat, site.lon, self.order.lat, self.order.lon)
        return km

    def km(self, site: Site, method: str) -> float:
        """Distance the units travel: to the customer, to the pickup store, or nowhere."""
        if method in (PICKUP, CURBSIDE):
            return 0.0
        if method == TRANSFER_THEN_PICKUP:
            if self.store is None:
                raise ValueError("a transfer needs the order's pickup store among the sites")
            return haversine_km(site.lat, site.lon, self.store.lat, self.store.lon)
        return self.km_to_order(site)

    def pick(self, site: Site) -> float:
        return self.costs.unit_cost if site.pick_cost_per_unit is None else site.pick_cost_per_unit

    def weight_factor(self, line: Line) -> float:
        return max(1.0, line.weight_kg / self.costs.weight_reference_kg)

    def _unfilled_for(self, line: Line) -> float:
        c = self.costs
        if c.unfilled_unit_penalty is not None:
            return c.unfilled_unit_penalty
        worst = c.package_cost + self._max_pick + c.km_cost * self._max_km * self.weight_factor(line)
        return 2 * (worst + self._max_penalty)

    def unfilled(self, line_id: str) -> float:
        """Penalty per unit of this line left unallocated."""
        return self._unfilled[line_id]

    def eta(self, site: Site, method: str, km: float) -> date:
        c = self.costs
        if method in (PICKUP, CURBSIDE):
            days = 0
        elif method == TRANSFER_THEN_PICKUP:
            days = c.handling_days_warehouse + c.transfer_days + math.ceil(km / c.km_per_transit_day)
        else:
            handling = c.handling_days_warehouse if site.kind == WAREHOUSE else c.handling_days_store
            days = handling + math.ceil(km / c.km_per_transit_day)
        return self.today + timedelta(days=days)

    def fixed(self, site: Site, method: str, km: float) -> tuple[float, float]:
        """(package, penalty) paid once per fulfillment: late days and capacity load."""
        c = self.costs
        penalty = 0.0
        promise = self.order.promise_by
        if promise is not None:
            penalty += max(0, (self.eta(site, method, km) - promise).days) * c.late_penalty_per_day
        if site.daily_order_capacity is not None:
            load = (site.orders_today + 1) / max(1, site.daily_order_capacity)
            penalty += c.capacity_penalty * load * load
        return c.package_cost, penalty

    def per_unit(self, site: Site, km: float, line: Line) -> tuple[float, float, float]:
        """(pick, distance, penalty) for one unit of `line` from `site`."""
        overflow = self.unfilled(line.line_id) / 2 if at_capacity(site) else 0.0
        return self.pick(site), self.costs.km_cost * km * self.weight_factor(line), overflow

    # -- fulfillments and plans ------------------------------------------------------

    def breakdown(self, site: Site, method: str, units: Iterable[tuple[Line, int]]) -> tuple[float, ...]:
        """Unrounded (package, pick, distance, penalty, total) of one fulfillment."""
        km = self.km(site, method)
        package, penalty = self.fixed(site, method, km)
        pick = distance = 0.0
        for line, n in units:
            p, d, o = self.per_unit(site, km, line)
            pick += n * p
            distance += n * d
            penalty += n * o
        return package, pick, distance, penalty, package + pick + distance + penalty

    def fulfillment(self, site: Site, method: str, units: list[tuple[Line, int]]) -> Fulfillment:
        parts = self.breakdown(site, method, units)
        return Fulfillment(
            location_id=site.location_id,
            method=method,
            lines=[LineAllocation(line.line_id, line.sku, n) for line, n in units],
            cost=Cost(*(round(v, 2) for v in parts)),
            eta=self.eta(site, method, self.km(site, method)),
        )

    def total(self, fulfillments: Iterable[Fulfillment], unallocated: Iterable[LineAllocation]) -> float:
        lines = {line.line_id: line for line in self.order.lines}
        total = 0.0
        for f in sorted(fulfillments, key=lambda f: (f.location_id, f.method)):
            site = self.by_id.get(f.location_id)
            if site is None:
                raise ValueError(f"fulfillment at unknown location {f.location_id!r}")
            total += self.breakdown(site, f.method, [(lines[a.line_id], a.quantity) for a in f.lines])[4]
        for a in unallocated:
            total += a.quantity * self.unfilled(a.line_id)
        return total


def plan_cost(
    order: Order,
    plan_fulfillments: list[Fulfillment],
    unallocated: list[LineAllocation],
    sites: list[Site],
    costs: CostModel,
    *,
    today: date,
) -> float:
    """Unrounded cost of a plan: per fulfillment package + pick + distance + penalties
    (late, capacity), plus the unfilled penalty for every unallocated unit.

    Only each fulfillment's location, method and line quantities are read (its `cost`
    and `eta` are recomputed), so any candidate plan can be scored. `sites` must be the
    same list the plan was routed over: the default unfilled penalty depends on it.
    """
    return Pricing(order, sites, costs, today).total(plan_fulfillments, unallocated)
