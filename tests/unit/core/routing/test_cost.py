from datetime import timedelta

import msgspec
import pytest

from engine.core.routing import Cost, CostModel, Fulfillment, Line, LineAllocation, plan_cost, route
from tests.unit.core.routing.network import COSTS, KM_PER_DEGREE, TODAY, order, site, store

PACKAGE, PER_UNIT, PER_KM = 8.759, 0.423, 0.000336


def ship(location_id: str, *lines: tuple[str, str, int]) -> Fulfillment:
    """A fulfillment as a brute-force enumerator would build it: cost and eta unset."""
    allocations = [LineAllocation(line_id, sku, n) for line_id, sku, n in lines]
    return Fulfillment(location_id, "ship_from_warehouse", allocations, Cost(0, 0, 0, 0, 0), TODAY)


def test_demo_costs_are_package_plus_pick_plus_distance():
    dc = site("DC", 1.0, stock={"A": 5})  # one degree along the equator from the customer
    plan = route(order(Line("1", "A", 2)), [dc], COSTS, today=TODAY)
    expected = PACKAGE + 2 * PER_UNIT + 2 * PER_KM * KM_PER_DEGREE
    assert plan.total_cost == round(expected, 2) == 9.68
    [f] = plan.fulfillments
    assert f.cost == Cost(package=8.76, pick=0.85, distance=0.07, penalty=0.0, total=9.68)
    assert f.method == "ship_from_warehouse"
    assert f.eta == TODAY + timedelta(days=2)  # a handling day, then 111 km is one transit day


def test_site_pick_cost_replaces_the_default_unit_cost():
    dc = site("DC", 0.0, stock={"A": 5}, pick=0.30)
    o = order(Line("1", "A", 3))
    plan = route(o, [dc], COSTS, today=TODAY)
    assert plan.fulfillments[0].cost.pick == 0.9
    assert plan_cost(o, plan.fulfillments, [], [dc], COSTS, today=TODAY) == pytest.approx(PACKAGE + 0.9)


def test_distance_cost_scales_with_weight_above_the_reference():
    dc = site("DC", 1.0, stock={"A": 5})
    light = plan_cost(order(Line("1", "A", 1, 0.4)), [ship("DC", ("1", "A", 1))], [], [dc], COSTS, today=TODAY)
    heavy = plan_cost(order(Line("1", "A", 1, 4.0)), [ship("DC", ("1", "A", 1))], [], [dc], COSTS, today=TODAY)
    assert heavy - light == pytest.approx(3 * PER_KM * KM_PER_DEGREE)


def test_late_penalty_applies_per_day_after_promise_by():
    dc = site("DC", 1.0, stock={"A": 5})  # arrives TODAY + 2
    on_time = order(Line("1", "A", 1), promise_by=TODAY + timedelta(days=2))
    late = order(Line("1", "A", 1), promise_by=TODAY)
    cost_on_time = plan_cost(on_time, [ship("DC", ("1", "A", 1))], [], [dc], COSTS, today=TODAY)
    cost_late = plan_cost(late, [ship("DC", ("1", "A", 1))], [], [dc], COSTS, today=TODAY)
    assert cost_late - cost_on_time == pytest.approx(2 * 5.0)
    plan = route(late, [dc], COSTS, today=TODAY)
    assert plan.fulfillments[0].cost.penalty == 10.0
    assert "2 days late" in plan.explanation.considered[0]["reason"]


def test_default_unfilled_penalty_is_twice_a_lone_unit_from_the_worst_site():
    near = site("NEAR", 0.5, stock={"A": 1}, pick=0.30)
    far = store("FAR", 3.0, pick=0.90)
    o = order(Line("1", "A", 1))
    worst = PACKAGE + 0.90 + PER_KM * 3 * KM_PER_DEGREE
    assert plan_cost(o, [], [LineAllocation("1", "A", 1)], [near, far], COSTS, today=TODAY) == pytest.approx(2 * worst)
    fixed = msgspec.structs.replace(COSTS, unfilled_unit_penalty=50.0)
    assert plan_cost(o, [], [LineAllocation("1", "A", 2)], [near, far], fixed, today=TODAY) == 100.0


def test_capacity_penalty_grows_with_the_square_of_the_load():
    o = order(Line("1", "A", 1))
    quiet = site("DC", 0.0, stock={"A": 1}, capacity=10, orders_today=4)
    costs = msgspec.structs.replace(COSTS, unfilled_unit_penalty=30.0)
    cost = plan_cost(o, [ship("DC", ("1", "A", 1))], [], [quiet], costs, today=TODAY)
    assert cost == pytest.approx(PACKAGE + PER_UNIT + 20.0 * (5 / 10) ** 2)
    full = msgspec.structs.replace(quiet, orders_today=10)
    cost = plan_cost(o, [ship("DC", ("1", "A", 1))], [], [full], costs, today=TODAY)
    assert cost == pytest.approx(PACKAGE + PER_UNIT + 20.0 * (11 / 10) ** 2 + 30.0 / 2)


def test_plan_cost_rescores_a_plan_ignoring_its_stated_costs():
    dc = site("DC", 1.0, stock={"A": 5})
    o = order(Line("1", "A", 2))
    plan = route(o, [dc], COSTS, today=TODAY)
    assert plan_cost(o, [ship("DC", ("1", "A", 2))], [], [dc], COSTS, today=TODAY) == pytest.approx(9.6797, abs=1e-4)
    assert round(plan_cost(o, plan.fulfillments, plan.unallocated, [dc], COSTS, today=TODAY), 2) == plan.total_cost


def test_eta_by_site_kind_and_distance():
    costs = CostModel()
    o = order(Line("1", "A", 1))
    near_store = store("S", 0.0, stock={"A": 1})
    far_dc = site("DC", 20.0, stock={"A": 1})  # 2,224 km: three transit days
    assert route(o, [near_store], costs, today=TODAY).fulfillments[0].eta == TODAY
    assert route(o, [far_dc], costs, today=TODAY).fulfillments[0].eta == TODAY + timedelta(days=4)
