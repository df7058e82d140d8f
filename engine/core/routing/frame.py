"""What is fixed by rule and what is left to decide for one order, and how a decision
becomes fulfillments. Shared by the router and the baselines so they differ only in how
they decide."""

from __future__ import annotations

from datetime import date

from engine.core.routing.cost import Pricing, ship_method
from engine.core.routing.model import (
    CURBSIDE,
    ORDER_METHODS,
    SHIP,
    TRANSFER_THEN_PICKUP,
    WAREHOUSE,
    CostModel,
    Fulfillment,
    Line,
    LineAllocation,
    Order,
    Site,
)
from engine.core.routing.problem import Allocation, Ledger, Problem, Source, fills_all, needs, stocks_any
from engine.core.routing.prune import prune_by
from engine.errors import BadInput

EXCLUDED = "excluded: rejected for this order"


class Frame:
    """`fixed`: units decided by rule (pickup at the chosen store), by location_id.
    `problem`: the rest, over every usable source; `candidates`: the sources the exact
    solve starts from. `notes`: explanation entries for locations that could not be used."""

    def __init__(self, pricing: Pricing, lines: list[Line]) -> None:
        self.pricing = pricing
        self.lines = lines
        self.fixed: dict[str, tuple[Source, dict[str, int]]] = {}
        self.problem: Problem | None = None
        self.candidates: list[Source] = []
        self.notes: list[dict] = []


def frame(order: Order, sites: list[Site], costs: CostModel, today: date, exclude: frozenset[str]) -> Frame:
    if order.method not in ORDER_METHODS:
        raise BadInput(f"unknown fulfillment method {order.method!r}")
    ids = [line.line_id for line in order.lines]
    if len(set(ids)) != len(ids):
        raise BadInput("line_id must be unique within an order")
    f = Frame(Pricing(order, sites, costs, today), [line for line in order.lines if line.quantity > 0])
    if f.lines:
        if order.method == SHIP:
            _ship(f, order, sites, costs, exclude)
        else:
            _pickup(f, order, sites, exclude)
    return f


def _note(location_id: str | None, reason: str) -> dict:
    return {"location_id": location_id, "used": False, "reason": reason}


def _ship(f: Frame, order: Order, sites: list[Site], costs: CostModel, exclude: frozenset[str]) -> None:
    pricing = f.pricing
    usable = [s for s in sites if s.ships and stocks_any(s, f.lines)]
    f.notes = [_note(s.location_id, EXCLUDED) for s in usable if s.location_id in exclude]
    usable = [s for s in usable if s.location_id not in exclude]
    sources = sorted(
        (Source(s, ship_method(s), pricing.km_to_order(s)) for s in usable),
        key=lambda src: (src.km, src.site.location_id),
    )
    f.problem = Problem(f.lines, sources, order.allow_split, order.allow_partial)
    by_id = {src.site.location_id: src for src in sources}
    f.candidates = [by_id[s.location_id] for s in prune_by(order, usable, costs, pricing.km_to_order)]


def _pickup(f: Frame, order: Order, sites: list[Site], exclude: frozenset[str]) -> None:
    store, loc = f.pricing.store, order.pickup_location_id
    if loc is None:
        f.notes = [_note(None, "not used: no pickup location given")]
        return
    if store is None:
        f.notes = [_note(loc, "not used: unknown location")]
        return
    if loc in exclude:
        f.notes = [_note(loc, EXCLUDED)]
        return
    if not (store.curbside if order.method == CURBSIDE else store.pickup):
        f.notes = [_note(loc, f"not used: does not offer {order.method}")]
        return
    at_store = Source(store, order.method, 0.0)
    if fills_all(store, needs(f.lines)):
        f.fixed[loc] = (at_store, {line.line_id: line.quantity for line in f.lines})
        return

    if order.allow_split:
        ledger, here, missing = Ledger(), {}, []
        for line in f.lines:
            n = min(line.quantity, max(0, ledger.left(store, line.sku)))
            ledger.take(store, line.sku, n)
            if n:
                here[line.line_id] = n
            if n < line.quantity:
                missing.append(Line(line.line_id, line.sku, line.quantity - n, line.weight_kg))
        f.fixed[loc] = (at_store, here)
        if not here:
            del f.fixed[loc]
            f.notes = [_note(loc, "not used: has none of the lines; all come by transfer")]
        to_move, own = missing, []
    else:
        to_move, own = f.lines, [at_store]

    warehouses = [s for s in sites if s.kind == WAREHOUSE and s.location_id != loc and stocks_any(s, to_move)]
    f.notes += [_note(s.location_id, EXCLUDED) for s in warehouses if s.location_id in exclude]
    transfers = sorted(
        (
            Source(s, TRANSFER_THEN_PICKUP, f.pricing.km(s, TRANSFER_THEN_PICKUP))
            for s in warehouses
            if s.location_id not in exclude
        ),
        key=lambda src: (src.km, src.site.location_id),
    )
    f.problem = Problem(to_move, own + transfers, order.allow_split, order.allow_partial)
    f.candidates = list(f.problem.sources)


def assemble(f: Frame, alloc: Allocation) -> tuple[list[Fulfillment], list[LineAllocation]]:
    """Fixed units plus `alloc` as fulfillments (by location_id) and what is left over.
    An all-or-nothing order with anything left over comes back entirely unallocated."""
    sources = {loc: src for loc, (src, _) in f.fixed.items()}
    units: dict[str, dict[str, int]] = {loc: dict(given) for loc, (_, given) in f.fixed.items()}
    if f.problem is not None:
        by_id = {src.site.location_id: src for src in f.problem.sources}
        for loc, given in alloc.items():
            sources[loc] = by_id[loc]
            into = units.setdefault(loc, {})
            for j, n in given.items():
                line_id = f.problem.lines[j].line_id
                into[line_id] = into.get(line_id, 0) + n

    fulfillments = []
    allocated: dict[str, int] = {}
    for loc in sorted(units):
        given = units[loc]
        lines = [(line, given[line.line_id]) for line in f.lines if given.get(line.line_id, 0) > 0]
        if not lines:
            continue
        src = sources[loc]
        fulfillments.append(f.pricing.fulfillment(src.site, src.method, lines))
        for line, n in lines:
            allocated[line.line_id] = allocated.get(line.line_id, 0) + n
    unallocated = [
        LineAllocation(line.line_id, line.sku, line.quantity - allocated.get(line.line_id, 0))
        for line in f.lines
        if allocated.get(line.line_id, 0) < line.quantity
    ]
    if unallocated and not f.pricing.order.allow_partial:
        return [], [LineAllocation(line.line_id, line.sku, line.quantity) for line in f.lines]
    return fulfillments, unallocated
