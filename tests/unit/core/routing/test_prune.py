import msgspec

from engine.core.routing import Line, prune
from tests.unit.core.routing.network import COSTS, order, site, store


def ids(sites) -> list[str]:
    return [s.location_id for s in sites]


def test_prune_keeps_every_warehouse_and_caps_the_rest_nearest_first():
    stores = [store(f"S{i:02d}", 0.1 * i, stock={"A": 1}) for i in range(1, 30)]
    warehouses = [site(f"DC{i}", 20.0 + i, stock={"A": 100}) for i in range(3)]
    costs = msgspec.structs.replace(COSTS, max_candidates=6)
    kept = prune(order(Line("1", "A", 1)), stores + warehouses, costs)
    assert ids(kept) == ["S01", "S02", "S03", "DC0", "DC1", "DC2"]


def test_prune_keeps_the_nearest_sites_per_line_and_for_the_whole_order():
    near_a = [store(f"A{i}", 0.1 * i, stock={"A": 1}) for i in range(1, 8)]
    near_b = [store(f"B{i}", 0.1 * i, lat=0.01, stock={"B": 1}) for i in range(1, 8)]
    whole = [store(f"W{i}", 3.0 + i, stock={"A": 1, "B": 1}) for i in range(1, 8)]
    kept = set(ids(prune(order(Line("1", "A", 1), Line("2", "B", 1)), near_a + near_b + whole, COSTS)))
    assert {"A1", "A2", "A3", "A4", "A5"} <= kept and "A6" not in kept
    assert {"B1", "B2", "B3", "B4", "B5"} <= kept and "B6" not in kept
    assert {"W1", "W2", "W3", "W4", "W5"} <= kept and "W6" not in kept


def test_prune_keeps_the_nearest_site_able_to_fill_each_line_whole():
    small = [store(f"S{i}", 0.1 * i, stock={"A": 1}) for i in range(1, 9)]
    big = store("BIG", 5.0, stock={"A": 3})
    assert "BIG" in ids(prune(order(Line("1", "A", 3)), [*small, big], COSTS))


def test_prune_drops_sites_that_do_not_ship_or_stock_nothing_ordered():
    sites = [
        store("S1", 0.1, stock={"A": 1}, ships=False),
        site("DC1", 1.0, stock={"Z": 9}),
        site("DC2", 2.0, stock={"A": 1}),
    ]
    assert ids(prune(order(Line("1", "A", 1)), sites, COSTS)) == ["DC2"]
