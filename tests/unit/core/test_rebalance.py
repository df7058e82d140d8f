"""Rebalancing rules, checked with the real solvers; exactness against brute force."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.geo import haversine_km
from engine.core.rebalance import (
    Basis,
    Lane,
    Need,
    Policy,
    SkuPlan,
    distance_lanes,
    explain,
    plan_sku,
    rebalance,
    shortfall,
    surplus,
    target,
)
from engine.errors import BadInput

POLICY = Policy(target_days_cover=10.0)  # at 1 unit/day every location wants 10 units
SKU = "SKU-1"
QUICK = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def need(loc: str, available: int, in_transit: int = 0, demand: float = 1.0, sku: str = SKU) -> Need:
    return Need(sku, loc, available, in_transit, demand)


def lanes(*specs: tuple[str, str, float, float]) -> dict[tuple[str, str], Lane]:
    return {(a, b): Lane(a, b, unit, fixed) for a, b, unit, fixed in specs}


def moves(plan: SkuPlan) -> dict[tuple[str, str], int]:
    return {(p.from_location_id, p.to_location_id): p.quantity for p in plan.proposals}


def value(plan: SkuPlan, table: dict[tuple[str, str], Lane], policy: Policy) -> float:
    """The objective: transfer cost less the stockout avoided, from unrounded lane costs."""
    total = 0.0
    for p in plan.proposals:
        lane = table[p.from_location_id, p.to_location_id]
        total += lane.unit_cost * p.quantity + lane.fixed_cost - policy.stockout_cost_per_unit * p.quantity
    return total


# --- cover ---------------------------------------------------------------------------


def test_target_is_days_of_cover_rounded_up():
    assert target(need("A", 0, demand=1.25), POLICY) == 13
    assert target(need("A", 0, demand=0.0), POLICY) == 0


def test_target_ignores_float_noise():
    demand = 62 / 30  # 62 sold over 30 days
    assert demand * 30 > 62
    assert target(need("A", 0, demand=demand), Policy(target_days_cover=30)) == 62


def test_surplus_is_what_is_on_hand_beyond_the_target_once_transit_arrives():
    assert surplus(need("A", 25), POLICY) == 15
    assert surplus(need("A", 25, in_transit=3), POLICY) == 18
    assert surplus(need("A", 4, in_transit=30), POLICY) == 4  # in-transit units cannot be sent on
    assert surplus(need("A", 8), POLICY) == 0


def test_shortfall_counts_in_transit_stock_toward_cover():
    assert shortfall(need("B", 2), POLICY) == 8
    assert shortfall(need("B", 2, in_transit=5), POLICY) == 3
    assert shortfall(need("B", 2, in_transit=9), POLICY) == 0


def test_negative_available_counts_as_zero():
    assert shortfall(need("B", -5), POLICY) == 10
    assert surplus(need("B", -5, in_transit=40), POLICY) == 0


# --- plan_sku ------------------------------------------------------------------------


def test_moves_the_smaller_of_surplus_and_shortfall():
    table = lanes(("A", "B", 1.0, 0.0))
    small_need = plan_sku(SKU, [need("A", 25), need("B", 6)], table, POLICY)  # surplus 15, shortfall 4
    assert moves(small_need) == {("A", "B"): 4}
    assert small_need.solver == "min-cost-flow" and small_need.status == "optimal"
    big_need = plan_sku(SKU, [need("A", 13), need("B", 0)], table, POLICY)  # surplus 3, shortfall 10
    assert moves(big_need) == {("A", "B"): 3}  # A keeps its own target of 10


def test_in_transit_stock_reduces_what_is_sent():
    table = lanes(("A", "B", 1.0, 0.0))
    plan = plan_sku(SKU, [need("A", 30), need("B", 2, in_transit=5)], table, POLICY)
    assert moves(plan) == {("A", "B"): 3}
    assert plan.proposals[0].stockout_units_avoided == 3


def test_proposal_reports_cost_and_reason():
    table = lanes(("A", "B", 0.333, 1.0))
    [p] = plan_sku(SKU, [need("A", 25), need("B", 4)], table, POLICY).proposals
    assert (p.sku, p.quantity, p.cost) == (SKU, 6, 3.0)  # 0.333 x 6 + 1 = 2.998
    assert p.basis == Basis(25, 0, 10, 15, 4, 0, 10, 6)
    assert explain(p.from_location_id, p.to_location_id, p.basis, POLICY.target_days_cover) == (
        "A has 15 over its target of 10 (available 25, in transit 0); "
        "B is 6 short of its target of 10 (available 4, in transit 0); target = 10 days of cover"
    )


def test_lane_dearer_than_the_stockout_moves_nothing():
    table = lanes(("A", "B", 10.5, 0.0))
    plan = plan_sku(SKU, [need("A", 30), need("B", 0)], table, POLICY)
    assert plan.proposals == [] and plan.solver == "none"


def test_lane_costing_exactly_the_stockout_moves_nothing():
    table = lanes(("A", "B", 10.0, 0.0))
    assert plan_sku(SKU, [need("A", 30), need("B", 0)], table, POLICY).proposals == []


def test_cheaper_source_is_used_first():
    table = lanes(("A", "B", 3.0, 0.0), ("C", "B", 1.0, 0.0))
    plan = plan_sku(SKU, [need("A", 20), need("B", 6), need("C", 20)], table, POLICY)
    assert moves(plan) == {("C", "B"): 4}


def test_dearer_source_tops_up_when_the_cheap_one_runs_out():
    table = lanes(("A", "B", 3.0, 0.0), ("C", "B", 1.0, 0.0))
    plan = plan_sku(SKU, [need("A", 20), need("B", 0), need("C", 13)], table, POLICY)
    assert moves(plan) == {("A", "B"): 7, ("C", "B"): 3}
    assert [p.from_location_id for p in plan.proposals] == ["A", "C"]


def test_surplus_goes_where_it_saves_most():
    table = lanes(("A", "B", 1.0, 0.0), ("A", "C", 2.0, 0.0), ("D", "B", 1.5, 0.0))
    plan = plan_sku(SKU, [need("A", 15), need("B", 5), need("C", 7), need("D", 12)], table, POLICY)
    # A is B's cheapest source, but D can serve only B: D sends its 2 there, A tops B up and gives C the rest.
    assert moves(plan) == {("A", "B"): 3, ("A", "C"): 2, ("D", "B"): 2}
    assert value(plan, table, POLICY) == pytest.approx(3 * 1.0 + 2 * 2.0 + 2 * 1.5 - 10 * 7)


def test_moving_less_can_save_more():
    table = lanes(("A", "X", 0.5, 0.0), ("A", "Y", 9.0, 0.0), ("B", "X", 9.0, 0.0))
    plan = plan_sku(SKU, [need("A", 11), need("B", 11), need("X", 9), need("Y", 9)], table, POLICY)
    # Moving the most (A->Y, B->X) saves 1 + 1; A->X alone saves 9.5: not max-flow-then-min-cost.
    assert moves(plan) == {("A", "X"): 1}


def test_fixed_cost_drops_a_small_transfer_and_keeps_a_large_one():
    table = lanes(("A", "B", 1.0, 30.0), ("A", "C", 1.0, 30.0))
    plan = plan_sku(SKU, [need("A", 40), need("B", 8), need("C", 2)], table, POLICY)
    # B: 2 units save 2 x 9 = 18 < 30; C: 8 units save 72 > 30.
    assert moves(plan) == {("A", "C"): 8}
    assert plan.solver == "cp-sat" and plan.status == "optimal"
    assert plan.proposals[0].cost == 38.0


def test_fixed_cost_can_make_a_dearer_lane_the_better_one():
    table = lanes(("A", "D", 1.0, 20.0), ("B", "D", 2.0, 0.0))
    plan = plan_sku(SKU, [need("A", 20), need("B", 20), need("D", 0)], table, POLICY)
    # A: 10 x 9 - 20 = 70 saved; B: 10 x 8 = 80 saved.
    assert moves(plan) == {("B", "D"): 10}
    assert plan.solver == "cp-sat" and plan.status == "optimal"


def test_each_destination_keeps_only_its_cheapest_lanes():
    table = lanes(("A", "B", 1.0, 0.0), ("C", "B", 2.0, 0.0), ("E", "B", 2.0, 0.0))
    needs = [need("A", 12), need("B", 0), need("C", 12), need("E", 12)]
    assert moves(plan_sku(SKU, needs, table, POLICY)) == {("A", "B"): 2, ("C", "B"): 2, ("E", "B"): 2}
    narrow = Policy(target_days_cover=10.0, max_sources_per_destination=2)  # ties broken by from_id: E is cut
    assert moves(plan_sku(SKU, needs, table, narrow)) == {("A", "B"): 2, ("C", "B"): 2}


def test_uses_only_the_lanes_given():
    table = lanes(("A", "B", 1.0, 0.0))
    plan = plan_sku(SKU, [need("A", 30), need("B", 0), need("C", 0), need("D", 40)], table, POLICY)
    assert moves(plan) == {("A", "B"): 10}


def test_shortfall_with_no_lane_in_is_trivial():
    plan = plan_sku(SKU, [need("A", 30), need("C", 0)], lanes(("C", "A", 1.0, 0.0)), POLICY)
    assert plan == SkuPlan(SKU, [], "none", "trivial")


def test_zero_demand_everywhere_is_trivial():
    needs = [need("A", 30, demand=0.0), need("B", 0, demand=0.0)]
    table = lanes(("A", "B", 1.0, 0.0))
    assert plan_sku(SKU, needs, table, POLICY) == SkuPlan(SKU, [], "none", "trivial")
    assert rebalance(needs, table, POLICY) == []


def test_negative_available_is_short_by_the_whole_target_only():
    plan = plan_sku(SKU, [need("A", 40), need("B", -5)], lanes(("A", "B", 1.0, 0.0)), POLICY)
    assert moves(plan) == {("A", "B"): 10}


def test_rejects_a_location_twice_or_another_sku():
    with pytest.raises(BadInput):
        plan_sku(SKU, [need("A", 30), need("A", 0)], {}, POLICY)
    with pytest.raises(BadInput):
        plan_sku(SKU, [need("A", 30), need("B", 0, sku="SKU-2")], {}, POLICY)


# --- rebalance -----------------------------------------------------------------------


def test_rebalance_plans_each_sku_with_surplus_and_shortfall_in_sku_order():
    table = lanes(("A", "B", 1.0, 0.0), ("B", "A", 1.0, 0.0))
    needs = [
        need("A", 30, sku="S-2"),
        need("B", 4, sku="S-2"),
        need("A", 3, sku="S-1"),
        need("B", 12, sku="S-1"),
        need("A", 10, sku="S-3"),  # on target everywhere
        need("B", 10, sku="S-3"),
        need("A", 30, sku="S-4"),  # surplus, no shortfall
        need("B", 10, sku="S-4"),
    ]
    plans = rebalance(needs, table, POLICY)
    assert [p.sku for p in plans] == ["S-1", "S-2"]
    assert moves(plans[0]) == {("B", "A"): 2} and moves(plans[1]) == {("A", "B"): 6}
    assert plans[0] == plan_sku("S-1", [n for n in needs if n.sku == "S-1"], table, POLICY)
    shuffled = needs[:]
    random.Random(3).shuffle(shuffled)
    assert rebalance(iter(shuffled), table, POLICY) == plans


def test_rebalance_is_deterministic_on_a_larger_network():
    rng = random.Random(11)
    locs = [(f"L{i:02d}", rng.uniform(30, 45), rng.uniform(-120, -75)) for i in range(30)]
    table = distance_lanes(locs, km_cost=0.002)
    needs = [
        need(loc, rng.randint(-3, 40), rng.randint(0, 3), rng.choice((0.0, 0.5, 1.0, 2.0)), sku=f"S-{k:02d}")
        for k in range(20)
        for loc, _, _ in locs
    ]
    first = rebalance(needs, table, POLICY)
    needs.reverse()
    assert rebalance(needs, table, POLICY) == first
    assert first and all(p.solver == "min-cost-flow" for p in first)


# --- lanes ---------------------------------------------------------------------------


def test_distance_lanes_cover_every_ordered_pair_priced_by_distance():
    locs = [("NYC", 40.71, -74.01), ("BOS", 42.36, -71.06), ("PHL", 39.95, -75.17)]
    table = distance_lanes(locs, unit_cost=0.2, km_cost=0.001, fixed_cost=5.0)
    assert len(table) == 6 and ("NYC", "NYC") not in table
    km = haversine_km(40.71, -74.01, 42.36, -71.06)
    assert table["NYC", "BOS"] == Lane("NYC", "BOS", pytest.approx(0.2 + 0.001 * km), 5.0)
    assert table["BOS", "NYC"].unit_cost == table["NYC", "BOS"].unit_cost


def test_distance_lanes_reject_a_location_twice():
    with pytest.raises(BadInput):
        distance_lanes([("A", 0.0, 0.0), ("A", 1.0, 1.0)])


# --- exactness against brute force ---------------------------------------------------


@st.composite
def instances(draw, *, fixed: bool):
    supply = {f"S{i}": draw(st.integers(1, 3)) for i in range(draw(st.integers(1, 2)))}
    demand = {f"D{j}": draw(st.integers(1, 3)) for j in range(draw(st.integers(1, 3)))}
    table = {}
    for a, b in itertools.product(supply, demand):
        if draw(st.integers(0, 3)):
            unit = draw(st.sampled_from((0.25, 1.0, 2.5, 4.0, 9.0, 12.0)))
            fee = draw(st.sampled_from((0.0, 1.0, 3.5, 8.0, 20.0))) if fixed else 0.0
            table[a, b] = Lane(a, b, unit, fee)
    return supply, demand, table


def brute_force(supply: dict[str, int], demand: dict[str, int], table: dict, policy: Policy) -> float:
    arcs = list(table.items())
    best = 0.0
    for qs in itertools.product(*(range(min(supply[a], demand[b]) + 1) for (a, b), _ in arcs)):
        sent = dict.fromkeys(supply, 0)
        got = dict.fromkeys(demand, 0)
        total = 0.0
        for ((a, b), lane), q in zip(arcs, qs, strict=True):
            sent[a] += q
            got[b] += q
            if q:
                total += lane.unit_cost * q + lane.fixed_cost - policy.stockout_cost_per_unit * q
        if all(sent[a] <= supply[a] for a in supply) and all(got[b] <= demand[b] for b in demand):
            best = min(best, total)
    return best


def positions(supply: dict[str, int], demand: dict[str, int]) -> list[Need]:
    return [need(a, 10 + n) for a, n in supply.items()] + [need(b, 10 - n) for b, n in demand.items()]


def check_feasible(plan: SkuPlan, supply: dict[str, int], demand: dict[str, int]) -> None:
    for a, n in supply.items():
        assert sum(p.quantity for p in plan.proposals if p.from_location_id == a) <= n
    for b, n in demand.items():
        assert sum(p.quantity for p in plan.proposals if p.to_location_id == b) <= n
    assert all(p.quantity > 0 for p in plan.proposals)


@QUICK
@given(instances(fixed=False))
def test_min_cost_flow_matches_brute_force(instance):
    supply, demand, table = instance
    plan = plan_sku(SKU, positions(supply, demand), table, POLICY)
    check_feasible(plan, supply, demand)
    assert plan.solver in ("min-cost-flow", "none")
    assert value(plan, table, POLICY) == pytest.approx(brute_force(supply, demand, table, POLICY), abs=1e-6)


@QUICK
@given(instances(fixed=True))
def test_cp_sat_matches_brute_force(instance):
    supply, demand, table = instance
    plan = plan_sku(SKU, positions(supply, demand), table, POLICY)
    check_feasible(plan, supply, demand)
    assert plan.status in ("optimal", "trivial")
    assert value(plan, table, POLICY) == pytest.approx(brute_force(supply, demand, table, POLICY), abs=1e-6)
