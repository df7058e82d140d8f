"""Exact per-order routing with CP-SAT.

Variables: x[s, l] units of line l from source s (0..min(quantity, stock)), y[s] source
s opens a package, z the order is served (all-or-nothing orders only). Minimizes
fixed cost x y + per-unit cost x x + unfilled penalty x (quantity - allocated), every
coefficient from `Pricing` scaled to micro-units and rounded, so the optimum is exact to
about 1e-6 per term. One solver per call, one worker: deterministic, and the service runs
many solves side by side.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from engine.core.routing.cost import Pricing
from engine.core.routing.problem import Allocation, Problem

SCALE = 1_000_000

_STATUS = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible"}


def _scaled(value: float) -> int:
    return round(value * SCALE)


def solve(problem: Problem, pricing: Pricing, *, hint: Allocation | None = None) -> tuple[Allocation, str] | None:
    """The cheapest allocation and 'optimal' or 'feasible' (time limit hit first), or
    None when the solver gives no solution within `CostModel.time_limit_s`."""
    model = cp_model.CpModel()
    lines = problem.lines
    hint = hint or {}
    objective: list[cp_model.LinearExprT] = []
    coefs: list[int] = []
    opened: list[cp_model.IntVar] = []
    served: list[list[cp_model.IntVar]] = [[] for _ in lines]
    x: dict[tuple[str, int], cp_model.IntVar] = {}
    unfilled = [_scaled(pricing.unfilled(line.line_id)) for line in lines]

    for i, src in enumerate(problem.sources):
        site = src.site
        caps = [min(line.quantity, site.stock.get(line.sku, 0)) for line in lines]
        if not any(c > 0 for c in caps):
            continue
        y = model.new_bool_var(f"y{i}")
        opened.append(y)
        package, penalty = pricing.fixed(site, src.method, src.km)
        objective.append(y)
        coefs.append(_scaled(package + penalty))
        given = hint.get(site.location_id, {})
        model.add_hint(y, bool(given))
        by_sku: dict[str, list[cp_model.IntVar]] = {}
        for j, (line, cap) in enumerate(zip(lines, caps, strict=True)):
            if cap <= 0:
                continue
            v = model.new_int_var(0, cap, f"x{i}_{j}")
            model.add(v <= cap * y)
            model.add_hint(v, given.get(j, 0))
            x[site.location_id, j] = v
            served[j].append(v)
            by_sku.setdefault(line.sku, []).append(v)
            objective.append(v)
            coefs.append(_scaled(sum(pricing.per_unit(site, src.km, line))) - unfilled[j])
        for sku, vs in by_sku.items():
            if len(vs) > 1:
                model.add(sum(vs) <= site.stock.get(sku, 0))

    if not problem.allow_partial:
        z = model.new_bool_var("z")
        model.add_hint(z, bool(hint))
        for line, vs in zip(lines, served, strict=True):
            model.add(sum(vs) == line.quantity * z)
    else:
        for line, vs in zip(lines, served, strict=True):
            if vs:
                model.add(sum(vs) <= line.quantity)
    if not problem.allow_split and opened:
        model.add(sum(opened) <= 1)
    constant = sum(u * line.quantity for u, line in zip(unfilled, lines, strict=True))
    model.minimize(cp_model.LinearExpr.weighted_sum(objective, coefs) + constant)

    solver = cp_model.CpSolver()
    solver.parameters.linearization_level = 2
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = pricing.costs.time_limit_s
    status = solver.solve(model)
    if status not in _STATUS:
        return None
    alloc: Allocation = {}
    for (loc, j), v in x.items():
        n = solver.value(v)
        if n > 0:
            alloc.setdefault(loc, {})[j] = n
    return alloc, _STATUS[status]
