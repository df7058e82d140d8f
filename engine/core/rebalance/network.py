"""One SKU's transfer problem: surplus sources, short sinks and the lanes worth keeping."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from engine.core.rebalance.model import Lane, Policy

SCALE = 1_000_000  # solver money is integer micro-units: exact to 1e-6 per unit and per transfer


class Network(msgspec.Struct, frozen=True):
    """Sources (surplus > 0) and sinks (shortfall > 0) that have at least one kept lane,
    and the kept lanes as arcs: arc i runs sources[tail[i]] -> sinks[head[i]] with
    capacity min(supply, demand), `unit` and `fixed` its lane's costs and `penalty` the
    stockout cost per unit, all in micro-units. Arcs are ordered by sink, then unit cost.
    """

    sources: list[str]
    supply: list[int]
    sinks: list[str]
    demand: list[int]
    tail: list[int]
    head: list[int]
    cap: list[int]
    unit: list[int]
    fixed: list[int]
    lanes: list[Lane]
    penalty: int


LaneIndex = dict[str, dict[str, tuple[float, int, int, Lane]]]
"""to_id -> from_id -> (unit_cost, unit cost in micro-units, fixed cost in micro-units, lane)."""


def micro(money: float) -> int:
    return round(money * SCALE)


def index_lanes(lanes: Iterable[tuple[tuple[str, str], Lane]], policy: Policy) -> LaneIndex:
    """`lanes` as (from_id, to_id), lane pairs, by destination, without lanes to the same
    location and lanes whose unit cost is not below the stockout cost (they never pay)."""
    penalty = micro(policy.stockout_cost_per_unit)
    index: LaneIndex = {}
    for (from_id, to_id), lane in lanes:
        unit = micro(lane.unit_cost)
        if from_id != to_id and unit < penalty:
            index.setdefault(to_id, {})[from_id] = (lane.unit_cost, unit, micro(lane.fixed_cost), lane)
    return index


def build(
    sources: list[tuple[str, int]], sinks: list[tuple[str, int]], index: LaneIndex, policy: Policy
) -> Network | None:
    """The network over `sources` (location_id, surplus) and `sinks` (location_id,
    shortfall), or None when no lane is worth keeping.

    A lane is dropped when it can never pay: its unit cost is not below the stockout cost
    (see `index_lanes`), or even at full capacity the stockout it avoids is not worth more
    than its fixed cost (some optimum never uses it). Of the rest, each sink keeps its
    `policy.max_sources_per_destination` cheapest by unit cost, ties by from_id: a bound
    on problem size that can miss a better plan through a dearer lane.
    """
    penalty = micro(policy.stockout_cost_per_unit)
    keep = policy.max_sources_per_destination
    kept: list[tuple[int, int, int, int, int, Lane]] = []  # source, sink, cap, unit, fixed, lane
    for d, (to_id, short) in enumerate(sinks):
        incoming = index.get(to_id)
        if not incoming:
            continue
        options = []
        for s, (from_id, spare) in enumerate(sources):
            entry = incoming.get(from_id)
            if entry is None:
                continue
            cap = spare if spare < short else short
            if entry[2] and (penalty - entry[1]) * cap <= entry[2]:
                continue
            options.append((entry[0], from_id, s, cap, entry))
        if len(options) > 1:
            options.sort()  # (unit_cost, from_id) is unique per sink: the sort never compares further
        kept.extend((s, d, cap, e[1], e[2], e[3]) for _, _, s, cap, e in options[:keep])
    if not kept:
        return None

    used_sources = sorted({arc[0] for arc in kept})
    used_sinks = sorted({arc[1] for arc in kept})
    source_at = {s: i for i, s in enumerate(used_sources)}
    sink_at = {d: i for i, d in enumerate(used_sinks)}
    return Network(
        sources=[sources[s][0] for s in used_sources],
        supply=[sources[s][1] for s in used_sources],
        sinks=[sinks[d][0] for d in used_sinks],
        demand=[sinks[d][1] for d in used_sinks],
        tail=[source_at[a[0]] for a in kept],
        head=[sink_at[a[1]] for a in kept],
        cap=[a[2] for a in kept],
        unit=[a[3] for a in kept],
        fixed=[a[4] for a in kept],
        lanes=[a[5] for a in kept],
        penalty=penalty,
    )


def objective(net: Network, flows: list[int]) -> int:
    """Transfer cost less stockout avoided, in micro-units: the quantity every solve minimises."""
    return sum((u - net.penalty) * q + (f if q > 0 else 0) for q, u, f in zip(flows, net.unit, net.fixed, strict=True))
