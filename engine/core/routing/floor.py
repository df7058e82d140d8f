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

How it is proven, in three parts whose largest value is reported. Call a SKU *short* when
the batch orders more of it than the pool holds, else *coverable*. Every plan serving the
target leaves at most `slack` units unserved beyond what short SKUs force, where slack =
sum over SKUs of min(ordered, pooled) - target: fewer than that many units of coverable
SKUs go unserved, and fewer than that many units of short SKUs stay in the pool.

1. Per order. For each order, the fewest sites that together hold its coverable units (its
   own need only, as if no other order took stock) is found exactly by enumeration (or,
   for wide networks, by a small CP-SAT model, whose proven bound is used if it is not
   solved in time). Leaving one unit unserved removes at most one site from that minimum,
   so an order that ships from n sites and leaves u of its coverable units unserved has
   n >= fewest - u. Summed: extra >= sum(max(0, fewest - 1)) - slack.
2. Short stock. The units of short SKUs must nearly all be served (up to the slack), and
   an order that takes one from a site outside every fewest-site cover of its coverable
   units ships from one more site. A CP-SAT model keeps exactly who takes which short unit
   from where (within the pool) and relaxes the rest to part 1: per order, the fewest
   sites that include the sites it takes short units from (one or two at a time). Small
   (only the orders with short lines have choices); its proven bound counts.
3. Jointly. A CP-SAT model of the whole batch (x[o, line, site] units, y[o, site] the
   order ships from the site, units within the pool shared across orders, total units
   >= the target, the per-order inequalities of part 1 added as cuts), minimizing the
   extra shipments, hinted with the current plans, under a time limit. Its
   `best_objective_bound` is a proven lower bound whether or not it finishes; on small
   batches it proves the exact minimum (on thousands of orders it has not improved on
   parts 1 and 2 within a minute).
"""

from __future__ import annotations

import itertools
import math
import time

import msgspec
from ortools.sat.python import cp_model

from engine.core.routing.batch import Pending, stock_pool
from engine.core.routing.model import SHIP, Site

ENUMERATION_LIMIT = 20_000  # site subsets tried per order before a CP-SAT model takes over
ORDER_TIME_LIMIT_S = 1.0  # per order, when it does
SHORT_SITES_AT_ONCE = 2  # part 2 prices the sites an order takes short units from this many at a time


class ShipmentFloor(msgspec.Struct, frozen=True):
    """`extra_shipments`: the proven floor (see the module docstring). `per_order`,
    `short_bound`, `joint_bound`: the three parts' proven values (None when skipped).
    `best_found`: extra shipments of the best plan the joint solve found (at most those of
    the current plans), None when skipped or none found. `optimal`: `extra_shipments` is
    the minimum, because the current plans or the joint solve's plan attain it (the
    CP-SAT parts are skipped once the current plans do). `target`: units every plan
    compared must serve in total; `slack` as above."""

    extra_shipments: int
    per_order: int
    short_bound: int | None
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
        self.order_id = p.order.order_id
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

        # Set by `shipment_floor`: its coverable units the sites it may use hold (by SKU),
        # those they do not (unserved in every plan), and the fewest sites for the former.
        self.reach: dict[str, int] = {}
        self.beyond = 0
        self.fewest = 0

    def need(self, skus: set[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.lines:
            if line.sku in skus:
                out[line.sku] = out.get(line.sku, 0) + line.quantity
        return out

    def fewest_with(self, taken: tuple[Site, ...]) -> int:
        """The fewest sites that include `taken` and hold its reachable coverable units."""
        rest = {sku: n - sum(s.stock.get(sku, 0) for s in taken) for sku, n in self.reach.items()}
        ids = {s.location_id for s in taken}
        others = [s for s in self.sites if s.location_id not in ids]
        return len(taken) + _fewest_sites({sku: n for sku, n in rest.items() if n > 0}, others)

    @property
    def held(self) -> int:
        return sum(n for units in self.current.values() for n in units.values())


def shipment_floor(
    pending: list[Pending], sites: list[Site], *, time_limit_s: float = 30.0, joint: bool = True, workers: int = 1
) -> ShipmentFloor:
    """The floor over the ship orders in `pending` (`sites` carry free stock, as for
    `rebroker`), with the target set to the units those orders hold now. `time_limit_s`
    bounds the solves of parts 2 and 3 together (0 skips them; part 2 takes at most half
    unless `joint` is False, which skips part 3); building their models comes on top, as
    does part 1 (about a millisecond an order on a 10-site network)."""
    start = time.perf_counter()
    lines_by_order = {p.order.order_id: {line.line_id: line.sku for line in p.order.lines} for p in pending}
    ship = [p for p in pending if p.order.method == SHIP]
    pool = stock_pool(sites, ship, lines_by_order)
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

    for o in orders:
        need = o.need(coverable)
        o.reach = {sku: r for sku, n in need.items() if (r := min(n, sum(s.stock.get(sku, 0) for s in o.sites)))}
        o.beyond = sum(need.values()) - sum(o.reach.values())
        o.fewest = _fewest_sites(o.reach, o.sites)
    # Units a plan may leave unserved beyond those no site an order may use holds.
    budget = slack - sum(o.beyond for o in orders)
    per_order = max(0, sum(max(0, o.fewest - 1) for o in orders) - budget)

    current = sum(max(0, len(o.current) - 1) for o in orders)
    short_bound = joint_bound = best_found = None
    optimal = per_order >= current
    deadline = start + time_limit_s
    if time_limit_s > 0 and not optimal:
        short = {sku for sku in ordered if sku not in coverable and pooled.get(sku, 0) > 0}
        if short:
            short_bound = _short_stock(orders, pool, short, budget, time_limit_s / (2 if joint else 1), workers)
            optimal = short_bound >= current
        left = deadline - time.perf_counter()
        if joint and left > 0 and not optimal:
            joint_bound, best_found, optimal = _joint(orders, pool, coverable, target, budget, left, workers)
    return ShipmentFloor(
        extra_shipments=max(per_order, short_bound or 0, joint_bound or 0),
        per_order=per_order,
        short_bound=short_bound,
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


def _short_stock(
    orders: list[_Order], pool: list[Site], short: set[str], budget: int, time_limit_s: float, workers: int
) -> int:
    """Part 2's proven bound. w[o, line, site]: units of a short SKU order o takes from the
    site; r[o, site]: it takes any there; u[o]: its reachable coverable units left unserved;
    e[o]: its extra shipments. Per order, e + u >= fewest(including T) - 1 whenever it takes
    short units at every site of T (T of up to SHORT_SITES_AT_ONCE sites, and T empty);
    across orders, the units u plus the short units left in the pool stay within the
    budget."""
    stock = {(s.location_id, sku): n for s in pool for sku, n in s.stock.items() if sku in short}
    model = cp_model.CpModel()
    taken: dict[tuple[str, str], list[cp_model.IntVar]] = {}
    extra: list[cp_model.IntVar] = []
    unserved: list[cp_model.IntVar] = []
    for o in orders:
        base = max(0, o.fewest - 1)
        used: dict[str, tuple[Site, cp_model.IntVar]] = {}
        for line in o.lines:
            if line.sku not in short:
                continue
            for s in o.sites:
                cap = min(line.quantity, stock.get((s.location_id, line.sku), 0))
                if cap <= 0:
                    continue
                if s.location_id not in used:
                    used[s.location_id] = (s, model.new_bool_var(""))
                w = model.new_int_var(0, cap, "")
                model.add(w <= cap * used[s.location_id][1])
                taken.setdefault((s.location_id, line.sku), []).append(w)
        if not used and base == 0:
            continue
        top = max(0, len(o.sites) - 1) if o.allow_split else 0
        e = model.new_int_var(0, top, "")
        u = model.new_int_var(0, min(budget, sum(o.reach.values())), "")
        model.add(e + u >= base)
        levels = {(): base}
        for size in range(1, min(SHORT_SITES_AT_ONCE, len(used)) + 1):
            for group in itertools.combinations(sorted(used), size):
                level = max(0, o.fewest_with(tuple(used[loc][0] for loc in group)) - 1)
                below = max(levels[sub] for sub in itertools.combinations(group, size - 1))
                levels[group] = max(level, below)
                if level > below:
                    missing = size - sum(used[loc][1] for loc in group)
                    model.add(e + u >= level - (level - base) * missing)
        extra.append(e)
        unserved.append(u)
    supply = sum(stock.values())
    left_in_pool = supply - cp_model.LinearExpr.sum([w for ws in taken.values() for w in ws])
    model.add(cp_model.LinearExpr.sum(unserved) + left_in_pool <= budget)
    for key, ws in taken.items():
        model.add(cp_model.LinearExpr.sum(ws) <= stock[key])
    model.minimize(cp_model.LinearExpr.sum(extra))
    solver, _ = _solve(model, time_limit_s, workers, "the current plans satisfy the model")
    return math.ceil(solver.best_objective_bound - 1e-6)


def _solve(model: cp_model.CpModel, time_limit_s: float, workers: int, why_feasible: str) -> tuple:
    """Solve within the time limit: (solver, status). A model the current plans satisfy
    cannot be infeasible: if it is, the model is wrong, and that must not pass as a bound."""
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(model)
    if status == cp_model.MODEL_INVALID:
        raise AssertionError(model.validate())
    if status == cp_model.INFEASIBLE:
        raise AssertionError(f"{why_feasible}, so it cannot be infeasible")
    return solver, status


def _joint(
    orders: list[_Order],
    pool: list[Site],
    coverable: set[str],
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
    for o in orders:
        k, lost = o.fewest, o.beyond
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
    solver, status = _solve(model, time_limit_s, workers, "the current plans serve the target")
    bound = math.ceil(solver.best_objective_bound - 1e-6)
    found = round(solver.objective_value) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None
    return bound, found, status == cp_model.OPTIMAL
