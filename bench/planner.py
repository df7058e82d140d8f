"""Planner runs: batch re-brokering against online routing and the hindsight LP bound.

    uv run --extra dev python -m bench.planner routing [--orders 2000] [--big 10000]

Orders arrive one at a time and are routed online by `route` against the stock left by
the orders before them (each plan takes its units). Then one batch run (`rebroker`)
re-solves every order jointly over the same stock. Reported, per family:

- extra shipments (fulfillments beyond one per order) online and after the run, and the
  share the run removes (goal >= 50%), next to those the stocking layout forces on orders
  served in full (`catalog_splits`, a reference, not a bound); "n/a" when online routing
  made none;
- cost online, after the run, and the LP lower bound of the joint problem over the same
  candidate sources (`lower_bound`), and the share of the online-to-bound gap the run
  captures (goal >= 50%); "n/a" when there is no gap;
- the run's wall time (`--time-limit` bounds the whole `rebroker` call, framing included),
  and separately one run over `--big` open orders per family (goal <= 60 s).

Family A (scarce): the 10 fulfillment centers, 100 SKUs each stocked at a center with
probability 0.5 and in quantities that cover about 1.25x the expected demand overall,
customers in the metros by population, 1-10 single-unit lines.
Family B (omnichannel): 5 warehouses and 200 shipping stores, 50,000 Zipf SKUs with
sparse store stock (the routing benchmark's family B, one shared stock for all orders).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import time

import msgspec

from bench.common import table
from bench.routing import COSTS, TODAY, _destinations, b_basket, b_places, b_sites
from engine.core.routing import Line, Order, Site, route
from engine.core.routing.batch import Pending, lower_bound, rebroker
from fixtures.generate import load_centers


def family_a(n_orders: int, seed: int, supply: float = 1.25) -> tuple[list[Order], list[Site]]:
    rng = random.Random(seed)
    skus = [f"SKU-{i:03d}" for i in range(1, 101)]
    centers = load_centers()
    stocked = {(c.facility, sku) for c in centers for sku in skus if rng.random() < 0.5}
    per_sku_demand = n_orders * 5.5 / len(skus)
    sites = []
    for c in centers:
        stock = {}
        for sku in skus:
            if (c.facility, sku) in stocked:
                holders = sum((x.facility, sku) in stocked for x in centers)
                stock[sku] = max(1, round(supply * per_sku_demand / holders * rng.uniform(0.5, 1.5)))
        sites.append(Site(f"FC-{c.facility}", "warehouse", c.lat, c.lon, True, False, False, None, None, 0, stock))
    orders = []
    for i, (lat, lon) in enumerate(_destinations(rng, n_orders, 0.0)):
        lines = [Line(f"{j + 1}", sku, 1) for j, sku in enumerate(rng.sample(skus, rng.randint(1, 10)))]
        orders.append(Order(f"A-{i:05d}", lat, lon, "ship", None, lines, allow_split=True, allow_partial=True))
    return orders, sites


def family_b(n_orders: int, seed: int, n_skus: int = 50_000) -> tuple[list[Order], list[Site]]:
    rng = random.Random(seed)
    places = b_places(rng)
    cum = list(itertools.accumulate(1 / r for r in range(1, n_skus + 1)))
    orders, ranks_used = [], set()
    for i, (lat, lon) in enumerate(_destinations(rng, n_orders, 0.2)):
        ranks, lines = b_basket(rng, cum, n_skus)
        ranks_used.update(ranks)
        orders.append(Order(f"B-{i:05d}", lat, lon, "ship", None, lines, allow_split=True, allow_partial=True))
    return orders, b_sites(places, sorted(ranks_used), n_skus)


def online(orders: list[Order], sites: list[Site]) -> tuple[list[Pending], list[Site], float]:
    """Route each order as it arrives against what is left; returns the open orders as a
    batch sees them, the sites with the stock left, and the routing wall time."""
    stock = {s.location_id: dict(s.stock) for s in sites}
    live = [msgspec.structs.replace(s, stock=stock[s.location_id]) for s in sites]
    pending = []
    t = time.perf_counter()
    for order in orders:
        plan = route(order, live, COSTS, today=TODAY)
        current: dict[str, dict[str, int]] = {}
        for f in plan.fulfillments:
            for a in f.lines:
                current.setdefault(f.location_id, {})[a.line_id] = a.quantity
                left = stock[f.location_id][a.sku] - a.quantity
                if left:
                    stock[f.location_id][a.sku] = left
                else:
                    del stock[f.location_id][a.sku]
        pending.append(Pending(order, current))
    return pending, live, time.perf_counter() - t


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _share(part: float, whole: float) -> str:
    return _pct(part / whole) if whole > 0 else "n/a"


def catalog_splits(orders: list[Order], sites: list[Site]) -> int:
    """Extra shipments the stocking layout alone forces on orders served in full: per order,
    the fewest shipping sites that together stock each of its SKUs at the start (three or
    more count as three), minus one. A reference, not a bound: where stock runs out, units
    go unfilled and a plan may ship less than this."""
    out = 0
    for order in orders:
        skus = {line.sku for line in order.lines}
        masks = {frozenset(k for k in skus if s.stock.get(k, 0) > 0) for s in sites if s.ships}
        reach = frozenset().union(*masks)
        if not reach or reach in masks:
            continue
        out += 1 if any(a | b == reach for a, b in itertools.combinations(masks, 2)) else 2
    return out


def rebrokering(name: str, orders: list[Order], sites: list[Site], time_limit_s: float, bound: bool) -> dict:
    pending, left, online_s = online(orders, sites)
    t = time.perf_counter()
    result = rebroker(pending, left, COSTS, today=TODAY, time_limit_s=time_limit_s)
    run_s = time.perf_counter() - t
    before, after = result.extra_shipments_before, result.extra_shipments_after
    row = {
        "family": name,
        "orders": len(orders),
        "extra ships online": before,
        "after run": after,
        "by catalog": catalog_splits(orders, sites),
        "removed": _share(before - after, before),
        "cost online": result.cost_before,
        "cost after": result.cost_after,
    }
    if bound:
        t = time.perf_counter()
        lp = lower_bound(pending, left, COSTS, today=TODAY, time_limit_s=300)
        row["LP bound"] = lp
        row["gap"] = "n/a" if lp is None else result.cost_before - lp
        row["gap captured"] = "n/a" if lp is None else _share(result.cost_before - result.cost_after, row["gap"])
        row["LP s"] = time.perf_counter() - t
    row.update({"changed": len(result.changes), "status": result.status, "run s": run_s, "online s": online_s})
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("routing")
    r.add_argument("--orders", type=int, default=2000)
    r.add_argument("--big", type=int, default=10_000)
    r.add_argument("--time-limit", type=float, default=45.0)
    r.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()

    if args.what == "routing":
        rows = [
            rebrokering("A scarce", *family_a(args.orders, args.seed), args.time_limit, True),
            rebrokering("B omnichannel", *family_b(args.orders, args.seed + 1), args.time_limit, True),
        ]
        print(f"\nRe-brokering: online routing, then one batch run ({os.cpu_count()} cores)")
        print(table(rows, list(rows[0])))
        rows = [
            rebrokering("A scarce", *family_a(args.big, args.seed + 2), args.time_limit, False),
            rebrokering("B omnichannel", *family_b(args.big, args.seed + 3), args.time_limit, False),
        ]
        print(f"\nOne run over {args.big} open orders (time limit {args.time_limit:.0f} s)")
        print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
