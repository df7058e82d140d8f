"""The fewest extra shipments a batch of ship orders can have: a proven lower bound to hold
re-brokering against.

What it bounds. Take the ship orders in a batch and the pool a routing run re-brokers them
over (free stock plus what those orders hold now, as in `rebroker`). Among all plans that

- serve at least as many units in total as the orders hold now (which units, and for
  which orders, is free),
- take from each (location, SKU) no more than the pool has,
- use only shipping locations not excluded for the order (any of them, not only the
  router's pruned candidates), and
- keep each order's split and all-or-nothing rules,

none has fewer extra shipments (fulfillments beyond one per order that ships anything)
than `ShipmentFloor.extra_shipments`. Daily capacity and cost are ignored: the floor also
holds for plans that overfill a site or cost more. So the plans `rebroker` starts from and
returns are inside the set, and a floor computed on either never exceeds its extra
shipments.

How it is proven, in two parts whose larger value is reported:

1. Per order. Call a SKU *coverable* when the pool holds at least what the batch orders
   of it. Every plan serving the target leaves at most `slack` units of coverable SKUs
   unserved, where slack = sum over SKUs of min(ordered, pooled) - target. For each order,
   the fewest sites that together hold its coverable units (its own need only, as if no
   other order took stock) is found exactly by enumeration (or, for wide networks, by a
   small CP-SAT model, whose proven bound is used if it is not solved in time). Leaving
   one unit unserved removes at most one site from that minimum, so an order that ships
   from n sites and leaves u of its coverable units unserved has n >= fewest - u. Summed:
   extra >= sum(max(0, fewest - 1)) - slack.
2. Jointly. A CP-SAT model of the whole batch (x[o, line, site] units, y[o, site] the
   order ships from the site, units within the pool shared across orders, total units
   >= the target, the per-order inequalities of part 1 added as cuts), minimizing the
   extra shipments, hinted with the current plans, under a time limit. Its
   `best_objective_bound` is a proven lower bound whether or not it finishes; on small
   batches it proves the exact minimum.
"""

from __future__ import annotations

import itertools
import math
import time

import msgspec
from ortools.sat.python import cp_model

from engine.core.routing.batch import Pending, _pool
from engine.core.routing.model import SHIP, Site

ENUMERATION_LIMIT = 20_000  # site subsets tried per order before a CP-SAT model takes over
ORDER_TIME_LIMIT_S = 1.0  # per order, when it does


class ShipmentFloor(msgspec.Struct, frozen=True):
    """`extra_shipments`: the proven floor (see the module docstring). `per_order`: part 1
    alone; `joint_bound`: part 2's proven bound (None when skipped). `best_found`: extra
    shipments of the best plan the joint solve found (at most those of the current plans),
    None when skipped or none found. `optimal`: the joint solve proved `extra_shipments` is
    the minimum. `target`: units every plan compared must serve in total; `slack` as above."""

    extra_shipments: int
    per_order: int
    joint_bound: int | None
    best_found: int | None
    optimal: bool
    target: int
    slack: int
    solve_ms: float


class _Order:
    """One ship order over the pool: the sites it may use, with the pool's units of its
    lines there, and what it holds now."""

    def __init__(self, p: Pending, pool: list[Site]) -> None:
        self.lines = [line for line in p.order.lines if line.quantity > 0]
        self.allow_split = p.order.allow_split
        self.allow_partial = p.order.allow_partial
        self.current = {loc: units for loc, units in p.current.items() if any(units.values())}
        self.sites = [
            s
            for s in pool
            if ((s.ships and s.location_id not in p.exclude) or s.location_id in self.current)
            and any(s.stock.get(line.sku, 0) > 0 for line in self.lines)
        ]

    def need(self, skus: set[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.lines:
            if line.sku in skus:
                out[line.sku] = out.get(line.sku, 0) + line.quantity
        return out

    @property
    def held(self) -> int:
        return sum(n for units in self.current.values() for n in units.values())


def shipment_floor(
    pending: list[Pending], sites: list[Site], *, time_limit_s: float = 30.0, workers: int = 1
) -> ShipmentFloor:
    """The floor over the ship orders in `pending` (`sites` carry free stock, as for
    `rebroker`), with the target set to the units those orders hold now. `time_limit_s`
    bounds the joint solve (0 skips it); part 1 comes on top (about a millisecond an order
    on a 10-site network)."""
    start = time.perf_counter()
    lines_by_order = {p.order.order_id: {line.line_id: line.sku for line in p.order.lines} for p in pending}
    ship = [p for p in pending if p.order.method == SHIP]
    pool = _pool(sites, ship, lines_by_order)
    orders = [_Order(p, pool) for p in ship]
    target = sum(o.held for o in orders)

    ordered: dict[str, int] = {}
    for o in orders:
        for line in o.lines:
            ordered[line.sku] = ordered.get(line.sku, 0) + line.quantity
    pooled: dict[str, int] = {}
    for s in pool:
        for sku, n in s.stock.items():
            pooled[sku] = pooled.get(sku, 0) + n
    coverable = {sku for sku, n in ordered.items() if n <= pooled.get(sku, 0)}
    slack = sum(min(n, pooled.get(sku, 0)) for sku, n in ordered.items()) - target

    # Per order: the fewest sites for its coverable units it can reach, and the units of
    # them no site it may use holds (unserved in every plan).
    fewest: list[int] = []
    beyond_reach: list[int] = []
    for o in orders:
        need = o.need(coverable)
        reach = {sku: min(n, sum(s.stock.get(sku, 0) for s in o.sites)) for sku, n in need.items()}
        beyond_reach.append(sum(need.values()) - sum(reach.values()))
        fewest.append(_fewest_sites({k: n for k, n in reach.items() if n > 0}, o.sites))
    per_order = max(0, sum(max(0, k - 1) for k in fewest) - (slack - sum(beyond_reach)))

    joint_bound = best_found = None
    optimal = False
    if time_limit_s > 0 and orders:
        budget = slack - sum(beyond_reach)
        joint_bound, best_found, optimal = _joint(
            orders, pool, coverable, fewest, beyond_reach, target, budget, time_limit_s, workers
        )
    return ShipmentFloor(
        extra_shipments=max(per_order, joint_bound or 0),
        per_order=per_order,
        joint_bound=joint_bound,
        best_found=best_found,
        optimal=optimal,
        target=target,
        slack=slack,
        solve_ms=round((time.perf_counter() - start) * 1000, 1),
    )


def _fewest_sites(need: dict[str, int], sites: list[Site]) -> int:
    """The fewest of `sites` whose stock together covers `need` (units per SKU; each is
    coverable by all of them together). Exact, or CP-SAT's proven bound on wide networks."""
    if not need:
        return 0
    useful = [s for s in sites if any(s.stock.get(sku, 0) > 0 for sku in need)]
    tried = 0
    for size in range(1, len(useful) + 1):
        tried += math.comb(len(useful), size)
        if tried > ENUMERATION_LIMIT:
            return _fewest_sites_cp(need, useful, size)
        for group in itertools.combinations(useful, size):
            if all(sum(s.stock.get(sku, 0) for s in group) >= n for sku, n in need.items()):
                return size
    raise AssertionError("need is not coverable by the sites given")


def _fewest_sites_cp(need: dict[str, int], sites: list[Site], at_least: int) -> int:
    model = cp_model.CpModel()
    use = [model.new_bool_var("") for _ in sites]
    for sku, n in need.items():
        model.add(sum(min(n, s.stock.get(sku, 0)) * u for s, u in zip(sites, use, strict=True)) >= n)
    model.add(sum(use) >= at_least)
    model.minimize(sum(use))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = ORDER_TIME_LIMIT_S
    solver.solve(model)
    return max(at_least, math.ceil(solver.best_objective_bound - 1e-6))


def _joint(
    orders: list[_Order],
    pool: list[Site],
    coverable: set[str],
    fewest: list[int],
    beyond_reach: list[int],
    target: int,
    budget: int,
    time_limit_s: float,
    workers: int,
) -> tuple[int | None, int | None, bool]:
    """(proven bound, best plan's extra shipments, proven optimal) of the joint model.
    `budget`: coverable units within reach that a plan may leave unserved in all."""
    stock = {(s.location_id, sku): n for s in pool for sku, n in s.stock.items()}
    model = cp_model.CpModel()
    by_resource: dict[tuple[str, str], list[cp_model.IntVar]] = {}
    served_all: list[cp_model.IntVar] = []
    extra: list[cp_model.IntVar] = []
    for o, k, lost in zip(orders, fewest, beyond_reach, strict=True):
        current = {loc: dict(units) for loc, units in o.current.items()}
        opened: list[cp_model.IntVar] = []
        per_line: list[list[cp_model.IntVar]] = [[] for _ in o.lines]
        for s in o.sites:
            loc = s.location_id
            given = current.get(loc, {})
            y = model.new_bool_var("")
            model.add_hint(y, bool(given))
            opened.append(y)
            for j, line in enumerate(o.lines):
                cap = min(line.quantity, s.stock.get(line.sku, 0))
                if cap <= 0:
                    continue
                x = model.new_int_var(0, cap, "")
                model.add(x <= cap * y)
                model.add_hint(x, given.get(line.line_id, 0))
                per_line[j].append(x)
                by_resource.setdefault((loc, line.sku), []).append(x)
                served_all.append(x)
        whole = model.new_bool_var("") if not o.allow_partial else None
        if whole is not None:
            model.add_hint(whole, bool(current))
        for line, xs in zip(o.lines, per_line, strict=True):
            if whole is not None:
                model.add(sum(xs) == line.quantity * whole)
            elif len(xs) > 1:
                model.add(sum(xs) <= line.quantity)
        top = max(0, len(opened) - 1) if o.allow_split else 0
        e = model.new_int_var(min(top, max(0, k - 1 - budget)), top, "")
        model.add(e >= sum(opened) - 1)
        model.add_hint(e, max(0, len(current) - 1))
        if k > 1:
            need = sum(line.quantity for line in o.lines if line.sku in coverable)
            served = [x for line, xs in zip(o.lines, per_line, strict=True) if line.sku in coverable for x in xs]
            model.add(e >= k - 1 - (need - lost - sum(served)))
        extra.append(e)
    for key, xs in by_resource.items():
        model.add(cp_model.LinearExpr.sum(xs) <= stock[key])
    model.add(cp_model.LinearExpr.sum(served_all) >= target)
    model.minimize(cp_model.LinearExpr.sum(extra))

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(model)
    if status == cp_model.MODEL_INVALID:
        raise AssertionError(model.validate())
    if status == cp_model.INFEASIBLE:
        raise AssertionError("the current plans serve the target, so the model cannot be infeasible")
    bound = math.ceil(solver.best_objective_bound - 1e-6)
    found = round(solver.objective_value) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None
    return bound, found, status == cp_model.OPTIMAL
