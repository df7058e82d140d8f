"""Small hand-made and random networks for the routing tests."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta

from hypothesis import strategies as st

from engine.core.geo import EARTH_RADIUS_KM
from engine.core.routing import CostModel, Line, Order, Plan, Site

TODAY = date(2025, 3, 3)
# The default cost constants, with a time limit no loaded test machine can hit on these
# tiny instances: exactness checks must not turn into time-limit checks.
COSTS = CostModel(time_limit_s=10.0)
KM_PER_DEGREE = 2 * math.pi * EARTH_RADIUS_KM / 360  # along the equator


def site(
    location_id: str,
    lon: float = 0.0,
    *,
    lat: float = 0.0,
    kind: str = "warehouse",
    stock: dict[str, int] | None = None,
    ships: bool = True,
    pickup: bool = False,
    curbside: bool = False,
    pick: float | None = None,
    capacity: int | None = None,
    orders_today: int = 0,
) -> Site:
    return Site(location_id, kind, lat, lon, ships, pickup, curbside, pick, capacity, orders_today, stock or {})


def store(location_id: str, lon: float = 0.0, **kw) -> Site:
    kw = {"pickup": True, "curbside": True, "pick": 0.75, **kw}
    return site(location_id, lon, kind="store", **kw)


def order(*lines: Line, method: str = "ship", at: str | None = None, lon: float = 0.0, **kw) -> Order:
    return Order("O-1", 0.0, lon, method, at, list(lines), **kw)


def allocated(plan: Plan) -> Counter:
    """Units per (location_id, sku)."""
    out: Counter = Counter()
    for f in plan.fulfillments:
        for a in f.lines:
            out[f.location_id, a.sku] += a.quantity
    return out


def per_line(plan: Plan) -> tuple[Counter, Counter]:
    """(allocated, unallocated) units per line_id."""
    given: Counter = Counter()
    for f in plan.fulfillments:
        for a in f.lines:
            given[a.line_id] += a.quantity
    return given, Counter({a.line_id: a.quantity for a in plan.unallocated})


# -- random small networks -----------------------------------------------------------

SKUS = ("A", "B", "C")


@st.composite
def sites(draw, min_sites: int = 2, max_sites: int = 5, max_stock: int = 5) -> list[Site]:
    n = draw(st.integers(min_sites, max_sites))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(("warehouse", "store")))
        capacity = draw(st.none() | st.integers(1, 3))
        out.append(
            Site(
                f"L{i}",
                kind,
                draw(st.floats(25.0, 48.0)),
                draw(st.floats(-122.0, -70.0)),
                draw(st.booleans() | st.just(True)),
                draw(st.booleans()),
                draw(st.booleans()),
                draw(st.sampled_from((None, 0.3, 0.75, 0.9))),
                capacity,
                draw(st.integers(0, 3)) if capacity is not None else 0,
                {sku: draw(st.integers(0, max_stock)) for sku in SKUS},
            )
        )
    return out


@st.composite
def orders(draw, network: list[Site], methods=("ship",), max_lines: int = 3, max_quantity: int = 4) -> Order:
    n = draw(st.integers(1, max_lines))
    lines = [
        Line(
            f"{j + 1}",
            draw(st.sampled_from(SKUS)),
            draw(st.integers(1, max_quantity)),
            draw(st.sampled_from((0.0, 0.5, 4.0))),
        )
        for j in range(n)
    ]
    method = draw(st.sampled_from(methods))
    at = draw(st.sampled_from([s.location_id for s in network] + ["NOWHERE"])) if method != "ship" else None
    days = draw(st.none() | st.integers(0, 6))
    return Order(
        "O-1",
        draw(st.floats(25.0, 48.0)),
        draw(st.floats(-122.0, -70.0)),
        method,
        at,
        lines,
        draw(st.booleans()),
        draw(st.booleans()),
        None if days is None else TODAY + timedelta(days=days),
    )
