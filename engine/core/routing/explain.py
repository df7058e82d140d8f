"""Why each candidate location was or was not used, in a sentence."""

from __future__ import annotations

from engine.core.routing.cost import at_capacity
from engine.core.routing.frame import Frame
from engine.core.routing.model import (
    CURBSIDE,
    PICKUP,
    TRANSFER_THEN_PICKUP,
    Explanation,
    Fulfillment,
    Line,
    LineAllocation,
    Plan,
)
from engine.core.routing.problem import Allocation, Source, needs


def considered(f: Frame, sources: list[Source], fulfillments: list[Fulfillment]) -> list[dict]:
    """One entry per location: rule-given sources, then `sources` (nearest first), then
    the frame's notes (excluded or unusable locations)."""
    used = {fl.location_id: fl for fl in fulfillments}
    out, seen = [], set()
    for src in [src for src, _ in f.fixed.values()] + sources:
        loc = src.site.location_id
        if loc in seen:
            continue
        seen.add(loc)
        if loc in used:
            out.append({"location_id": loc, "used": True, "reason": _chosen(f, used[loc])})
        else:
            out.append({"location_id": loc, "used": False, "reason": _not_used(f, src, fulfillments)})
    out += [note for note in f.notes if note["location_id"] not in seen]
    return out


def _family(method: str) -> str:
    return "pickup" if method in (PICKUP, CURBSIDE) else "transfer" if method == TRANSFER_THEN_PICKUP else "ship"


def _chosen(f: Frame, fl: Fulfillment) -> str:
    asked = {line.line_id: line.quantity for line in f.lines}
    parts = [
        a.line_id if a.quantity == asked[a.line_id] else f"{a.line_id} ({a.quantity} of {asked[a.line_id]})"
        for a in fl.lines
    ]
    reason = f"chosen: fills lines {','.join(parts)} at {fl.cost.total:.2f}"
    site = f.pricing.by_id[fl.location_id]
    if at_capacity(site):
        reason += f", over daily capacity ({site.orders_today}/{site.daily_order_capacity} orders)"
    promise = f.pricing.order.promise_by
    if promise is not None and fl.eta > promise:
        reason += f", {(fl.eta - promise).days} days late"
    return reason


def _not_used(f: Frame, src: Source, fulfillments: list[Fulfillment]) -> str:
    site, pricing = src.site, f.pricing
    need = needs(f.lines)
    lacks = [sku for sku in need if site.stock.get(sku, 0) <= 0]
    short = [sku for sku, n in need.items() if 0 < site.stock.get(sku, 0) < n]
    if len(lacks) == len(need):
        return "lacks " + ", ".join(lacks)
    if at_capacity(site):
        return f"not used: at daily capacity ({site.orders_today}/{site.daily_order_capacity} orders)"

    lines = {line.line_id: line for line in f.lines}
    best: tuple[float, str] | None = None
    for fl in fulfillments:
        if _family(fl.method) != _family(src.method):
            continue
        units = [(lines[a.line_id], a.quantity) for a in fl.lines]
        if not _enough(site.stock, units):
            continue
        there = pricing.breakdown(site, src.method, units)[4]
        here = pricing.breakdown(pricing.by_id[fl.location_id], fl.method, units)[4]
        if best is None or there - here < best[0]:
            best = (there - here, fl.location_id)
    if best is not None:
        delta, loc = best
        if abs(delta) < 0.005:
            return f"not used: costs the same as {loc}"
        if delta > 0:
            return f"not used: dearer than {loc} by {delta:.2f}"
        return f"not used: cheaper than {loc} by {-delta:.2f}, but not this strategy's pick"
    detail = "; ".join(
        part
        for part in ("lacks " + ", ".join(lacks) if lacks else "", "short of " + ", ".join(short) if short else "")
        if part
    )
    head = "not used: cannot replace a chosen package alone" if fulfillments else "not used: cannot fill the order"
    return f"{head} ({detail})" if detail else head


def _enough(stock: dict[str, int], units: list[tuple[Line, int]]) -> bool:
    total: dict[str, int] = {}
    for line, n in units:
        total[line.sku] = total.get(line.sku, 0) + n
    return all(stock.get(sku, 0) >= n for sku, n in total.items())


def explained_plan(
    f: Frame,
    fulfillments: list[Fulfillment],
    unallocated: list[LineAllocation],
    sources: list[Source],
    *,
    solver: str,
    status: str,
    solve_ms: float,
) -> Plan:
    candidates = {src.site.location_id for src, _ in f.fixed.values()} | {src.site.location_id for src in sources}
    return Plan(
        fulfillments=fulfillments,
        unallocated=unallocated,
        total_cost=round(f.pricing.total(fulfillments, unallocated), 2),
        explanation=Explanation(
            candidates=len(candidates),
            solver=solver,
            status=status,
            solve_ms=round(solve_ms, 3),
            considered=considered(f, sources, fulfillments),
        ),
    )


def with_used(f: Frame, sources: list[Source], *allocs: Allocation) -> list[Source]:
    """`sources` plus every problem source an allocation uses, nearest first."""
    if f.problem is None:
        return list(sources)
    have = {src.site.location_id for src in sources}
    used = {loc for alloc in allocs for loc in alloc}
    extra = [src for src in f.problem.sources if src.site.location_id in used - have]
    return sorted([*sources, *extra], key=lambda src: (src.km, src.site.location_id))
