"""Transfers with fixed lane costs: a small MIP solved by CP-SAT.

q[i] units on arc i (0..capacity), open[i] for arcs with a fixed cost (q <= capacity x
open); each source sends at most its surplus, each sink takes at most its shortfall.
Minimises sum (unit - stockout) x q + fixed x open in integer micro-units. One solver
per call, one worker: deterministic when it finishes within the time limit.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from engine.core.rebalance.network import Network

_STATUS = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible"}


def solve_mip(net: Network, hint: list[int], time_limit_s: float) -> tuple[list[int], str] | None:
    """Units on each arc and 'optimal' or 'feasible', or None when CP-SAT finds no
    solution within `time_limit_s`."""
    model = cp_model.CpModel()
    terms: list[cp_model.IntVar] = []
    coefs: list[int] = []
    q: list[cp_model.IntVar] = []
    out: list[list[cp_model.IntVar]] = [[] for _ in net.sources]
    into: list[list[cp_model.IntVar]] = [[] for _ in net.sinks]
    for i, (cap, unit, fixed, given) in enumerate(zip(net.cap, net.unit, net.fixed, hint, strict=True)):
        v = model.new_int_var(0, cap, f"q{i}")
        model.add_hint(v, given)
        q.append(v)
        out[net.tail[i]].append(v)
        into[net.head[i]].append(v)
        terms.append(v)
        coefs.append(unit - net.penalty)
        if fixed > 0:
            y = model.new_bool_var(f"open{i}")
            model.add_hint(y, given > 0)
            model.add(v <= cap * y)
            terms.append(y)
            coefs.append(fixed)
    for vs, limit in (*zip(out, net.supply, strict=True), *zip(into, net.demand, strict=True)):
        if len(vs) > 1:
            model.add(sum(vs) <= limit)
    model.minimize(cp_model.LinearExpr.weighted_sum(terms, coefs))

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(model)
    if status not in _STATUS:
        return None
    return [solver.value(v) for v in q], _STATUS[status]
