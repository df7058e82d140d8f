"""Exact transfers without fixed costs: a min-cost flow.

Nodes: each source with supply = its surplus, each sink with supply = -its shortfall, and
one balancing node with supply = total shortfall - total surplus. Arcs: the kept lanes
(capacity min(surplus, shortfall), cost unit cost), source -> balance (capacity surplus,
cost 0: stock that stays) and balance -> sink (capacity shortfall, cost the stockout cost:
demand left short). Every flow meets all supplies, and its cost is transfer cost +
stockout cost x (shortfall not moved), i.e. a constant plus the objective transfer cost -
stockout cost x units moved, so the cheapest flow is the best plan (not max-flow first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ortools.graph.python import min_cost_flow

from engine.core.rebalance.network import Network


def solve_flow(net: Network, cap: Sequence[int] | None = None) -> list[int]:
    """Optimal units on each arc, ignoring fixed costs; `cap` overrides arc capacities
    (0 closes an arc). Raises ValueError if the solver rejects the costs (overflow)."""
    i32, i64 = np.int32, np.int64
    n_src, n_snk, n_arcs = len(net.sources), len(net.sinks), len(net.tail)
    balance = n_src + n_snk
    supply, demand = np.asarray(net.supply, i64), np.asarray(net.demand, i64)
    tails = np.concatenate((np.asarray(net.tail, i32), np.arange(n_src, dtype=i32), np.full(n_snk, balance, i32)))
    heads = np.concatenate(
        (np.asarray(net.head, i32) + n_src, np.full(n_src, balance, i32), np.arange(n_src, balance, dtype=i32))
    )
    caps = np.concatenate((np.asarray(net.cap if cap is None else cap, i64), supply, demand))
    costs = np.concatenate((np.asarray(net.unit, i64), np.zeros(n_src, i64), np.full(n_snk, net.penalty, i64)))

    smcf = min_cost_flow.SimpleMinCostFlow()
    smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    smcf.set_nodes_supplies(
        np.arange(balance + 1, dtype=i32), np.concatenate((supply, -demand, [demand.sum() - supply.sum()]))
    )
    status = smcf.solve()
    if status != smcf.OPTIMAL:
        raise ValueError(f"min-cost flow failed ({status!r}): costs or quantities out of range")
    return smcf.flows(np.arange(n_arcs, dtype=i32)).tolist()


def profitable_flow(net: Network) -> list[int]:
    """The min-cost flow ignoring fixed costs, then without every lane whose flow does not
    pay its fixed cost, re-solved until each used lane pays: a feasible plan with fixed
    costs, and the CP-SAT hint."""
    cap = list(net.cap)
    while True:
        flows = solve_flow(net, cap)
        dropped = False
        for i, (q, u, f) in enumerate(zip(flows, net.unit, net.fixed, strict=True)):
            if q > 0 and (net.penalty - u) * q <= f:
                cap[i] = 0
                dropped = True
        if not dropped:
            return flows
