"""One SKU's transfer problem: surplus sources, short sinks and the lanes worth keeping."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import numpy as np

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


class LaneIndex:
    """The usable lanes as matrices over the locations they join, built once per network:
    `cost[i, j]` the unit cost from location i to j (inf where there is no usable lane:
    none given, the same location, or a unit cost not below the stockout cost, which never
    pays), `unit` and `fixed` in micro-units, `lane` the Lane. Row and column n stand for
    every location no lane touches."""

    def __init__(self, lanes: Iterable[tuple[tuple[str, str], Lane]], policy: Policy) -> None:
        penalty = micro(policy.stockout_cost_per_unit)
        usable = []
        for (from_id, to_id), lane in lanes:
            unit = micro(lane.unit_cost)
            if from_id != to_id and unit < penalty:
                usable.append((from_id, to_id, lane, unit))
        ids = sorted({u[0] for u in usable} | {u[1] for u in usable})
        self.at = {loc: i for i, loc in enumerate(ids)}
        n = len(ids) + 1
        self.cost = np.full((n, n), np.inf)
        self.unit = np.zeros((n, n), np.int64)
        self.fixed = np.zeros((n, n), np.int64)
        self.lane = np.empty((n, n), object)
        for from_id, to_id, lane, unit in usable:
            i, j = self.at[from_id], self.at[to_id]
            self.cost[i, j], self.unit[i, j], self.fixed[i, j], self.lane[i, j] = (
                lane.unit_cost,
                unit,
                micro(lane.fixed_cost),
                lane,
            )
        self.outside = n - 1

    def rows(self, location_ids: list[str]) -> np.ndarray:
        return np.fromiter((self.at.get(loc, self.outside) for loc in location_ids), np.intp, len(location_ids))


def micro(money: float) -> int:
    return round(money * SCALE)


def index_lanes(lanes: Iterable[tuple[tuple[str, str], Lane]], policy: Policy) -> LaneIndex:
    return LaneIndex(lanes, policy)


def build(
    sources: list[tuple[str, int]], sinks: list[tuple[str, int]], index: LaneIndex, policy: Policy
) -> Network | None:
    """The network over `sources` (location_id, surplus) and `sinks` (location_id,
    shortfall), each in location_id order, or None when no lane is worth keeping.

    A lane is dropped when it can never pay: its unit cost is not below the stockout cost
    (see `LaneIndex`), or even at full capacity the stockout it avoids is not worth more
    than its fixed cost (some optimum never uses it). Of the rest, each sink keeps its
    `policy.max_sources_per_destination` cheapest by unit cost, ties by from_id: a bound
    on problem size that can miss a better plan through a dearer lane.
    """
    penalty = micro(policy.stockout_cost_per_unit)
    src, snk = index.rows([s[0] for s in sources]), index.rows([d[0] for d in sinks])
    spare = np.fromiter((s[1] for s in sources), np.int64, len(sources))
    short = np.fromiter((d[1] for d in sinks), np.int64, len(sinks))
    at = np.ix_(src, snk)
    cost, unit, fixed = index.cost[at], index.unit[at], index.fixed[at]
    cap = np.minimum.outer(spare, short)
    cost[(fixed > 0) & ((penalty - unit) * cap <= fixed)] = np.inf
    # Per sink (column), sources by unit cost; a stable sort keeps from_id order on ties.
    order = np.argsort(cost, axis=0, kind="stable")[: policy.max_sources_per_destination].T
    sink_of = np.broadcast_to(np.arange(len(sinks))[:, None], order.shape)
    kept = np.isfinite(cost[order, sink_of])
    tail_of, head_of = order[kept], sink_of[kept]  # by sink, then by unit cost
    if not len(tail_of):
        return None
    used_sources, tail = np.unique(tail_of, return_inverse=True)
    used_sinks, head = np.unique(head_of, return_inverse=True)
    return Network(
        sources=[sources[s][0] for s in used_sources.tolist()],
        supply=spare[used_sources].tolist(),
        sinks=[sinks[d][0] for d in used_sinks.tolist()],
        demand=short[used_sinks].tolist(),
        tail=tail.tolist(),
        head=head.tolist(),
        cap=cap[tail_of, head_of].tolist(),
        unit=unit[tail_of, head_of].tolist(),
        fixed=fixed[tail_of, head_of].tolist(),
        lanes=index.lane[src[tail_of], snk[head_of]].tolist(),
        penalty=penalty,
    )


def objective(net: Network, flows: list[int]) -> int:
    """Transfer cost less stockout avoided, in micro-units: the quantity every solve minimises."""
    return sum((u - net.penalty) * q + (f if q > 0 else 0) for q, u, f in zip(flows, net.unit, net.fixed, strict=True))
