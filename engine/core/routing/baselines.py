"""Baseline routers to compare against, scored with the same `plan_cost`.

Both treat pickup and curbside orders as the router does (the chosen store's own stock
first, by rule) and differ only in how they pick the remaining sources. Neither splits
a line, and neither looks at costs or capacity.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

from engine.core.routing import greedy
from engine.core.routing.explain import explained_plan, with_used
from engine.core.routing.frame import assemble, frame
from engine.core.routing.model import CostModel, Order, Plan, Site
from engine.core.routing.problem import Allocation, Problem


def nearest_greedy(order: Order, sites: list[Site], costs: CostModel, *, today: date) -> Plan:
    """Each line whole from the nearest shipping site with enough stock, else unallocated.

    One package only (allow_split=False): the nearest site that fills every line.
    """
    return _baseline(order, sites, costs, today, greedy.nearest)


def ranked_rules(order: Order, sites: list[Site], costs: CostModel, *, today: date) -> Plan:
    """Minimize splits: the nearest single site that fills everything; else repeatedly the
    site covering the most remaining lines whole, ties to the nearer."""
    return _baseline(order, sites, costs, today, greedy.ranked)


def _baseline(
    order: Order, sites: list[Site], costs: CostModel, today: date, strategy: Callable[[Problem], Allocation]
) -> Plan:
    start = time.perf_counter()
    f = frame(order, sites, costs, today, frozenset())
    alloc = strategy(f.problem) if f.problem is not None else {}
    fulfillments, unallocated = assemble(f, alloc)
    ms = (time.perf_counter() - start) * 1000
    decided = f.problem is not None and bool(f.problem.sources)
    return explained_plan(
        f,
        fulfillments,
        unallocated,
        with_used(f, f.candidates, alloc),
        solver="greedy" if decided else "none",
        status="feasible" if decided else "trivial",
        solve_ms=ms,
    )
