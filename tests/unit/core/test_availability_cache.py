"""The availability cache's rules (engine.core.availability), without a database."""

import gc
import math
import random

from engine.core.availability import Cache, Entry, Site, Sites
from engine.core.geo import haversine_km


def _entry(ship: int, until: float = math.inf) -> Entry:
    return Entry.sparse(ship, 3, [2], [ship], until)


def test_an_entry_is_kept_and_served_until_its_deadline():
    cache = Cache(10)
    assert cache.put(cache.token(), "A", _entry(5, until=10.0))
    assert cache.get("A", 9.9).ship == 5
    assert cache.get("A", 10.0) is None
    assert len(cache) == 0


def test_a_fill_that_began_before_a_touch_of_its_sku_is_refused():
    cache = Cache(10)
    token = cache.token()
    cache.touch(["A"])  # a change arrived while the fill was reading
    assert not cache.put(token, "A", _entry(5))
    assert cache.put(token, "B", _entry(6))  # another SKU's fill is unaffected
    assert cache.put(cache.token(), "A", _entry(7))  # a fill begun after the touch is kept
    assert cache.get("A", 0).ship == 7


def test_a_touch_drops_the_entry_and_a_flush_drops_everything_and_refuses_fills_under_way():
    cache = Cache(10)
    cache.put(cache.token(), "A", _entry(1))
    cache.put(cache.token(), "B", _entry(2))
    cache.touch(["A"])
    assert cache.get("A", 0) is None and cache.get("B", 0).ship == 2
    token = cache.token()
    cache.flush()
    assert cache.get("B", 0) is None
    assert not cache.put(token, "C", _entry(3))
    assert cache.put(cache.token(), "C", _entry(3))


def test_a_read_stays_unchanged_until_its_sku_is_touched_or_the_cache_flushed():
    cache = Cache(10)
    token = cache.token()
    assert cache.unchanged_since(token, "A") and cache.unchanged_since(token, "B")
    cache.touch(["A"])
    assert not cache.unchanged_since(token, "A")
    assert cache.unchanged_since(token, "B")
    assert cache.unchanged_since(cache.token(), "A")  # a read begun after the touch
    later = cache.token()
    cache.flush()
    assert not cache.unchanged_since(later, "B")


def test_the_least_recently_used_entry_goes_first():
    cache = Cache(2)
    cache.put(cache.token(), "A", _entry(1))
    cache.put(cache.token(), "B", _entry(2))
    cache.get("A", 0)
    cache.put(cache.token(), "C", _entry(3))
    assert cache.get("B", 0) is None
    assert cache.get("A", 0).ship == 1 and cache.get("C", 0).ship == 3


def test_forgetting_old_touches_refuses_every_fill_under_way():
    cache = Cache(1)
    token = cache.token()
    cache.touch(["A", "B", "C", "D", "E"])  # more than 4x max_skus touches remembered
    assert not cache.put(token, "Z", _entry(1))  # Z was never touched, but the record is gone
    assert cache.put(cache.token(), "Z", _entry(1))


def test_a_sparse_entry_puts_each_quantity_at_its_site():
    entry = Entry.sparse(9, 4, [1, 4], [3, 6], math.inf)
    assert list(entry.pickup) == [3, 0, 0, 6]


def test_near_sites_are_those_within_the_radius_nearest_first_up_to_the_limit():
    rng = random.Random(3)
    sites = Sites(
        [Site(f"S{i:03d}", rng.uniform(25, 49), rng.uniform(-124, -67), rng.random() < 0.5) for i in range(300)],
        signature=None,
    )
    for _ in range(200):
        lat, lon = rng.uniform(25, 49), rng.uniform(-124, -67)
        radius, limit = rng.choice([10.0, 100.0, 400.0]), rng.choice([1, 5, 20])
        expected = sorted(
            (round(haversine_km(lat, lon, s.lat, s.lon), 3), s.location_id)
            for s in sites.sites
            if haversine_km(lat, lon, s.lat, s.lon) <= radius
        )[:limit]
        got = [(d, sites.sites[i].location_id) for i, d in sites.near(lat, lon, radius, limit)]
        assert [x[1] for x in got] == [x[1] for x in expected]
        assert all(abs(a[0] - b[0]) < 1e-6 for a, b in zip(got, expected, strict=True))


def test_a_full_cache_adds_nothing_for_the_garbage_collector_to_walk():
    cache = Cache(1_000)
    for i in range(1_000):
        cache.put(cache.token(), f"SKU-{i}", _entry(i))
    assert len(cache) == 1_000
    gc.collect(0)  # a young collection untracks tuples that hold only untracked objects
    entry = cache.get("SKU-7", 0.0)
    assert not gc.is_tracked(entry) and not gc.is_tracked(entry.pickup)
    # Per SKU, its key, entry and pickup tuple are untracked (only the cache's dicts are walked).
    # (Counted here, not as the growth of gc.get_objects(): another thread of the test
    # process, a client's event loop say, may allocate meanwhile.)
    tracked = [x for sku, e in cache._entries.items() for x in (sku, e, e.pickup) if gc.is_tracked(x)]
    assert tracked == []
