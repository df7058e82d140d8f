"""Routing quality and latency: `route` against `nearest_greedy` and `ranked_rules` on the
same orders and stock, every plan scored with the same `plan_cost`.

    uv run --extra dev python -m bench.routing [--orders 500] [--latency-orders 300]

Family A (the published multi-item experiments): the 10 fulfillment centers as
warehouses, customers in the 99 metros by population, 100 SKUs, 1-10 lines of one unit,
each SKU stocked (amply) at each center with probability 0.75 / 0.5 / 0.25.
Family B (omnichannel): 5 warehouses and 200 shipping stores in the metros, 50,000 SKUs
with Zipf demand and sparse store stock, ship orders of 1 + Poisson(1) lines.
Orders are routed one at a time against the same stock (per-order quality); partial
fills are allowed, so a unit nobody stocks shows in the fill rate and costs the unfilled
penalty. Latency: one route() call per 3-line order, pruning, baselines, model build and
solve included, at 50 / 200 / 1,000 sites before pruning.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import date

from bench.common import table
from engine.core.geo import haversine_km
from engine.core.routing import CostModel, Line, Order, Plan, Site, nearest_greedy, plan_cost, ranked_rules, route
from fixtures.generate import (
    KM_PER_DEG_LAT,
    WAREHOUSE_PICK_COST,
    allocate_stores,
    load_centers,
    load_metros,
    store_stock_probability,
)

TODAY = date(2025, 3, 3)
COSTS = CostModel()
POLICIES: dict[str, Callable[..., Plan]] = {
    "router": route,
    "nearest_greedy": nearest_greedy,
    "ranked_rules": ranked_rules,
}


def _u(*key: object) -> float:
    """A stable uniform [0, 1) per key (Python's str hash is salted per process)."""
    digest = hashlib.blake2b("|".join(map(str, key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _destinations(rng: random.Random, n: int, jitter: float) -> list[tuple[float, float]]:
    metros = load_metros()
    picks = rng.choices(metros, cum_weights=list(itertools.accumulate(m.population for m in metros)), k=n)
    return [(m.lat + rng.uniform(-jitter, jitter), m.lon + rng.uniform(-jitter, jitter)) for m in picks]


def _stores(rng: random.Random, n: int, prefix: str = "STORE") -> list[tuple[str, float, float, float]]:
    """(location_id, lat, lon, pick cost) for `n` stores spread over the metros by population."""
    out = []
    for metro, count in zip(load_metros(), allocate_stores(load_metros(), n), strict=True):
        for _ in range(count):
            km, angle = rng.uniform(0.5, 8.0), rng.uniform(0, 2 * math.pi)
            lat = metro.lat + km * math.sin(angle) / KM_PER_DEG_LAT
            lon = metro.lon + km * math.cos(angle) / (KM_PER_DEG_LAT * math.cos(math.radians(metro.lat)))
            out.append((f"{prefix}-{len(out) + 1:04d}", lat, lon, round(rng.uniform(0.60, 0.90), 2)))
    return out


# -- family A ------------------------------------------------------------------------------


def family_a(p_stock: float, n_orders: int, seed: int) -> list[tuple[Order, list[Site]]]:
    rng = random.Random(seed)
    skus = [f"SKU-{i:03d}" for i in range(1, 101)]
    sites = [
        Site(
            f"FC-{c.facility}",
            "warehouse",
            c.lat,
            c.lon,
            True,
            False,
            False,
            None,
            None,
            0,
            {sku: 1000 for sku in skus if rng.random() < p_stock},
        )
        for c in load_centers()
    ]
    orders = []
    for i, (lat, lon) in enumerate(_destinations(rng, n_orders, 0.0)):
        lines = [Line(f"{j + 1}", sku, 1) for j, sku in enumerate(rng.sample(skus, rng.randint(1, 10)))]
        orders.append((Order(f"A-{i}", lat, lon, "ship", None, lines, allow_split=True, allow_partial=True), sites))
    return orders


# -- family B ------------------------------------------------------------------------------


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def _sku_stock(location: str, is_warehouse: bool, rank: int, n_skus: int) -> int:
    u = _u("stock", location, rank)
    if is_warehouse:
        return 20 + int(480 * _u("qty", location, rank)) if u < 0.9 else 0
    if u >= store_stock_probability(rank, n_skus):
        return 0
    return 1 + int((3 + 37 * rank**-0.35) * _u("qty", location, rank))


def b_places(rng: random.Random) -> list[tuple[str, float, float, float, bool]]:
    """Family B's network: (location_id, lat, lon, pick cost, is warehouse)."""
    places = [(f"DC-{c.facility}", c.lat, c.lon, WAREHOUSE_PICK_COST, True) for c in load_centers()[:5]]
    return places + [(loc, lat, lon, pick, False) for loc, lat, lon, pick in _stores(rng, 200)]


def b_basket(rng: random.Random, cum: list[float], n_skus: int) -> tuple[list[int], list[Line]]:
    """1 + Poisson(1) distinct SKU ranks by Zipf popularity, as one-unit lines."""
    ranks: list[int] = []
    while len(ranks) < 1 + _poisson(rng, 1.0):
        r = rng.choices(range(1, n_skus + 1), cum_weights=cum)[0]
        if r not in ranks:
            ranks.append(r)
    lines = [
        Line(f"{j + 1}", f"SKU-{r:06d}", 1, round(min(15.0, math.exp(0.2 + _gauss(r))), 3)) for j, r in enumerate(ranks)
    ]
    return ranks, lines


def b_sites(places: list[tuple[str, float, float, float, bool]], ranks: list[int], n_skus: int) -> list[Site]:
    """Every family B location with its (stable) stock of the SKUs of `ranks`."""
    return [
        Site(
            loc,
            "warehouse" if wh else "store",
            plat,
            plon,
            True,
            not wh,
            False,
            pick,
            None,
            0,
            {f"SKU-{r:06d}": q for r in ranks if (q := _sku_stock(loc, wh, r, n_skus))},
        )
        for loc, plat, plon, pick, wh in places
    ]


def family_b(n_orders: int, seed: int, n_skus: int = 50_000, method: str = "ship") -> list[tuple[Order, list[Site]]]:
    """Omnichannel: ship orders, or (method "pickup") baskets picked up at the store nearest
    the shopper, served there when it has everything, else partly by warehouse transfer."""
    rng = random.Random(seed)
    places = b_places(rng)
    cum = list(itertools.accumulate(1 / r for r in range(1, n_skus + 1)))
    orders = []
    for i, (lat, lon) in enumerate(_destinations(rng, n_orders, 0.2)):
        ranks, lines = b_basket(rng, cum, n_skus)
        # Only the ordered SKUs matter to routing: each order sees the same stock for them.
        sites = b_sites(places, ranks, n_skus)
        store = None
        if method == "pickup":
            store = min((p for p in places if not p[4]), key=lambda p: haversine_km(lat, lon, p[1], p[2]))[0]
        orders.append((Order(f"B-{i}", lat, lon, method, store, lines, allow_split=True, allow_partial=True), sites))
    return orders


def _gauss(rank: int) -> float:
    """A stable standard normal per SKU (Box-Muller on two stable uniforms)."""
    u1, u2 = max(1e-12, _u("w1", rank)), _u("w2", rank)
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


# -- quality -------------------------------------------------------------------------------


def quality(name: str, cases: list[tuple[Order, list[Site]]]) -> list[dict]:
    costs: dict[str, list[float]] = {p: [] for p in POLICIES}
    packages = {p: 0 for p in POLICIES}
    splits = {p: 0 for p in POLICIES}
    filled = {p: 0 for p in POLICIES}
    optimal = 0
    requested = 0
    for order, sites in cases:
        requested += sum(line.quantity for line in order.lines)
        for policy, fn in POLICIES.items():
            plan = fn(order, sites, COSTS, today=TODAY)
            costs[policy].append(plan_cost(order, plan.fulfillments, plan.unallocated, sites, COSTS, today=TODAY))
            packages[policy] += len(plan.fulfillments)
            splits[policy] += len(plan.fulfillments) > 1
            filled[policy] += sum(a.quantity for f in plan.fulfillments for a in f.lines)
            if policy == "router":
                optimal += plan.explanation.status in ("optimal", "trivial")
    n = len(cases)
    rows = []
    for policy in POLICIES:
        row = {
            "run": name,
            "policy": policy,
            "cost/order": statistics.fmean(costs[policy]),
            "packages/order": packages[policy] / n,
            "split rate": _pct(splits[policy] / n),
            "unit fill": _pct(filled[policy] / requested),
        }
        if policy == "router":
            row["optimal"] = _pct(optimal / n)
        else:
            saving = [b - r for r, b in zip(costs["router"], costs[policy], strict=True)]
            row["router <= it"] = _pct(sum(s >= -1e-9 for s in saving) / n)
            row["router saves/order"] = statistics.fmean(saving)
            row["saving %"] = _pct(sum(saving) / sum(costs[policy]))
        rows.append(row)
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


QUALITY_COLUMNS = [
    "run",
    "policy",
    "cost/order",
    "packages/order",
    "split rate",
    "unit fill",
    "router <= it",
    "router saves/order",
    "saving %",
    "optimal",
]


# -- latency -------------------------------------------------------------------------------


def latency_cases(n_sites: int, n_orders: int, seed: int, n_skus: int = 2_000) -> list[tuple[Order, list[Site]]]:
    rng = random.Random(seed)
    places = [(f"DC-{c.facility}", c.lat, c.lon, WAREHOUSE_PICK_COST, True) for c in load_centers()]
    places += [(loc, lat, lon, pick, False) for loc, lat, lon, pick in _stores(rng, n_sites - len(places))]
    cum = list(itertools.accumulate(1 / r for r in range(1, n_skus + 1)))
    cases = []
    for i, (lat, lon) in enumerate(_destinations(rng, n_orders, 0.2)):
        ranks = set()
        while len(ranks) < 3:
            ranks.add(rng.choices(range(1, n_skus + 1), cum_weights=cum)[0])
        lines = [Line(f"{j + 1}", f"SKU-{r:05d}", rng.randint(1, 2)) for j, r in enumerate(sorted(ranks))]
        sites = [
            Site(
                loc,
                "warehouse" if wh else "store",
                plat,
                plon,
                True,
                not wh,
                False,
                pick,
                None if wh else 100,
                0 if wh else int(100 * _u("load", loc)),
                {f"SKU-{r:05d}": q for r in ranks if (q := _sku_stock(loc, wh, r, n_skus))},
            )
            for loc, plat, plon, pick, wh in places
        ]
        cases.append((Order(f"L-{i}", lat, lon, "ship", None, lines, allow_split=True, allow_partial=True), sites))
    return cases


def latency(n_sites: int, n_orders: int, seed: int) -> dict:
    cases = latency_cases(n_sites, n_orders + 20, seed)
    for order, sites in cases[:20]:  # warm-up
        route(order, sites, COSTS, today=TODAY)
    route_ms, greedy_ms, candidates, optimal = [], [], [], 0
    for order, sites in cases[20:]:
        t = time.perf_counter()
        plan = route(order, sites, COSTS, today=TODAY)
        route_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        nearest_greedy(order, sites, COSTS, today=TODAY)
        greedy_ms.append((time.perf_counter() - t) * 1000)
        candidates.append(plan.explanation.candidates)
        optimal += plan.explanation.status in ("optimal", "trivial")
    rq = statistics.quantiles(route_ms, n=100, method="inclusive")
    gq = statistics.quantiles(greedy_ms, n=100, method="inclusive")
    return {
        "sites": n_sites,
        "orders": n_orders,
        "candidates": statistics.fmean(candidates),
        "route p50 ms": rq[49],
        "route p99 ms": rq[98],
        "nearest_greedy p50 ms": gq[49],
        "optimal": _pct(optimal / n_orders),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=500)
    ap.add_argument("--latency-orders", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args()

    rows = []
    for i, p in enumerate((0.75, 0.5, 0.25)):
        rows += quality(f"A p={p}", family_a(p, args.orders, args.seed + i))
    print(f"\nFamily A: 10 fulfillment centers, 100 SKUs, 1-10 single-unit lines, {args.orders} orders per run")
    print(table(rows, QUALITY_COLUMNS))

    rows = quality("B ship", family_b(args.orders, args.seed + 10))
    rows += quality("B pickup", family_b(args.orders, args.seed + 11, method="pickup"))
    print(
        f"\nFamily B: 5 warehouses + 200 stores, 50,000 SKUs (Zipf), 1 + Poisson(1) lines, {args.orders} orders; "
        "pickup at the store nearest the shopper"
    )
    print(table(rows, QUALITY_COLUMNS))

    rows = [latency(n, args.latency_orders, args.seed + 20 + n) for n in (50, 200, 1000)]
    print(
        f"\nLatency: route() per 3-line order, model build included "
        f"(time limit {COSTS.time_limit_s * 1000:.0f} ms, 1 worker), {os.cpu_count()} cores"
    )
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
