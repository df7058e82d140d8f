"""Rules of the pure network generator (fixtures/generate.py)."""

from __future__ import annotations

from collections import Counter
from functools import cache

from engine.core.model import LocationKind
from fixtures.generate import Network, allocate_stores, demo_network, large_network, load_metros


@cache
def demo() -> Network:
    return demo_network()


@cache
def demo_positions() -> list[tuple[str, str, int, int | None]]:
    return list(demo().positions())


def stores(net: Network):
    return [loc for loc in net.locations if loc.kind is LocationKind.STORE]


def warehouses(net: Network):
    return [loc for loc in net.locations if loc.kind is LocationKind.WAREHOUSE]


def test_same_seed_gives_the_same_network():
    a, b = demo_network(seed=7), demo_network(seed=7)
    assert a.locations == b.locations
    assert a.items == b.items
    assert list(a.positions()) == list(b.positions())


def test_positions_are_re_callable_with_the_same_output():
    net = demo()
    assert list(net.positions()) == demo_positions()
    small = large_network(locations=20, skus=300)
    assert list(small.positions()) == list(small.positions())


def test_a_different_seed_gives_a_different_network():
    assert list(demo_network(seed=8).positions()) != demo_positions()


def test_location_ids_and_skus_are_unique():
    net = demo()
    ids = [loc.location_id for loc in net.locations]
    skus = [item.sku for item in net.items]
    assert len(ids) == len(set(ids))
    assert len(skus) == len(set(skus)) == 2000
    assert skus[0] == "SKU-00001" and skus[-1] == "SKU-02000"


def test_position_keys_are_unique_and_refer_to_known_ids():
    net = demo()
    keys = [(sku, loc) for sku, loc, _, _ in demo_positions()]
    assert len(keys) == len(set(keys))
    assert {sku for sku, _ in keys} <= {item.sku for item in net.items}
    assert {loc for _, loc in keys} <= {loc.location_id for loc in net.locations}


def test_demo_has_ten_warehouses_and_100_to_110_stores():
    net = demo()
    assert len(warehouses(net)) == 10
    assert 100 <= len(stores(net)) <= 110
    assert "DC-OAK4" in {loc.location_id for loc in warehouses(net)}


def test_every_metro_gets_a_store_and_the_largest_get_more():
    metros = load_metros()
    counts = allocate_stores(metros, len(stores(demo())))
    assert all(c >= 1 for c in counts)
    assert counts[0] == max(counts) > 1  # New York, the most populous
    assert sum(counts) == len(stores(demo()))


def test_warehouses_ship_without_pickup_and_without_capacity_limit():
    for wh in warehouses(demo()):
        assert wh.ships and not wh.pickup and not wh.curbside
        assert wh.daily_order_capacity is None
        assert wh.safety_stock == 0
        assert wh.name.startswith("Fulfillment center ")


def test_every_store_offers_pickup():
    assert all(s.pickup for s in stores(demo()))


def test_some_but_not_all_stores_offer_curbside():
    curbside = [s.curbside for s in stores(demo())]
    assert any(curbside) and not all(curbside)


def test_some_but_not_all_stores_ship():
    ships = [s.ships for s in stores(demo())]
    assert 0.4 < sum(ships) / len(ships) < 0.8


def test_store_pick_cost_is_dearer_than_any_warehouse():
    net = demo()
    assert min(s.pick_cost_per_unit for s in stores(net)) > max(w.pick_cost_per_unit for w in warehouses(net))


def test_store_attributes_are_in_range():
    for s in stores(demo()):
        assert s.daily_order_capacity is not None and 40 <= s.daily_order_capacity <= 200
        assert 0.60 <= s.pick_cost_per_unit <= 0.90
        assert s.safety_stock in (1, 2)
        assert s.postal_code is None
        assert s.timezone is not None and s.timezone.startswith("America/")


def test_bigger_metros_get_more_store_capacity():
    by_name = {s.name: s.daily_order_capacity for s in stores(demo())}
    assert by_name["New York #1"] > by_name["Port St. Lucie #1"]


def test_coordinates_are_in_range():
    for net in (demo(), large_network(locations=20, skus=50)):
        for loc in net.locations:
            assert 17.0 <= loc.lat <= 50.0  # Puerto Rico .. Seattle
            assert -125.0 <= loc.lon <= -65.0


def test_stores_sit_within_a_few_km_of_their_metro():
    metros = {m.city: m for m in load_metros()}
    for s in stores(demo()):
        metro = metros[s.name.rsplit(" #", 1)[0]]
        assert abs(s.lat - metro.lat) < 0.15 and abs(s.lon - metro.lon) < 0.2


def test_item_weights_are_between_100_g_and_15_kg():
    weights = [item.weight_kg for item in demo().items]
    assert all(0.1 <= w <= 15.0 for w in weights)
    assert len(set(weights)) > 1000


def test_demo_position_count_is_realistic_and_exact():
    assert 80_000 <= len(demo_positions()) <= 200_000
    assert demo().position_count_estimate == len(demo_positions())


def test_positions_are_ordered_by_sku_then_location():
    keys = [(sku, loc) for sku, loc, _, _ in demo_positions()]
    assert keys == sorted(keys)


def test_stocking_has_gaps():
    net = demo()
    pairs = {(sku, loc) for sku, loc, _, _ in demo_positions()}
    assert len(pairs) < len(net.items) * len(net.locations)
    store_ids = [s.location_id for s in stores(net)]
    assert any(("SKU-00001", loc) not in pairs or ("SKU-02000", loc) not in pairs for loc in store_ids)


def test_popular_skus_are_stocked_at_more_stores_than_tail_skus():
    store_ids = {s.location_id for s in stores(demo())}
    per_sku = Counter(sku for sku, loc, _, _ in demo_positions() if loc in store_ids)
    head = sum(per_sku[f"SKU-{i:05d}"] for i in range(1, 101))
    tail = sum(per_sku[f"SKU-{i:05d}"] for i in range(1901, 2001))
    assert head > 3 * tail


def test_warehouses_stock_most_skus_in_larger_quantities():
    net = demo()
    wh_ids = {w.location_id for w in warehouses(net)}
    wh_rows = [row for row in demo_positions() if row[1] in wh_ids]
    store_rows = [row for row in demo_positions() if row[1] not in wh_ids]
    assert len(wh_rows) > 0.8 * len(wh_ids) * len(net.items)
    assert all(20 <= q <= 2000 for _, _, q, _ in wh_rows)
    assert all(0 <= q <= 40 for _, _, q, _ in store_rows)
    assert sum(q for *_, q, _ in wh_rows) / len(wh_rows) > 5 * sum(q for *_, q, _ in store_rows) / len(store_rows)


def test_some_store_positions_are_zero_and_about_two_percent_override_safety_stock():
    wh_ids = {w.location_id for w in warehouses(demo())}
    store_rows = [row for row in demo_positions() if row[1] not in wh_ids]
    assert any(q == 0 for _, _, q, _ in store_rows)
    overrides = [ss for *_, ss in store_rows if ss is not None]
    assert 0.01 < len(overrides) / len(store_rows) < 0.03
    assert all(ss >= 0 for ss in overrides)


def test_large_network_has_a_position_for_every_pair_in_key_order():
    net = large_network(locations=20, skus=500)
    rows = list(net.positions())
    assert len(rows) == 20 * 500 == net.position_count_estimate
    keys = [(sku, loc) for sku, loc, _, _ in rows]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert {loc for _, loc in keys} == {loc.location_id for loc in net.locations}
    assert {sku for sku, _ in keys} == {item.sku for item in net.items}


def test_large_network_has_ten_warehouses_and_stores_for_the_rest():
    net = large_network(locations=20, skus=10)
    assert len(warehouses(net)) == 10 and len(stores(net)) == 10
    assert net.items[0].sku == "SKU-000001"
    assert len({loc.location_id for loc in net.locations}) == 20


def test_large_network_quantities_are_skewed_with_zeros_at_stores_for_the_tail():
    net = large_network(locations=30, skus=2000)
    store_ids = {s.location_id for s in stores(net)}
    rows = list(net.positions())
    assert all(q >= 0 for _, _, q, _ in rows)
    stocked = Counter(sku for sku, loc, q, _ in rows if loc in store_ids and q > 0)
    head = sum(stocked[f"SKU-{i:06d}"] for i in range(1, 101))
    tail = sum(stocked[f"SKU-{i:06d}"] for i in range(1901, 2001))
    assert head > 3 * tail
    assert any(q == 0 for _, loc, q, _ in rows if loc in store_ids)


def test_large_network_is_deterministic():
    a = list(large_network(seed=3, locations=15, skus=200).positions())
    b = list(large_network(seed=3, locations=15, skus=200).positions())
    assert a == b
