"""Batch re-brokering: route many open orders again, jointly, over shared stock and hard
daily capacities, and keep only the changes that lower the total cost.

Inputs are the orders still open (`Pending`: the lines not yet picked, and what their open
fulfillments hold now, by location and line) and every site with its *free* stock (what no
order holds). Units held by the batch's own orders go back into a shared pool, so an order
may move to a location another order gives up.

Cost is `Pricing`'s, with one difference: daily capacity is a hard limit here, not a
penalty (an order already at a full site may stay; no order is added to one). So a batch
cost is the online cost of the same plan without capacity penalties.

The joint problem (one x/y/z block per order as in `solve`, plus one row per contested
(location, SKU) and per capacity-limited location) is solved by large-neighbourhood
search: orders that contend for nothing are solved in independent blocks; orders linked by
a contested resource are solved together, whole components at once when they are small,
else neighbourhoods of the orders around one contested resource at a time, the rest held
fixed, until a full pass finds nothing or the time budget is spent. Each sub-solve is
CP-SAT hinted with the current plan, and a result replaces it only when strictly cheaper,
so the batch never costs more than what it started from.

Ship orders are re-brokered. A pickup or curbside order keeps its store (the customer
chose it) and its current sources; a queued one is routed alone with `route` after the
joint solve, on the stock left.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date

import msgspec
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

from engine.core.routing.cost import Pricing
from engine.core.routing.frame import Frame, assemble, frame
from engine.core.routing.model import SHIP, CostModel, Fulfillment, LineAllocation, Order, Site
from engine.core.routing.problem import Allocation, Source
from engine.core.routing.route import route

SCALE = 1_000_000
EPS = 1e-6
MAX_COMPONENT = 150  # linked orders solved whole, in one CP-SAT call
BLOCK = 200  # independent orders solved per CP-SAT call
NEIGHBOURS = 20  # orders per neighbourhood in a larger component
PER_RESOURCE = 6  # holders of one (location, SKU) taken into a neighbourhood
CONSOLIDATION_SITES = 3  # sites per order whose blockers join a neighbourhood
WORKERS = 2  # sub-solves at once


class Pending(msgspec.Struct, frozen=True):
    """An open order: `order.lines` are the units still to serve; `current` is what it holds
    now, location_id -> {line_id: units} (empty for a queued order). Locations in `exclude`
    are never used for it (a store rejected it)."""

    order: Order
    current: dict[str, dict[str, int]]
    exclude: frozenset[str] = frozenset()


class Change(msgspec.Struct, frozen=True):
    """One order's new plan. `group`: changes applied together (one frees what another takes)."""

    order_id: str
    group: int
    before: list[Fulfillment]
    after: list[Fulfillment]
    unallocated_before: list[LineAllocation]
    unallocated_after: list[LineAllocation]
    cost_before: float
    cost_after: float
    reason: str


class BatchResult(msgspec.Struct, frozen=True):
    """`changes`: only orders whose plan changed, in groups that each lower the total cost.
    Costs cover the re-brokered (ship) orders; `shipments_*` count their fulfillments and
    `extra_shipments_*` those beyond one per order. `status` is 'optimal' when every
    sub-solve proved optimality over whole components, else 'feasible'."""

    changes: list[Change]
    routed_alone: list[str]
    orders: int
    cost_before: float
    cost_after: float
    shipments_before: int
    shipments_after: int
    extra_shipments_before: int
    extra_shipments_after: int
    status: str
    subproblems: int
    passes: int
    solve_ms: float


# -- per-order data -------------------------------------------------------------------------


class _Order:
    """An order framed over the pool: its lines, the sources it may use, and prices."""

    __slots__ = ("_prices", "cost", "current", "f", "index", "pending", "sources")

    def __init__(self, pending: Pending, pool_sites: list[Site], costs: CostModel, today: date) -> None:
        self.pending = pending
        self.f: Frame = frame(pending.order, pool_sites, costs, today, pending.exclude)
        problem = self.f.problem
        lines = problem.lines if problem is not None else []
        self.index = {line.line_id: j for j, line in enumerate(lines)}
        self.current: Allocation = {
            loc: {self.index[line_id]: n for line_id, n in units.items() if n > 0 and line_id in self.index}
            for loc, units in pending.current.items()
        }
        self.current = {loc: units for loc, units in self.current.items() if units}
        if problem is None:
            self.sources: list[Source] = []
        else:
            keep = {src.site.location_id for src in self.f.candidates} | set(self.current)
            self.sources = [src for src in problem.sources if src.site.location_id in keep]
        self.cost = self.price(self.current)
        self._prices: list[tuple[float, list[float]]] | None = None

    @property
    def order_id(self) -> str:
        return self.pending.order.order_id

    @property
    def prices(self) -> list[tuple[float, list[float]]]:
        """Per source (as in `sources`): what opening it costs (package and penalties), and
        per line what a unit from it costs less the unfilled penalty it saves. Fixed for
        the batch (pool sites carry no capacity), so worked out once, not per sub-solve."""
        if self._prices is None:
            pricing = self.f.pricing
            lines = self.f.problem.lines if self.f.problem is not None else []
            unfilled = [pricing.unfilled(line.line_id) for line in lines]
            self._prices = [
                (
                    sum(pricing.fixed(src.site, src.method, src.km)),
                    [
                        sum(pricing.per_unit(src.site, src.km, line)) - u
                        for line, u in zip(lines, unfilled, strict=True)
                    ],
                )
                for src in self.sources
            ]
        return self._prices

    def price(self, alloc: Allocation) -> float:
        return self.f.pricing.total(*assemble(self.f, alloc))

    def usage(self, alloc: Allocation) -> dict[tuple[str, str], int]:
        lines = self.f.problem.lines if self.f.problem is not None else []
        out: dict[tuple[str, str], int] = {}
        for loc, units in alloc.items():
            for j, n in units.items():
                key = (loc, lines[j].sku)
                out[key] = out.get(key, 0) + n
        return out


def stock_pool(sites: list[Site], pending: Iterable[Pending], lines_by_order: dict[str, dict[str, str]]) -> list[Site]:
    """Sites with free stock plus what the batch's orders hold there; no capacity fields
    (capacity is a hard limit handled by the batch, not a price)."""
    held: dict[tuple[str, str], int] = {}
    for p in pending:
        skus = lines_by_order[p.order.order_id]
        for loc, units in p.current.items():
            for line_id, n in units.items():
                key = (loc, skus[line_id])
                held[key] = held.get(key, 0) + n
    by_loc: dict[str, dict[str, int]] = {}
    for (loc, sku), n in held.items():
        by_loc.setdefault(loc, {})[sku] = n
    out = []
    for s in sites:
        extra = by_loc.get(s.location_id)
        stock = s.stock
        if extra:
            stock = dict(stock)
            for sku, n in extra.items():
                stock[sku] = stock.get(sku, 0) + n
        out.append(msgspec.structs.replace(s, stock=stock, daily_order_capacity=None, orders_today=0))
    return out


# -- the joint model ------------------------------------------------------------------------


class _Linear:
    """A linear model over integer columns: `solve_cp` for an integer optimum, `solve_lp` for
    the relaxation's bound. Columns are (lower, upper, cost); rows are (columns, coefs, lo, hi)."""

    def __init__(self) -> None:
        self.ub: list[int] = []
        self.cost: list[float] = []
        self.hint: list[int] = []
        self.rows: list[tuple[list[int], list[int], int, int]] = []
        self.constant = 0.0

    def col(self, ub: int, cost: float, hint: int) -> int:
        self.ub.append(ub)
        self.cost.append(cost)
        self.hint.append(hint)
        return len(self.ub) - 1

    def row(self, cols: list[int], coefs: list[int], lo: int, hi: int) -> None:
        self.rows.append((cols, coefs, lo, hi))

    def cp_model(self) -> cp_model.CpModel:
        """The CP-SAT model, hinted; its variables are the columns in order. Written into
        the model's proto directly: the same model as through `new_int_var` and
        `add_linear_constraint` in about a third of the Python time, which matters when a
        search builds hundreds of them on the cores the solves need."""
        model = cp_model.CpModel()
        proto = model.proto
        variables = proto.variables
        for ub in self.ub:
            variables.add().domain.extend((0, ub))
        proto.solution_hint.vars.extend(range(len(self.ub)))
        proto.solution_hint.values.extend(self.hint)
        constraints = proto.constraints
        for cols, coefs, lo, hi in self.rows:
            linear = constraints.add().linear
            linear.vars.extend(cols)
            linear.coeffs.extend(coefs)
            linear.domain.extend((lo, hi))
        scaled = [(i, c) for i, cost in enumerate(self.cost) if (c := round(cost * SCALE))]
        proto.objective.vars.extend(i for i, _ in scaled)
        proto.objective.coeffs.extend(c for _, c in scaled)
        return model

    def solve_lp(self, time_limit_s: float) -> float | None:
        solver = pywraplp.Solver.CreateSolver("GLOP")
        solver.SetTimeLimit(max(1, int(time_limit_s * 1000)))
        xs = [solver.NumVar(0.0, float(ub), "") for ub in self.ub]
        inf = solver.infinity()
        for cols, coefs, lo, hi in self.rows:
            ct = solver.RowConstraint(float(lo) if lo > -(2**62) else -inf, float(hi) if hi < 2**62 else inf, "")
            for c, a in zip(cols, coefs, strict=True):
                ct.SetCoefficient(xs[c], a)
        objective = solver.Objective()
        for x, c in zip(xs, self.cost, strict=True):
            objective.SetCoefficient(x, c)
        objective.SetMinimization()
        if solver.Solve() != pywraplp.Solver.OPTIMAL:
            return None
        return objective.Value() + self.constant


_NO_LIMIT = 2**62


def _solve_cp(model: cp_model.CpModel, time_limit_s: float, small: bool) -> tuple[list[int], bool] | None:
    """Column values and whether they are proven optimal; None if no solution in time. Runs
    without the GIL, so two can run at once. A `small` model skips presolve, probing and
    symmetry detection: on a neighbourhood they cost more than they save."""
    solver = cp_model.CpSolver()
    solver.parameters.linearization_level = 2
    solver.parameters.num_workers = 1
    if small:
        solver.parameters.cp_model_presolve = False
        solver.parameters.cp_model_probing_level = 0
        solver.parameters.symmetry_level = 0
    solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return list(solver.response_proto.solution), status == cp_model.OPTIMAL


class _Block:
    """The joint model of some orders, given what stock and capacity the others leave."""

    def __init__(
        self,
        orders: list[_Order],
        stock_left: dict[tuple[str, str], int],
        capacity_left: dict[str, int],
        hints: dict[str, Allocation],
    ) -> None:
        self.orders = orders
        self.lin = lin = _Linear()
        self.x: list[list[tuple[str, int, int]]] = []  # per order: (location_id, line index, column)
        by_resource: dict[tuple[str, str], list[int]] = {}
        by_site: dict[str, list[int]] = {}
        for o in orders:
            pricing, problem = o.f.pricing, o.f.problem
            hint = hints.get(o.order_id, {})
            lines = problem.lines if problem is not None else []
            unfilled = [pricing.unfilled(line.line_id) for line in lines]
            lin.constant += sum(u * line.quantity for u, line in zip(unfilled, lines, strict=True))
            xs: list[tuple[str, int, int]] = []
            opened: list[int] = []
            served: list[list[int]] = [[] for _ in lines]
            for src, (fixed, per_unit) in zip(o.sources, o.prices, strict=True):
                loc = src.site.location_id
                caps = [min(line.quantity, stock_left.get((loc, line.sku), 0)) for line in lines]
                if not any(c > 0 for c in caps):
                    continue
                given = hint.get(loc, {})
                y = lin.col(1, fixed, 1 if given else 0)
                opened.append(y)
                by_site.setdefault(loc, []).append(y)
                for j, (line, cap) in enumerate(zip(lines, caps, strict=True)):
                    if cap <= 0:
                        continue
                    v = lin.col(cap, per_unit[j], given.get(j, 0))
                    lin.row([v, y], [1, -cap], -_NO_LIMIT, 0)
                    xs.append((loc, j, v))
                    served[j].append(v)
                    by_resource.setdefault((loc, line.sku), []).append(v)
            if problem is not None and not problem.allow_partial:
                z = lin.col(1, 0.0, 1 if hint else 0)
                for line, vs in zip(lines, served, strict=True):
                    lin.row([*vs, z], [1] * len(vs) + [-line.quantity], 0, 0)
            else:
                for line, vs in zip(lines, served, strict=True):
                    if len(vs) > 1:
                        lin.row(vs, [1] * len(vs), 0, line.quantity)
            if problem is not None and not problem.allow_split and len(opened) > 1:
                lin.row(opened, [1] * len(opened), 0, 1)
            self.x.append(xs)
        for key, cols in by_resource.items():
            limit = stock_left.get(key, 0)
            if sum(lin.ub[c] for c in cols) > limit:
                lin.row(cols, [1] * len(cols), 0, limit)
        for loc, ys in by_site.items():
            limit = capacity_left.get(loc)
            if limit is not None and len(ys) > limit:
                lin.row(ys, [1] * len(ys), 0, limit)

    def allocations(self, values: list[int]) -> list[Allocation]:
        out = []
        for xs in self.x:
            alloc: Allocation = {}
            for loc, j, v in xs:
                if values[v] > 0:
                    alloc.setdefault(loc, {})[j] = values[v]
            out.append(alloc)
        return out


# -- the search -----------------------------------------------------------------------------


class _Search:
    """The plan being improved: each order's allocation and cost, with running totals of
    stock used per (location, SKU), orders per location, and who holds what.

    Sub-solves run two at a time (CP-SAT releases the GIL) over disjoint sets of orders; a
    result is kept only if strictly cheaper and still within the stock and capacity left when
    it comes back. A block proven not to improve is not solved again until one of its orders
    or resources changes."""

    def __init__(
        self,
        orders: list[_Order],
        pool: list[Site],
        capacity: dict[str, int | None],
        deadline: float,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.orders = orders
        self.alloc: dict[str, Allocation] = {o.order_id: o.current for o in orders}
        self.cost: dict[str, float] = {o.order_id: o.cost for o in orders}
        self.stock = {(s.location_id, sku): n for s in pool for sku, n in s.stock.items()}
        self.used: dict[tuple[str, str], int] = {}
        self.load: dict[str, int] = {}
        self.holders: dict[tuple, dict[str, _Order]] = {}
        self.capacity = capacity
        self.stamp = 0  # improvements kept so far
        self.changed: dict[tuple, int] = {}  # (loc, sku) or capacity (loc,): stamp of its last change
        self.revised: dict[str, int] = {}  # order id: stamp of its last change
        self.settled: dict[frozenset[str], int] = {}  # block: stamp when proven not to improve
        self.busy: set[str] = set()
        self.running: list[tuple[list[_Order], _Block, int, Future]] = []
        self.executor = executor
        for o in orders:
            self._account(o, +1)
        self.deadline = deadline
        self.subproblems = 0
        self.passes = 0
        self.proven = True

    def _account(self, o: _Order, sign: int) -> None:
        for key, n in o.usage(self.alloc[o.order_id]).items():
            self.used[key] = self.used.get(key, 0) + sign * n
            self.changed[key] = self.stamp
            self._hold(key, o, sign)
        for loc in self.alloc[o.order_id]:
            self.load[loc] = self.load.get(loc, 0) + sign
            if self.capacity.get(loc) is not None:
                self.changed[(loc,)] = self.stamp
                self._hold((loc,), o, sign)
        self.revised[o.order_id] = self.stamp

    def _hold(self, key: tuple, o: _Order, sign: int) -> None:
        if sign > 0:
            self.holders.setdefault(key, {})[o.order_id] = o
        else:
            self.holders[key].pop(o.order_id, None)

    def left_for(self, block: list[_Order]) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """Stock (at the resources `block` could use) and capacity left by every order
        outside `block`."""
        stock: dict[tuple[str, str], int] = {}
        locations: set[str] = set()
        for o in block:
            lines = o.f.problem.lines if o.f.problem is not None else []
            for src in o.sources:
                loc = src.site.location_id
                locations.add(loc)
                for line in lines:
                    key = (loc, line.sku)
                    if key not in stock:
                        stock[key] = self.stock.get(key, 0) - self.used.get(key, 0)
        load = {loc: self.load.get(loc, 0) for loc in locations}
        for o in block:
            for key, n in o.usage(self.alloc[o.order_id]).items():
                stock[key] += n
            for loc in self.alloc[o.order_id]:
                load[loc] -= 1
        capacity = {loc: cap - load[loc] for loc in locations if (cap := self.capacity.get(loc)) is not None}
        return stock, capacity

    def solve(self, blocks: Iterable[list[_Order]]) -> bool:
        """Solve each block (built lazily, once a solver is free) with the others fixed; True
        if any improved. Stops at the deadline."""
        improved = False
        for block in blocks:
            while len(self.running) >= WORKERS:
                improved |= self._finish_one()
            if time.perf_counter() >= self.deadline:
                self.proven = False
                break
            self._start(block)
        while self.running:
            improved |= self._finish_one()
        return improved

    def _finish_one(self) -> bool:
        wait([job[3] for job in self.running], return_when=FIRST_COMPLETED)
        job = next(job for job in self.running if job[3].done())
        self.running.remove(job)
        return self._finish(job)

    def _start(self, block: list[_Order]) -> None:
        if not block:
            return
        ids = frozenset(o.order_id for o in block)
        stock, capacity = self.left_for(block)
        settled = self.settled.get(ids)
        resources = itertools.chain(stock, ((loc,) for loc in capacity))
        if (
            settled is not None
            and all(self.revised.get(i, -1) <= settled for i in ids)
            and all(self.changed.get(key, -1) <= settled for key in resources)
        ):
            return
        self.subproblems += 1
        model = _Block(block, stock, capacity, self.alloc)
        limit = min(self.deadline - time.perf_counter(), 0.2 + 0.01 * len(block))
        future = self.executor.submit(_solve_cp, model.lin.cp_model(), max(0.01, limit), len(block) <= NEIGHBOURS)
        self.busy |= ids
        self.running.append((block, model, self.stamp, future))

    def _finish(self, job: tuple[list[_Order], _Block, int, Future]) -> bool:
        block, model, stamp, future = job
        solved = future.result()
        self.busy -= {o.order_id for o in block}
        if solved is None:
            self.proven = False
            return False
        values, optimal = solved
        self.proven &= optimal
        before = sum(self.cost[o.order_id] for o in block)
        candidate = model.allocations(values)
        costs = [o.price(a) for o, a in zip(block, candidate, strict=True)]
        if sum(costs) >= before - EPS:
            if optimal:
                self.settled[frozenset(o.order_id for o in block)] = stamp
            return False
        if not self._fits(block, candidate):
            return False
        self.stamp += 1
        for o, a, c in zip(block, candidate, costs, strict=True):
            self._account(o, -1)
            self.alloc[o.order_id] = a
            self.cost[o.order_id] = c
            self._account(o, +1)
        return True

    def _fits(self, block: list[_Order], candidate: list[Allocation]) -> bool:
        """Whether `candidate` still fits what the others leave (another result may have
        been kept while it was solved)."""
        stock, capacity = self.left_for(block)
        for o, a in zip(block, candidate, strict=True):
            for key, n in o.usage(a).items():
                stock[key] -= n
                if stock[key] < 0:
                    return False
            for loc in a:
                if loc in capacity:
                    capacity[loc] -= 1
                    if capacity[loc] < 0:
                        return False
        return True

    def neighbourhood(self, o: _Order) -> list[_Order]:
        """`o` and the orders in the way of shipping it from fewer places, breadth first: at
        each order's best consolidation sites (those stocking most of its SKUs, nearest
        first), the holders of the units it would lack there and, at a full capacity-limited
        site, the orders filling it; then the same for those holders. Split holders come
        first (they can give up a unit without a new package). At most NEIGHBOURS."""
        out = {o.order_id: o}
        frontier = [o]
        while frontier:
            nxt = []
            for p in frontier:
                for other in self._blockers(p):
                    if other.order_id not in out:
                        out[other.order_id] = other
                        nxt.append(other)
                        if len(out) >= NEIGHBOURS:
                            return list(out.values())
            frontier = nxt
        return list(out.values())

    def _blockers(self, o: _Order) -> list[_Order]:
        lines = o.f.problem.lines if o.f.problem is not None else []
        alloc = self.alloc[o.order_id]
        need: dict[str, int] = {}
        for line in lines:
            need[line.sku] = need.get(line.sku, 0) + line.quantity
        scored = []
        for src in o.sources:
            loc = src.site.location_id
            covered = sum(self.stock.get((loc, k), 0) >= n for k, n in need.items())
            scored.append((-covered, src.km, loc))
        scored.sort()
        best = scored[0][0] if scored else 0
        held = o.usage(alloc)
        out: list[_Order] = []
        for covered, _, loc in scored[:CONSOLIDATION_SITES]:
            if covered > best + 1:
                break
            keys = [
                key
                for k, n in sorted(need.items())
                if self.stock.get(key := (loc, k), 0) - self.used.get(key, 0) + held.get(key, 0) < n
            ]
            cap = self.capacity.get(loc)
            if cap is not None and loc not in alloc and self.load.get(loc, 0) >= cap:
                keys.append((loc,))
            for key in keys:
                holders = [h for i, h in self.holders.get(key, {}).items() if i != o.order_id and i not in self.busy]
                holders.sort(key=lambda h: (-len(self.alloc[h.order_id]), h.order_id))
                out.extend(holders[:PER_RESOURCE])
        return out

    def excess(self, o: _Order) -> tuple[int, int]:
        """How far `o` is from one full shipment: (extra shipments, unfilled units)."""
        alloc = self.alloc[o.order_id]
        wanted = sum(line.quantity for line in o.f.problem.lines) if o.f.problem is not None else 0
        given = sum(n for units in alloc.values() for n in units.values())
        return max(0, len(alloc) - 1), wanted - given


def _components(orders: list[_Order], stock: dict[tuple[str, str], int], capacity: dict[str, int | None]):
    """Orders linked by a contested resource: a (location, SKU) whose stock cannot cover
    every order that could draw on it, or a capacity-limited location more orders could use
    than it has room for."""
    demand: dict[tuple[str, str], int] = {}
    users: dict[tuple[str, str], list[int]] = {}
    site_users: dict[str, list[int]] = {}
    for i, o in enumerate(orders):
        lines = o.f.problem.lines if o.f.problem is not None else []
        for src in o.sources:
            loc = src.site.location_id
            site_users.setdefault(loc, []).append(i)
            for line in lines:
                key = (loc, line.sku)
                if stock.get(key, 0) > 0:
                    demand[key] = demand.get(key, 0) + line.quantity
                    users.setdefault(key, []).append(i)
    parent = list(range(len(orders)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    contested = [users[key] for key, n in demand.items() if n > stock.get(key, 0)]
    contested += [idx for loc, idx in site_users.items() if (cap := capacity.get(loc)) is not None and len(idx) > cap]
    for idx in contested:
        root = find(idx[0])
        for i in idx[1:]:
            parent[find(i)] = root
    groups: dict[int, list[int]] = {}
    for i in range(len(orders)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _search(search: _Search, orders: list[_Order]) -> None:
    """Independent orders in blocks, small linked components whole, then neighbourhoods in
    the large components, pass after pass, until one finds nothing or time is up."""
    groups = _components(orders, search.stock, search.capacity)
    singles = [orders[g[0]] for g in groups if len(g) == 1]
    linked = sorted((g for g in groups if len(g) > 1), key=len)
    small = [[orders[i] for i in g] for g in linked if len(g) <= MAX_COMPONENT]
    search.solve([singles[i : i + BLOCK] for i in range(0, len(singles), BLOCK)] + small)
    large = [orders[i] for g in linked if len(g) > MAX_COMPONENT for i in g]
    if large:
        search.proven = False
    while large and time.perf_counter() < search.deadline:
        search.passes += 1
        seeds = sorted((o for o in large if any(search.excess(o))), key=lambda o: (search.excess(o), o.order_id))
        blocks = (
            search.neighbourhood(o) for o in reversed(seeds) if o.order_id not in search.busy and any(search.excess(o))
        )
        if not search.solve(blocks):
            break


def rebroker(
    pending: list[Pending],
    sites: list[Site],
    costs: CostModel,
    *,
    today: date,
    time_limit_s: float = 30.0,
) -> BatchResult:
    """Re-solve `pending` jointly (see the module docstring). `sites` carry free stock;
    `orders_today` must count only orders outside the batch."""
    start = time.perf_counter()
    lines_by_order = {p.order.order_id: {line.line_id: line.sku for line in p.order.lines} for p in pending}
    ship = [p for p in pending if p.order.method == SHIP]
    pool = stock_pool(sites, ship, lines_by_order)
    capacity = {
        s.location_id: None if s.daily_order_capacity is None else s.daily_order_capacity - s.orders_today
        for s in sites
    }
    batch_costs = msgspec.structs.replace(costs, capacity_penalty=0.0)
    orders = [_Order(p, pool, batch_costs, today) for p in ship]
    # An order already at a full site may stay there: never force one out.
    current_load: dict[str, int] = {}
    for o in orders:
        for loc in o.current:
            current_load[loc] = current_load.get(loc, 0) + 1
    capacity = {loc: None if cap is None else max(cap, current_load.get(loc, 0)) for loc, cap in capacity.items()}
    with ThreadPoolExecutor(WORKERS) as executor:
        search = _Search(orders, pool, capacity, start + time_limit_s, executor)
        _search(search, orders)
    changes = _changes(orders, search, capacity)
    kept = {c.order_id for c in changes}
    final = {o.order_id: (search.alloc[o.order_id] if o.order_id in kept else o.current) for o in orders}

    routed_alone = _route_queued_pickups(pending, sites, orders, final, costs, today)
    before = [len(o.current) for o in orders]
    after = [len(final[o.order_id]) for o in orders]
    return BatchResult(
        changes=changes + routed_alone,
        routed_alone=[c.order_id for c in routed_alone],
        orders=len(orders),
        cost_before=round(sum(o.cost for o in orders), 2),
        cost_after=round(sum((search.cost[o.order_id] if o.order_id in kept else o.cost) for o in orders), 2),
        shipments_before=sum(before),
        shipments_after=sum(after),
        extra_shipments_before=sum(max(0, n - 1) for n in before),
        extra_shipments_after=sum(max(0, n - 1) for n in after),
        status="optimal" if search.proven else "feasible",
        subproblems=search.subproblems,
        passes=search.passes,
        solve_ms=round((time.perf_counter() - start) * 1000, 1),
    )


def _changes(orders: list[_Order], search: _Search, capacity: dict[str, int | None]) -> list[Change]:
    """Changed orders in groups that must move together, each group strictly cheaper."""
    changed = [o for o in orders if search.alloc[o.order_id] != o.current]
    parent = {o.order_id: o.order_id for o in changed}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    gives: dict[tuple, list[str]] = {}
    takes: dict[tuple, list[str]] = {}
    for o in changed:
        old, new = o.usage(o.current), o.usage(search.alloc[o.order_id])
        for key, n in old.items():
            if new.get(key, 0) < n:
                gives.setdefault(key, []).append(o.order_id)
        for key, n in new.items():
            if old.get(key, 0) < n:
                takes.setdefault(key, []).append(o.order_id)
        for loc in set(o.current) - set(search.alloc[o.order_id]):
            if capacity.get(loc) is not None:
                gives.setdefault((loc,), []).append(o.order_id)
        for loc in set(search.alloc[o.order_id]) - set(o.current):
            if capacity.get(loc) is not None:
                takes.setdefault((loc,), []).append(o.order_id)
    for key, givers in gives.items():
        for k in givers[1:] + takes.get(key, []):
            parent[find(k)] = find(givers[0])

    members: dict[str, list[_Order]] = {}
    for o in changed:
        members.setdefault(find(o.order_id), []).append(o)
    out: list[Change] = []
    for group, (_, group_orders) in enumerate(sorted(members.items())):
        delta = sum(search.cost[o.order_id] - o.cost for o in group_orders)
        if delta >= -EPS:
            continue
        others = {o.order_id for o in group_orders}
        for o in sorted(group_orders, key=lambda o: o.order_id):
            out.append(_change(o, search, group, others - {o.order_id}))
    return out


def _change(o: _Order, search: _Search, group: int, partners: set[str]) -> Change:
    before, unalloc_before = assemble(o.f, o.current)
    after, unalloc_after = assemble(o.f, search.alloc[o.order_id])
    cost_after = search.cost[o.order_id]
    old = ", ".join(f.location_id for f in before) or "nothing"
    new = ", ".join(f.location_id for f in after) or "nothing"
    delta = cost_after - o.cost
    if delta < 0:
        reason = f"from {old} to {new}: {len(before)} to {len(after)} shipments, saves {-delta:.2f}"
    else:
        reason = f"from {old} to {new}: costs {delta:.2f} more for this order"
    if partners:
        reason += f"; moved together with {', '.join(sorted(partners))}, which lowers their joint cost"
    return Change(
        order_id=o.order_id,
        group=group,
        before=before,
        after=after,
        unallocated_before=unalloc_before,
        unallocated_after=unalloc_after,
        cost_before=round(o.cost, 2),
        cost_after=round(cost_after, 2),
        reason=reason,
    )


def _route_queued_pickups(
    pending: list[Pending],
    sites: list[Site],
    orders: list[_Order],
    final: dict[str, Allocation],
    costs: CostModel,
    today: date,
) -> list[Change]:
    """Queued pickup and curbside orders, one at a time with `route`, on the stock the
    re-brokered orders leave."""
    queued = [p for p in pending if p.order.method != SHIP and not p.current]
    if not queued:
        return []
    taken: dict[tuple[str, str], int] = {}
    for o in orders:
        for key, n in o.usage(final[o.order_id]).items():
            taken[key] = taken.get(key, 0) + n
        for key, n in o.usage(o.current).items():
            taken[key] = taken.get(key, 0) - n
    stock = {s.location_id: dict(s.stock) for s in sites}
    for (loc, sku), n in taken.items():
        stock[loc][sku] = stock[loc].get(sku, 0) - n
    out = []
    for p in sorted(queued, key=lambda p: p.order.order_id):
        current = [msgspec.structs.replace(s, stock=stock[s.location_id]) for s in sites]
        plan = route(p.order, current, costs, today=today, exclude=p.exclude)
        for fl in plan.fulfillments:
            for a in fl.lines:
                stock[fl.location_id][a.sku] = stock[fl.location_id].get(a.sku, 0) - a.quantity
        pricing = Pricing(p.order, current, costs, today)
        unalloc = [LineAllocation(line.line_id, line.sku, line.quantity) for line in p.order.lines]
        cost_before = pricing.total([], unalloc)
        out.append(
            Change(
                order_id=p.order.order_id,
                group=-1,
                before=[],
                after=plan.fulfillments,
                unallocated_before=unalloc,
                unallocated_after=plan.unallocated,
                cost_before=round(cost_before, 2),
                cost_after=plan.total_cost,
                reason=f"queued {p.order.method} order routed alone to "
                + (", ".join(f.location_id for f in plan.fulfillments) or "nothing"),
            )
        )
    return out


def lower_bound(
    pending: list[Pending], sites: list[Site], costs: CostModel, *, today: date, time_limit_s: float = 30.0
) -> float | None:
    """The LP relaxation of the joint problem over the ship orders in `pending` (each over
    the sources it may use: its pruned candidates and where it holds stock now): no plan
    for them costs less. None if GLOP does not finish within `time_limit_s`."""
    lines_by_order = {p.order.order_id: {line.line_id: line.sku for line in p.order.lines} for p in pending}
    ship = [p for p in pending if p.order.method == SHIP]
    pool = stock_pool(sites, ship, lines_by_order)
    batch_costs = msgspec.structs.replace(costs, capacity_penalty=0.0)
    orders = [_Order(p, pool, batch_costs, today) for p in ship]
    stock = {(s.location_id, sku): n for s in pool for sku, n in s.stock.items()}
    capacity: dict[str, int] = {}
    load: dict[str, int] = {}
    for o in orders:
        for loc in o.current:
            load[loc] = load.get(loc, 0) + 1
    for s in sites:
        if s.daily_order_capacity is not None:
            capacity[s.location_id] = max(s.daily_order_capacity - s.orders_today, load.get(s.location_id, 0))
    block = _Block(orders, stock, capacity, {})
    return block.lin.solve_lp(time_limit_s)


def plan_run(
    pending: list[Pending],
    sites: list[Site],
    costs: CostModel,
    *,
    today: date,
    time_limit_s: float,
    bound_time_limit_s: float,
) -> tuple[BatchResult, float | None, float]:
    """`rebroker` and then `lower_bound` (None when it does not finish in time), and the
    bound's wall time in ms: what a routing run computes, in one call a worker process can run."""
    result = rebroker(pending, sites, costs, today=today, time_limit_s=time_limit_s)
    start = time.perf_counter()
    bound = lower_bound(pending, sites, costs, today=today, time_limit_s=bound_time_limit_s) if result.orders else 0.0
    return result, bound, round((time.perf_counter() - start) * 1000, 1)
