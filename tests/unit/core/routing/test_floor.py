"""The shipment floor against brute force on tiny batches, and against re-brokering."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import msgspec
import pytest

from engine.core.routing import Line, Order, Site, route
from engine.core.routing.batch import Pending, rebroker
from engine.core.routing.floor import shipment_floor
from tests.unit.core.routing.network import COSTS, TODAY, site
from tests.unit.core.test_batch import instance

SKUS = ("A", "B", "C")


def ship(order_id: str, *lines: tuple[str, int], split: bool = True, partial: bool = True) -> Order:
    return Order(
        order_id,
        0.0,
        0.0,
        "ship",
        None,
        [Line(f"{j}", sku, n) for j, (sku, n) in enumerate(lines)],
        allow_split=split,
        allow_partial=partial,
    )


def pooled(pending: list[Pending], sites: list[Site]) -> dict[tuple[str, str], int]:
    """Free stock plus what the ship orders hold, by (location, SKU)."""
    out = Counter({(s.location_id, k): n for s in sites for k, n in s.stock.items()})
    for p in pending:
        skus = {line.line_id: line.sku for line in p.order.lines}
        for loc, units in p.current.items():
            for line_id, n in units.items():
                out[loc, skus[line_id]] += n
    return out


def plans_of(p: Pending, sites: list[Site], stock: dict[tuple[str, str], int]) -> list[tuple[int, int, Counter]]:
    """Every plan for one order: (extra shipments, units served, units per (location, SKU))."""
    usable = [s.location_id for s in sites if s.ships and s.location_id not in p.exclude]
    per_line = []
    for line in p.order.lines:
        options = []
        for counts in itertools.product(range(line.quantity + 1), repeat=len(usable)):
            if sum(counts) <= line.quantity and all(
                n <= stock.get((loc, line.sku), 0) for loc, n in zip(usable, counts, strict=True)
            ):
                options.append({loc: n for loc, n in zip(usable, counts, strict=True) if n})
        per_line.append(options)
    out = []
    for choice in itertools.product(*per_line):
        used: Counter = Counter()
        for line, units in zip(p.order.lines, choice, strict=True):
            for loc, n in units.items():
                used[loc, line.sku] += n
        opened = {loc for units in choice for loc in units}
        served = sum(used.values())
        if not p.order.allow_split and len(opened) > 1:
            continue
        if not p.order.allow_partial and 0 < served < sum(line.quantity for line in p.order.lines):
            continue
        out.append((max(0, len(opened) - 1), served, used))
    return out


def fewest_extra(pending: list[Pending], sites: list[Site]) -> int:
    """The fewest extra shipments over every joint plan within the pool that serves at
    least the units the orders hold now."""
    stock = pooled(pending, sites)
    target = sum(n for p in pending for units in p.current.values() for n in units.values())
    best = None
    for combo in itertools.product(*(plans_of(p, sites, stock) for p in pending)):
        if sum(served for _, served, _ in combo) < target:
            continue
        used = sum((u for _, _, u in combo), Counter())
        if any(n > stock[key] for key, n in used.items()):
            continue
        extra = sum(e for e, _, _ in combo)
        best = extra if best is None else min(best, extra)
    assert best is not None
    return best


def online(
    orders: list[Order], sites: list[Site], exclude: dict[str, frozenset[str]]
) -> tuple[list[Pending], list[Site]]:
    """Each order routed as it comes on the stock left: the batch, and the free stock."""
    stock = {s.location_id: dict(s.stock) for s in sites}
    pending = []
    for order in orders:
        live = [msgspec.structs.replace(s, stock=stock[s.location_id]) for s in sites]
        plan = route(order, live, COSTS, today=TODAY, exclude=exclude.get(order.order_id, frozenset()))
        current: dict[str, dict[str, int]] = {}
        for f in plan.fulfillments:
            for a in f.lines:
                current.setdefault(f.location_id, {})[a.line_id] = a.quantity
                stock[f.location_id][a.sku] -= a.quantity
        pending.append(Pending(order, current, exclude.get(order.order_id, frozenset())))
    return pending, [msgspec.structs.replace(s, stock=stock[s.location_id]) for s in sites]


def random_batch(seed: int) -> tuple[list[Pending], list[Site]]:
    """Three sites, three orders of one or two lines of one or two units, routed online;
    some orders may not split or not ship partly, some exclude a site."""
    rng = random.Random(seed)
    sites = [
        site(f"L{i}", rng.uniform(-3, 3), lat=rng.uniform(-3, 3), stock={k: rng.randint(0, 2) for k in SKUS})
        for i in range(3)
    ]
    orders = [
        ship(
            f"O-{i}",
            *((k, rng.randint(1, 2)) for k in rng.sample(SKUS, rng.randint(1, 2))),
            split=rng.random() < 0.8,
            partial=rng.random() < 0.8,
        )
        for i in range(3)
    ]
    exclude = {o.order_id: frozenset({rng.choice(sites).location_id}) for o in orders if rng.random() < 0.2}
    return online(orders, sites, exclude)


def test_an_order_no_site_can_fill_alone_needs_two_shipments() -> None:
    sites = [site("L1", stock={"A": 2}), site("L2", stock={"A": 2, "B": 1}), site("L3", stock={"B": 1})]
    pending, free = online([ship("O-1", ("A", 3), ("B", 1))], sites, {})
    floor = shipment_floor(pending, free)
    assert floor.extra_shipments == floor.per_order == 1
    assert floor.optimal


def test_orders_that_each_could_ship_whole_cannot_all_when_they_share_the_one_site() -> None:
    # Alone, each order ships whole from L1; L1 holds enough for one of them.
    sites = [site("L1", stock={"A": 1, "B": 1}), site("L2", stock={"A": 1}), site("L3", stock={"B": 1})]
    pending, free = online([ship("O-1", ("A", 1), ("B", 1)), ship("O-2", ("A", 1), ("B", 1))], sites, {})
    floor = shipment_floor(pending, free)
    assert floor.per_order == 0
    assert floor.extra_shipments == floor.joint_bound == 1
    assert floor.optimal


def test_the_one_unit_of_a_short_sku_forces_a_split_on_whichever_order_takes_it() -> None:
    # X is short (two ordered, one held) and only at L2; A only at L1, B only at L3.
    sites = [site("L1", stock={"A": 1}), site("L2", stock={"X": 1}), site("L3", stock={"B": 1})]
    pending, free = online([ship("O-1", ("A", 1), ("X", 1)), ship("O-2", ("B", 1), ("X", 1))], sites, {})
    assert shipment_floor(pending, free, time_limit_s=0).extra_shipments == 0
    floor = shipment_floor(pending, free, joint=False)
    assert floor.per_order == 0
    assert floor.extra_shipments == floor.short_bound == 1
    assert floor.joint_bound is None


def test_the_floor_only_binds_plans_that_serve_as_many_units() -> None:
    # The pool of the test above (L1: A, B; L2: A; L3: B), but the orders hold three units
    # between them: one may go without B.
    pending = [
        Pending(ship("O-1", ("A", 1), ("B", 1)), {"L1": {"0": 1, "1": 1}}),
        Pending(ship("O-2", ("A", 1), ("B", 1)), {"L2": {"0": 1}}),
    ]
    free = [site("L1"), site("L2"), site("L3", stock={"B": 1})]
    floor = shipment_floor(pending, free)
    assert floor.target == 3
    assert floor.extra_shipments == 0


def test_an_order_that_may_not_split_never_counts_extra_shipments() -> None:
    sites = [site("L1", stock={"A": 1}), site("L2", stock={"B": 1})]
    pending, free = online([ship("O-1", ("A", 1), ("B", 1), split=False)], sites, {})
    assert shipment_floor(pending, free).extra_shipments == 0


@pytest.mark.parametrize("seed", range(40))
def test_tiny_batches_the_joint_solve_proves_the_brute_force_minimum(seed: int) -> None:
    pending, sites = random_batch(seed)
    exact = fewest_extra(pending, sites)
    floor = shipment_floor(pending, sites, time_limit_s=10.0)
    assert floor.optimal
    assert floor.extra_shipments == exact
    assert floor.per_order <= exact
    assert floor.short_bound is None or floor.short_bound <= exact
    assert shipment_floor(pending, sites, time_limit_s=0).extra_shipments <= exact


def after_run(pending: list[Pending], sites: list[Site], changes) -> tuple[list[Pending], list[Site]]:
    """The batch once `changes` are applied, and the free stock it leaves."""
    plans = {p.order.order_id: p.current for p in pending}
    for c in changes:
        plans[c.order_id] = {f.location_id: {a.line_id: a.quantity for a in f.lines} for f in c.after}
    free = pooled(pending, sites)
    for p in pending:
        skus = {line.line_id: line.sku for line in p.order.lines}
        for loc, units in plans[p.order.order_id].items():
            for line_id, n in units.items():
                free[loc, skus[line_id]] -= n
    stocked = [
        msgspec.structs.replace(s, stock={k: n for (loc, k), n in free.items() if loc == s.location_id and n})
        for s in sites
    ]
    return [Pending(p.order, plans[p.order.order_id], p.exclude) for p in pending], stocked


@pytest.mark.parametrize(("seed", "n_orders", "max_stock"), [(seed, 8, 2) for seed in range(15)] + [(0, 240, 90)])
def test_never_above_the_extra_shipments_of_the_plans_rebroker_starts_from_and_returns(
    seed: int, n_orders: int, max_stock: int
) -> None:
    pending, sites = instance(seed, n_sites=4, n_orders=n_orders, max_lines=3, max_stock=max_stock)
    result = rebroker(pending, sites, COSTS, today=TODAY, time_limit_s=10.0)
    before = shipment_floor(pending, sites, time_limit_s=5.0)
    assert before.extra_shipments <= result.extra_shipments_before
    after, free = after_run(pending, sites, result.changes)
    floor = shipment_floor(after, free, time_limit_s=5.0)
    assert floor.extra_shipments <= result.extra_shipments_after
    if floor.best_found is not None:
        assert floor.best_found <= result.extra_shipments_after
