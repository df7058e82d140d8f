from engine.core.routing import Line, nearest_greedy, ranked_rules
from tests.unit.core.routing.network import COSTS, TODAY, order, site, store

SITES = [
    store("S1", 0.1, stock={"A": 1, "B": 0}),
    store("S2", 0.2, stock={"B": 2}),
    site("DC1", 2.0, stock={"A": 5, "B": 5, "C": 5}),
    site("DC2", 1.0, stock={"A": 5, "C": 5}),
]


def placed(plan) -> dict[str, str]:
    return {a.line_id: f.location_id for f in plan.fulfillments for a in f.lines}


def test_nearest_greedy_takes_each_line_from_the_nearest_site_with_enough():
    plan = nearest_greedy(order(Line("1", "A", 2), Line("2", "B", 1), Line("3", "C", 1)), SITES, COSTS, today=TODAY)
    assert placed(plan) == {"1": "DC2", "2": "S2", "3": "DC2"}
    assert plan.explanation.solver == "greedy"


def test_nearest_greedy_leaves_a_line_nobody_can_fill_whole_unallocated():
    plan = nearest_greedy(order(Line("1", "A", 9), Line("2", "B", 1), allow_partial=True), SITES, COSTS, today=TODAY)
    assert placed(plan) == {"2": "S2"} and plan.unallocated[0].line_id == "1"


def test_ranked_rules_prefers_the_nearest_single_site_that_fills_everything():
    plan = ranked_rules(order(Line("1", "A", 1), Line("2", "B", 1), Line("3", "C", 1)), SITES, COSTS, today=TODAY)
    assert placed(plan) == {"1": "DC1", "2": "DC1", "3": "DC1"}


def test_ranked_rules_then_covers_the_most_lines_per_package():
    sites = [*SITES, store("S3", 0.05, stock={"D": 1})]
    plan = ranked_rules(order(Line("1", "A", 1), Line("2", "C", 1), Line("3", "D", 1)), sites, COSTS, today=TODAY)
    assert placed(plan) == {"1": "DC2", "2": "DC2", "3": "S3"}
