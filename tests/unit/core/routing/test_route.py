import importlib
from datetime import timedelta

import msgspec
import pytest

from engine.core.routing import Line, nearest_greedy, quote, ranked_rules, route
from engine.errors import BadInput
from tests.unit.core.routing.network import COSTS, TODAY, allocated, order, per_line, site, store


def test_one_warehouse_with_everything_beats_two_nearby_stores():
    sites = [
        store("S1", 0.1, stock={"A": 5}),
        store("S2", 0.2, stock={"B": 5}),
        site("DC", 5.0, stock={"A": 9, "B": 9}, pick=0.30),
    ]
    o = order(Line("1", "A", 1), Line("2", "B", 1))
    plan = route(o, sites, COSTS, today=TODAY)
    assert [f.location_id for f in plan.fulfillments] == ["DC"]
    assert plan.total_cost < nearest_greedy(o, sites, COSTS, today=TODAY).total_cost
    assert plan.explanation.solver == "cp-sat" and plan.explanation.status == "optimal"
    reasons = {c["location_id"]: c for c in plan.explanation.considered}
    assert reasons["DC"]["used"] and reasons["DC"]["reason"].startswith("chosen: fills lines 1,2 at ")
    assert reasons["S1"]["reason"] == "not used: cannot replace a chosen package alone (lacks B)"


def test_explanation_says_by_how_much_an_unused_site_is_dearer():
    sites = [site("DC1", 1.0, stock={"A": 5}), site("DC2", 3.0, stock={"A": 5})]
    plan = route(order(Line("1", "A", 1)), sites, COSTS, today=TODAY)
    reasons = {c["location_id"]: c["reason"] for c in plan.explanation.considered}
    assert reasons["DC2"] == "not used: dearer than DC1 by 0.07"  # 222 km x 0.000336


def test_sites_stocking_none_of_the_order_are_not_candidates_and_gaps_are_named():
    sites = [
        site("DC1", 1.0, stock={"A": 5, "B": 5}),
        site("DC2", 0.5, stock={"Z": 5}),
        site("DC3", 0.2, stock={"A": 1}),
    ]
    plan = route(order(Line("1", "A", 1), Line("2", "B", 1)), sites, COSTS, today=TODAY)
    reasons = {c["location_id"]: c["reason"] for c in plan.explanation.considered}
    assert set(reasons) == {"DC1", "DC3"} and plan.explanation.candidates == 2
    assert reasons["DC3"] == "not used: cannot replace a chosen package alone (lacks B)"


def test_never_allocates_more_than_a_site_has_across_lines_of_the_same_sku():
    sites = [store("S1", 0.0, stock={"A": 3}), site("DC", 10.0, stock={"A": 10})]
    o = order(Line("1", "A", 2), Line("2", "A", 2))
    plan = route(o, sites, COSTS, today=TODAY)
    assert allocated(plan)["S1", "A"] <= 3
    given, missing = per_line(plan)
    assert given == {"1": 2, "2": 2} and not missing


def test_a_line_is_split_across_sites_only_when_allowed():
    sites = [site("DC1", 1.0, stock={"A": 2}), site("DC2", 2.0, stock={"A": 2})]
    split = route(order(Line("1", "A", 3)), sites, COSTS, today=TODAY)
    assert sorted(allocated(split).values()) == [1, 2]
    whole = route(order(Line("1", "A", 3), allow_split=False), sites, COSTS, today=TODAY)
    assert whole.fulfillments == [] and whole.unallocated[0].quantity == 3


def test_allow_split_false_gives_one_fulfillment():
    sites = [
        store("S1", 0.1, stock={"A": 5}),
        store("S2", 0.2, stock={"B": 5}),
        site("DC", 30.0, stock={"A": 9, "B": 9}),
    ]
    o = order(Line("1", "A", 1), Line("2", "B", 1), allow_split=False)
    plan = route(o, sites, COSTS, today=TODAY)
    assert [f.location_id for f in plan.fulfillments] == ["DC"]
    assert len(nearest_greedy(o, sites, COSTS, today=TODAY).fulfillments) == 1
    assert len(ranked_rules(o, sites, COSTS, today=TODAY).fulfillments) == 1


def test_allow_partial_false_is_all_or_nothing():
    sites = [site("DC", 1.0, stock={"A": 5, "B": 1})]
    o = order(Line("1", "A", 2), Line("2", "B", 2))
    plan = route(o, sites, COSTS, today=TODAY)
    assert plan.fulfillments == []
    assert {(a.line_id, a.quantity) for a in plan.unallocated} == {("1", 2), ("2", 2)}
    partial = route(msgspec.structs.replace(o, allow_partial=True), sites, COSTS, today=TODAY)
    given, missing = per_line(partial)
    assert given == {"1": 2, "2": 1} and missing == {"2": 1}


def test_an_excluded_location_is_never_used():
    sites = [site("DC1", 1.0, stock={"A": 5}), site("DC2", 9.0, stock={"A": 5})]
    plan = route(order(Line("1", "A", 1)), sites, COSTS, today=TODAY, exclude=frozenset({"DC1"}))
    assert [f.location_id for f in plan.fulfillments] == ["DC2"]
    reasons = {c["location_id"]: c["reason"] for c in plan.explanation.considered}
    assert reasons["DC1"] == "excluded: rejected for this order"


def test_a_capacity_full_site_is_avoided_when_an_alternative_exists():
    full = store("S1", 0.1, stock={"A": 5}, capacity=40, orders_today=40)
    sites = [full, site("DC", 10.0, stock={"A": 5})]
    plan = route(order(Line("1", "A", 1)), sites, COSTS, today=TODAY)
    assert [f.location_id for f in plan.fulfillments] == ["DC"]
    reasons = {c["location_id"]: c["reason"] for c in plan.explanation.considered}
    assert reasons["S1"] == "not used: at daily capacity (40/40 orders)"


def test_a_capacity_full_site_serves_what_nothing_else_can_with_the_penalty_shown():
    full = store("S1", 0.1, stock={"A": 5}, capacity=40, orders_today=40)
    sites = [full, site("DC", 10.0, stock={"B": 5})]
    for partial in (False, True):
        o = order(Line("1", "A", 1), allow_partial=partial)
        plan = route(o, sites, COSTS, today=TODAY)
        [f] = plan.fulfillments
        assert f.location_id == "S1" and f.cost.penalty > 20.0
        assert "over daily capacity (40/40 orders)" in plan.explanation.considered[0]["reason"]


def test_a_quieter_site_is_preferred_over_a_busy_one_at_equal_distance():
    busy = store("S1", 0.1, stock={"A": 5}, capacity=10, orders_today=9)
    quiet = store("S2", 0.1, lat=0.001, stock={"A": 5}, capacity=10, orders_today=1)
    plan = route(order(Line("1", "A", 1)), [busy, quiet], COSTS, today=TODAY)
    assert [f.location_id for f in plan.fulfillments] == ["S2"]


def test_fulfillments_are_ordered_by_location_id():
    sites = [site("DC-B", 1.0, stock={"A": 1}), site("DC-A", 2.0, stock={"B": 1})]
    plan = route(order(Line("1", "A", 1), Line("2", "B", 1)), sites, COSTS, today=TODAY)
    assert [f.location_id for f in plan.fulfillments] == ["DC-A", "DC-B"]


def test_falls_back_to_the_better_baseline_when_the_solver_gives_nothing(monkeypatch):
    monkeypatch.setattr(importlib.import_module("engine.core.routing.route"), "solve", lambda *args, **kw: None)
    sites = [store("S1", 0.1, stock={"A": 5}), site("DC", 2.0, stock={"A": 5, "B": 5})]
    o = order(Line("1", "A", 1), Line("2", "B", 1))
    plan = route(o, sites, COSTS, today=TODAY)
    assert (plan.explanation.solver, plan.explanation.status) == ("greedy", "fallback")
    assert plan.total_cost == min(
        nearest_greedy(o, sites, COSTS, today=TODAY).total_cost, ranked_rules(o, sites, COSTS, today=TODAY).total_cost
    )


def test_nothing_in_stock_anywhere_is_a_trivial_unallocated_plan():
    plan = route(order(Line("1", "A", 2)), [site("DC", 1.0, stock={"B": 1})], COSTS, today=TODAY)
    assert plan.fulfillments == [] and plan.unallocated[0].quantity == 2
    assert (plan.explanation.solver, plan.explanation.status) == ("none", "trivial")


def test_an_unknown_method_or_a_repeated_line_id_is_bad_input():
    with pytest.raises(BadInput):
        route(order(Line("1", "A", 1), method="drone"), [], COSTS, today=TODAY)
    with pytest.raises(BadInput):
        route(order(Line("1", "A", 1), Line("1", "B", 1)), [], COSTS, today=TODAY)


# -- pickup and curbside -------------------------------------------------------------


def test_pickup_at_a_store_that_has_everything_is_served_there():
    sites = [store("S1", 0.5, stock={"A": 2, "B": 1}), site("DC", 0.0, stock={"A": 9, "B": 9})]
    plan = route(order(Line("1", "A", 2), Line("2", "B", 1), method="pickup", at="S1"), sites, COSTS, today=TODAY)
    [f] = plan.fulfillments
    assert (f.location_id, f.method, f.eta, f.cost.distance) == ("S1", "pickup", TODAY, 0.0)
    assert (plan.explanation.solver, plan.explanation.status) == ("none", "trivial")


def test_curbside_only_where_offered():
    sites = [store("S1", 0.5, stock={"A": 2}, curbside=False), store("S2", 0.6, stock={"A": 2})]
    refused = route(order(Line("1", "A", 1), method="curbside", at="S1"), sites, COSTS, today=TODAY)
    assert refused.fulfillments == [] and refused.unallocated[0].quantity == 1
    assert refused.explanation.considered == [
        {"location_id": "S1", "used": False, "reason": "not used: does not offer curbside"}
    ]
    served = route(order(Line("1", "A", 1), method="curbside", at="S2"), sites, COSTS, today=TODAY)
    assert [(f.location_id, f.method) for f in served.fulfillments] == [("S2", "curbside")]


def test_a_missing_line_at_the_pickup_store_comes_by_transfer_with_a_later_eta():
    sites = [
        store("S1", 0.0, stock={"A": 2}),
        site("DC-NEAR", 1.0, stock={"B": 5}),
        site("DC-FAR", 9.0, stock={"B": 5}),
        store("S2", 0.1, stock={"B": 5}),  # stores do not transfer
    ]
    plan = route(order(Line("1", "A", 2), Line("2", "B", 1), method="pickup", at="S1"), sites, COSTS, today=TODAY)
    by_loc = {f.location_id: f for f in plan.fulfillments}
    assert set(by_loc) == {"S1", "DC-NEAR"}
    assert by_loc["S1"].method == "pickup" and by_loc["S1"].eta == TODAY
    transfer = by_loc["DC-NEAR"]
    assert transfer.method == "transfer_then_pickup"
    assert transfer.eta == TODAY + timedelta(days=1 + 2 + 1) > by_loc["S1"].eta
    assert transfer.cost.distance > 0


def test_a_short_line_at_the_pickup_store_is_topped_up_by_transfer_when_split_is_allowed():
    sites = [store("S1", 0.0, stock={"A": 1}), site("DC", 1.0, stock={"A": 5})]
    plan = route(order(Line("1", "A", 3), method="pickup", at="S1"), sites, COSTS, today=TODAY)
    assert allocated(plan) == {("S1", "A"): 1, ("DC", "A"): 2}


def test_without_split_a_pickup_comes_whole_from_one_warehouse_or_not_at_all():
    sites = [store("S1", 0.0, stock={"A": 2}), site("DC1", 1.0, stock={"B": 5}), site("DC2", 2.0, stock={"A": 5})]
    o = order(Line("1", "A", 2), Line("2", "B", 1), method="pickup", at="S1", allow_split=False)
    assert route(o, sites, COSTS, today=TODAY).fulfillments == []
    sites.append(site("DC3", 3.0, stock={"A": 5, "B": 5}))
    [f] = route(o, sites, COSTS, today=TODAY).fulfillments
    assert (f.location_id, f.method) == ("DC3", "transfer_then_pickup")


@pytest.mark.parametrize(
    ("at", "exclude", "reason"),
    [
        ("NOWHERE", frozenset(), "not used: unknown location"),
        ("S1", frozenset({"S1"}), "excluded: rejected for this order"),
        (None, frozenset(), "not used: no pickup location given"),
    ],
)
def test_an_unknown_or_excluded_pickup_store_leaves_everything_unallocated(at, exclude, reason):
    sites = [store("S1", 0.0, stock={"A": 2}), site("DC", 1.0, stock={"A": 5})]
    plan = route(order(Line("1", "A", 1), method="pickup", at=at), sites, COSTS, today=TODAY, exclude=exclude)
    assert plan.fulfillments == [] and plan.unallocated[0].quantity == 1
    assert plan.explanation.considered[0]["reason"] == reason


# -- quote -----------------------------------------------------------------------------


def test_quote_offers_ship_and_the_nearest_stores_with_everything():
    sites = [
        store("S1", 0.0, stock={"A": 1}, curbside=False),
        store("S2", 0.3, stock={"A": 1, "B": 1}, curbside=False),
        store("S3", 0.5, stock={"A": 1, "B": 1}),
        site("DC", 2.0, stock={"A": 5, "B": 5}),
    ]
    o = order(Line("1", "A", 1), Line("2", "B", 1), method="pickup", at="S1")
    plan, alternatives = quote(o, sites, COSTS, today=TODAY)
    assert {f.method for f in plan.fulfillments} == {"pickup", "transfer_then_pickup"}
    offered = [[(f.location_id, f.method) for f in alt.fulfillments] for alt in alternatives]
    assert offered[0] == [("DC", "ship_from_warehouse")]
    assert [("S2", "pickup")] in offered and [("S3", "curbside")] in offered
    assert all(not alt.unallocated for alt in alternatives)


def test_quote_skips_methods_that_cannot_serve_the_order():
    sites = [site("DC", 2.0, stock={"A": 5})]
    plan, alternatives = quote(order(Line("1", "A", 1)), sites, COSTS, today=TODAY)
    assert plan.fulfillments and alternatives == []
