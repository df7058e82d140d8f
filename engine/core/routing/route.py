"""Route one order: the cheapest plan under `CostModel`, with its explanation."""

from __future__ import annotations

import time
from datetime import date

import msgspec

from engine.core.geo import haversine_km
from engine.core.routing import greedy
from engine.core.routing.cost import at_capacity
from engine.core.routing.explain import explained_plan, with_used
from engine.core.routing.frame import Frame, assemble, frame
from engine.core.routing.model import CURBSIDE, PICKUP, SHIP, CostModel, Order, Plan, Site
from engine.core.routing.problem import Allocation, Problem, fills_all, needs
from engine.core.routing.solve import solve

# A baseline replaces the exact answer only when cheaper by more than float noise.
_TIE = 1e-9


def route(
    order: Order, sites: list[Site], costs: CostModel, *, today: date, exclude: frozenset[str] = frozenset()
) -> Plan:
    """The cheapest plan for `order` over `sites` (locations in `exclude` never used).

    Ship: CP-SAT over the pruned candidates plus every site a baseline would use, hinted
    with the better baseline; the better of that and both baselines is returned, so the
    plan never costs more than `nearest_greedy` or `ranked_rules` on the same input.
    If the solver returns nothing within `costs.time_limit_s`, the better baseline comes
    back with status 'fallback'.

    Pickup/curbside at store S: everything at S if S has it; otherwise (allow_split) what
    S has at S and the rest by transfer_then_pickup from the cheapest warehouses, or (one
    package) everything from the one cheapest source able to serve it. An unknown or
    excluded S, or one not offering the method, leaves everything unallocated, with the
    reason in the explanation.
    """
    f = frame(order, sites, costs, today, exclude)
    p = f.problem
    if p is None or not p.sources:
        fulfillments, unallocated = assemble(f, {})
        return explained_plan(f, fulfillments, unallocated, [], solver="none", status="trivial", solve_ms=0.0)

    start = time.perf_counter()
    baselines = sorted(((_cost(f, a), i, a) for i, a in enumerate((greedy.nearest(p), greedy.ranked(p)))))
    best_cost, _, best = baselines[0]
    sources = with_used(f, f.candidates, *(a for _, _, a in baselines))
    exact = solve(Problem(p.lines, sources, p.allow_split, p.allow_partial), f.pricing, hint=best)
    if exact is not None and _cost(f, exact[0]) <= best_cost + _TIE:
        alloc, solver, status = exact[0], "cp-sat", exact[1]
    else:
        alloc, solver, status = best, "greedy", "fallback"
    ms = (time.perf_counter() - start) * 1000
    fulfillments, unallocated = assemble(f, alloc)
    return explained_plan(f, fulfillments, unallocated, sources, solver=solver, status=status, solve_ms=ms)


def quote(
    order: Order, sites: list[Site], costs: CostModel, *, today: date, exclude: frozenset[str] = frozenset()
) -> tuple[Plan, list[Plan]]:
    """The plan for the requested method, and the best plan for each other method that
    can serve the whole order: ship, then pickup and curbside at the nearest store
    offering it that has everything (stores under their daily capacity first). When the
    requested store cannot serve the whole order from its own stock, the nearest other
    store with everything is offered for the requested method too."""
    plan = route(order, sites, costs, today=today, exclude=exclude)
    served_at_store = (
        order.method != SHIP
        and not plan.unallocated
        and all(fl.location_id == order.pickup_location_id for fl in plan.fulfillments)
    )
    alternatives = []
    if order.method != SHIP:
        ship = route(
            msgspec.structs.replace(order, method=SHIP, pickup_location_id=None),
            sites,
            costs,
            today=today,
            exclude=exclude,
        )
        if ship.fulfillments and not ship.unallocated:
            alternatives.append(ship)
    need = needs([line for line in order.lines if line.quantity > 0])
    for method in (PICKUP, CURBSIDE):
        if method == order.method and served_at_store:
            continue
        skip = order.pickup_location_id if method == order.method else None
        stores = [
            s
            for s in sites
            if (s.curbside if method == CURBSIDE else s.pickup)
            and s.location_id not in exclude
            and s.location_id != skip
            and fills_all(s, need)
        ]
        if not stores:
            continue
        nearest = min(stores, key=lambda s: (at_capacity(s), _km(order, s), s.location_id))
        alternatives.append(
            route(
                msgspec.structs.replace(order, method=method, pickup_location_id=nearest.location_id),
                sites,
                costs,
                today=today,
                exclude=exclude,
            )
        )
    return plan, alternatives


def _km(order: Order, site: Site) -> float:
    return haversine_km(order.lat, order.lon, site.lat, site.lon)


def _cost(f: Frame, alloc: Allocation) -> float:
    return f.pricing.total(*assemble(f, alloc))
