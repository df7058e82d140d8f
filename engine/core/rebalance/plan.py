"""Per-SKU rebalancing plans: which surplus location sends how many units where."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.core.rebalance.cover import _shortfall, _surplus, _target
from engine.core.rebalance.flow import profitable_flow, solve_flow
from engine.core.rebalance.mip import solve_mip
from engine.core.rebalance.model import Basis, Lane, Need, Policy, Proposal, SkuPlan
from engine.core.rebalance.network import LaneIndex, Network, build, index_lanes, objective
from engine.errors import BadInput

_Side = tuple[Need, int, int]  # need, its target, its surplus (a source) or shortfall (a sink)


def plan_sku(sku: str, needs: list[Need], lanes: Mapping[tuple[str, str], Lane], policy: Policy) -> SkuPlan:
    """The best transfers of one SKU between its positions `needs` (one per location).

    Sources give at most their `surplus`, sinks take at most their `shortfall`; only lanes
    in `lanes` (keyed (from_id, to_id)) are used. Minimises transfer cost (unit_cost x
    units + fixed_cost per used lane) - stockout_cost_per_unit x units moved, so a unit
    moves only when its lane is cheaper than the stockout it avoids; on a tie it stays.
    Each short location considers only its `policy.max_sources_per_destination` cheapest
    lanes from surplus locations (see `network.build`).

    Without fixed costs the plan is an exact min-cost flow; with them, CP-SAT within
    `policy.time_limit_s`, hinted with (and falling back to) the min-cost flow that keeps
    only lanes that pay their fixed cost. Nothing to move (no surplus, no shortfall or no
    usable lane): no proposals, solver "none", status "trivial". Raises BadInput for a
    position of another SKU or a location listed twice.
    """
    if any(n.sku != sku for n in needs):
        raise BadInput(f"positions of other SKUs passed to the plan of {sku}")
    sources, sinks = _sides(sku, needs, policy)
    keys = [(s[0].location_id, d[0].location_id) for d in sinks for s in sources]
    index = index_lanes(((key, lanes[key]) for key in keys if key in lanes), policy)
    return _plan(sku, sources, sinks, index, policy)


def rebalance(needs: Iterable[Need], lanes: Mapping[tuple[str, str], Lane], policy: Policy) -> list[SkuPlan]:
    """`plan_sku` for every SKU that has both a position with surplus and one with a
    shortfall, in SKU order; other SKUs are skipped (there is nothing to move). The result
    does not depend on the order of `needs`. Lanes are indexed once for all SKUs."""
    by_sku: dict[str, list[Need]] = {}
    for need in needs:
        group = by_sku.get(need.sku)
        if group is None:
            by_sku[need.sku] = [need]
        else:
            group.append(need)
    index = index_lanes(lanes.items(), policy)
    plans = []
    for sku in sorted(by_sku):
        sources, sinks = _sides(sku, by_sku[sku], policy)
        if sources and sinks:
            plans.append(_plan(sku, sources, sinks, index, policy))
    return plans


def _sides(sku: str, needs: list[Need], policy: Policy) -> tuple[list[_Side], list[_Side]]:
    """Positions with a surplus and positions with a shortfall, each by location_id."""
    if len({n.location_id for n in needs}) != len(needs):
        raise BadInput(f"a location has more than one position of {sku}")
    days = policy.target_days_cover
    sources, sinks = [], []
    for need in needs:
        goal = _target(need.demand_per_day, days)
        spare = _surplus(need, goal)
        if spare > 0:
            sources.append((need, goal, spare))
            continue
        short = _shortfall(need, goal)
        if short > 0:
            sinks.append((need, goal, short))
    sources.sort(key=_location)
    sinks.sort(key=_location)
    return sources, sinks


def _ids(sides: list[_Side]) -> list[tuple[str, int]]:
    return [(side[0].location_id, side[2]) for side in sides]


def _location(side: _Side) -> str:
    return side[0].location_id


def _plan(sku: str, sources: list[_Side], sinks: list[_Side], index: LaneIndex, policy: Policy) -> SkuPlan:
    net = None
    if sources and sinks:
        net = build(_ids(sources), _ids(sinks), index, policy)
    if net is None:
        return SkuPlan(sku, [], "none", "trivial")
    if not any(net.fixed):
        flows, solver, status = solve_flow(net), "min-cost-flow", "optimal"
    else:
        hint = profitable_flow(net)
        found = solve_mip(net, hint, policy.time_limit_s)
        solver = "cp-sat"
        if found is None or objective(net, found[0]) > objective(net, hint):
            flows, status = hint, "fallback"
        else:
            flows, status = found
    return SkuPlan(sku, _proposals(sku, net, flows, sources, sinks, policy), solver, status)


def _proposals(
    sku: str, net: Network, flows: list[int], sources: list[_Side], sinks: list[_Side], policy: Policy
) -> list[Proposal]:
    at = {side[0].location_id: side for side in (*sources, *sinks)}
    out = []
    for q, tail, head, lane in zip(flows, net.tail, net.head, net.lanes, strict=True):
        if q <= 0:
            continue
        from_id, to_id = net.sources[tail], net.sinks[head]
        (src, src_goal, spare), (dst, dst_goal, short) = at[from_id], at[to_id]
        basis = Basis(
            src.available, src.in_transit_in, src_goal, spare, max(0, dst.available), dst.in_transit_in, dst_goal, short
        )
        cost = round(lane.unit_cost * q + lane.fixed_cost, 2)
        out.append(Proposal(from_id, to_id, sku, q, cost, q, basis))
    out.sort(key=lambda p: (p.from_location_id, p.to_location_id))
    return out
