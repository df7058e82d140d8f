"""Invariants over random small networks (hypothesis), and exactness against brute force."""

from __future__ import annotations

import itertools
import math
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.routing import (
    Cost,
    Fulfillment,
    LineAllocation,
    Order,
    Plan,
    Site,
    nearest_greedy,
    plan_cost,
    ranked_rules,
    route,
)
from engine.core.routing.cost import ship_method
from tests.unit.core.routing.network import COSTS, TODAY, allocated, orders, per_line, sites

QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def networks_and_orders(draw, methods=("ship", "pickup", "curbside")):
    network = draw(sites())
    o = draw(orders(network, methods=methods))
    exclude = draw(st.frozensets(st.sampled_from([s.location_id for s in network]), max_size=2))
    return network, o, exclude


def check_feasible(plan: Plan, o: Order, network: list[Site], exclude: frozenset[str] = frozenset()) -> None:
    by_id = {s.location_id: s for s in network}
    for (loc, sku), n in allocated(plan).items():
        assert n <= by_id[loc].stock.get(sku, 0), f"{loc} gives {n} of {sku}"
    given, missing = per_line(plan)
    for line in o.lines:
        assert given[line.line_id] + missing[line.line_id] == line.quantity
    assert all(n > 0 for n in given.values()) and all(a.quantity > 0 for a in plan.unallocated)
    assert not {f.location_id for f in plan.fulfillments} & exclude
    assert [f.location_id for f in plan.fulfillments] == sorted({f.location_id for f in plan.fulfillments})
    if not o.allow_split:
        assert len(plan.fulfillments) <= 1
    if not o.allow_partial:
        assert not plan.unallocated or not plan.fulfillments
    for f in plan.fulfillments:
        site = by_id[f.location_id]
        if o.method == "ship":
            assert site.ships and f.method == ship_method(site)
        elif f.location_id == o.pickup_location_id:
            assert f.method == o.method
        else:
            assert f.method == "transfer_then_pickup" and site.kind == "warehouse"
    assert plan.total_cost == round(plan_cost(o, plan.fulfillments, plan.unallocated, network, COSTS, today=TODAY), 2)


@QUICK
@given(networks_and_orders())
def test_a_plan_never_takes_more_than_available_and_accounts_for_every_unit(case):
    network, o, exclude = case
    check_feasible(route(o, network, COSTS, today=TODAY, exclude=exclude), o, network, exclude)


@QUICK
@given(networks_and_orders())
def test_the_router_is_never_costlier_than_nearest_greedy_or_ranked_rules(case):
    network, o, _ = case
    plan = route(o, network, COSTS, today=TODAY)
    mine = plan_cost(o, plan.fulfillments, plan.unallocated, network, COSTS, today=TODAY)
    for baseline in (nearest_greedy, ranked_rules):
        other = baseline(o, network, COSTS, today=TODAY)
        check_feasible(other, o, network)
        assert mine <= plan_cost(o, other.fulfillments, other.unallocated, network, COSTS, today=TODAY) + 1e-9
        assert plan.total_cost <= other.total_cost


def brute_force(o: Order, network: list[Site]) -> float:
    """The cheapest ship plan by enumerating every allocation, scored with plan_cost."""
    ship = [s for s in network if s.ships]
    choices = []
    for line in o.lines:
        caps = [range(min(line.quantity, s.stock.get(line.sku, 0)) + 1) for s in ship]
        choices.append([v for v in itertools.product(*caps) if sum(v) <= line.quantity])
    best = math.inf
    for combo in itertools.product(*choices):
        use: Counter = Counter()
        for line, v in zip(o.lines, combo, strict=True):
            for s, n in zip(ship, v, strict=True):
                use[s.location_id, line.sku] += n
        if any(n > s.stock.get(sku, 0) for s in ship for (loc, sku), n in use.items() if loc == s.location_id):
            continue
        opened = [i for i, s in enumerate(ship) if any(v[i] for v in combo)]
        if not o.allow_split and len(opened) > 1:
            continue
        full = [sum(v) == line.quantity for line, v in zip(o.lines, combo, strict=True)]
        if not o.allow_partial and any(full) != all(full):
            continue
        if not o.allow_partial and not all(full) and any(sum(v) for v in combo):
            continue
        fulfillments = [
            Fulfillment(
                ship[i].location_id,
                ship_method(ship[i]),
                [LineAllocation(line.line_id, line.sku, v[i]) for line, v in zip(o.lines, combo, strict=True) if v[i]],
                Cost(0, 0, 0, 0, 0),
                TODAY,
            )
            for i in opened
        ]
        unallocated = [
            LineAllocation(line.line_id, line.sku, line.quantity - sum(v))
            for line, v in zip(o.lines, combo, strict=True)
            if sum(v) < line.quantity
        ]
        best = min(best, plan_cost(o, fulfillments, unallocated, network, COSTS, today=TODAY))
    return best


@st.composite
def tiny_ship_cases(draw):
    network = draw(sites(max_stock=4))
    n_lines = draw(st.integers(1, 3))
    o = draw(orders(network, max_lines=n_lines, max_quantity={1: 4, 2: 3, 3: 2}[n_lines]))
    return network, o


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_ship_cases())
def test_the_router_finds_the_brute_force_optimum(case):
    network, o = case
    plan = route(o, network, COSTS, today=TODAY)
    cost = plan_cost(o, plan.fulfillments, plan.unallocated, network, COSTS, today=TODAY)
    assert abs(cost - brute_force(o, network)) < 1e-4
    check_feasible(plan, o, network)
