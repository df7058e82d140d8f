"""Orders: quote, place (route and reserve atomically), read, cancel, reject, complete.

Each use case gathers (candidate sites with fresh stock), decides (the pure router, off the
event loop), and applies (order, fulfillments and one reservation per fulfillment in one
transaction). If stock moved between the solve and the reservation, the transaction rolls
back and the order is solved again with fresh stock, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from functools import partial
from uuid import UUID, uuid4

import asyncpg
import msgspec

from engine.core.access import require_locations, require_role
from engine.core.model import Caller, Role
from engine.core.reservations import Line as HoldLine
from engine.core.reservations import Status
from engine.core.routing import CostModel, Fulfillment, Line, LineAllocation, Order, Plan, Site, route
from engine.core.routing import quote as route_quote
from engine.errors import BadInput, Conflict, IdempotencyMismatch, NotFound
from engine.services import idempotency
from engine.services.availability import stock_changed
from engine.store import idempotency as idem_store
from engine.store import orders as store
from engine.store import reservations as reservations_store
from engine.store.db import with_retry

ORDER_HOLD_SECONDS = 30 * 24 * 3600  # an order's units stay held until completed or cancelled
MAX_ATTEMPTS = 3
_solver = ThreadPoolExecutor(max_workers=2, thread_name_prefix="route")
_encoder = msgspec.json.Encoder()


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    line_id: str
    sku: str
    quantity: int


class Destination(msgspec.Struct, frozen=True, kw_only=True):
    lat: float
    lon: float
    postal_code: str | None = None


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`defer`: True queues the order for the next routing run (nothing is held until
    then); None follows the deployment's rule for ship orders."""

    order_id: str
    channel: str | None
    destination: Destination
    method: str
    pickup_location_id: str | None
    lines: list[OrderLine]
    allow_split: bool
    allow_partial: bool
    promise_by: date | None
    defer: bool | None = None


class FulfillmentOut(msgspec.Struct, kw_only=True):
    fulfillment_id: UUID | None
    location_id: str
    method: str
    lines: list[LineAllocation]
    cost: dict
    eta: date
    reservation_id: UUID | None
    status: str = "open"


class Alternative(msgspec.Struct, kw_only=True):
    method: str
    fulfillments: list[FulfillmentOut]
    unallocated: list[LineAllocation]
    total_cost: float


class OrderOut(msgspec.Struct, kw_only=True):
    order_id: str
    status: str
    fulfillments: list[FulfillmentOut]
    unallocated: list[LineAllocation]
    total_cost: float
    explanation: dict
    alternatives: list[Alternative] | None = None


def order_status(plan_fulfillments: int, unallocated: int) -> str:
    if not unallocated:
        return "allocated"
    return "partially_allocated" if plan_fulfillments else "backordered"


def _fulfillment_out(f: Fulfillment, fulfillment_id: UUID | None = None, reservation_id: UUID | None = None):
    return FulfillmentOut(
        fulfillment_id=fulfillment_id,
        location_id=f.location_id,
        method=f.method,
        lines=f.lines,
        cost=msgspec.to_builtins(f.cost),
        eta=f.eta,
        reservation_id=reservation_id,
    )


def sites_of(rows: list[asyncpg.Record]) -> list[Site]:
    return [
        Site(
            location_id=r["location_id"],
            kind=r["kind"],
            lat=r["lat"],
            lon=r["lon"],
            ships=r["ships"],
            pickup=r["pickup"],
            curbside=r["curbside"],
            pick_cost_per_unit=r["pick_cost_per_unit"],
            daily_order_capacity=r["daily_order_capacity"],
            orders_today=r["orders_today"],
            stock=r["stock"],
        )
        for r in rows
    ]


async def _gather(pool: asyncpg.Pool, req: OrderRequest, lines: list[OrderLine]) -> tuple[Order, list[Site], date]:
    skus = sorted({line.sku for line in lines})
    async with pool.acquire() as conn:
        weights = await store.weights(conn, skus)
        unknown = [s for s in skus if s not in weights]
        if unknown:
            raise BadInput("unknown sku", errors=[{"field": "lines", "message": f"unknown sku {s}"} for s in unknown])
        rows = await store.candidates(conn, skus)
        today = await store.today(conn)
    order = Order(
        order_id=req.order_id,
        lat=req.destination.lat,
        lon=req.destination.lon,
        method=req.method,
        pickup_location_id=req.pickup_location_id,
        lines=[Line(line_id=x.line_id, sku=x.sku, quantity=x.quantity, weight_kg=weights[x.sku]) for x in lines],
        allow_split=req.allow_split,
        allow_partial=req.allow_partial,
        promise_by=req.promise_by,
    )
    sites = sites_of(rows)
    if req.pickup_location_id is not None:
        store_site = next((s for s in sites if s.location_id == req.pickup_location_id), None)
        if store_site is None or not store_site.pickup:
            raise BadInput(
                "pickup_location_id is not an active pickup location",
                errors=[{"field": "pickup_location_id", "message": f"{req.pickup_location_id}"}],
            )
        if req.method == "curbside" and not store_site.curbside:
            raise BadInput(
                "this store does not offer curbside pickup",
                errors=[{"field": "method", "message": f"{req.pickup_location_id} has no curbside"}],
            )
    return order, sites, today


async def _solve(fn, *args, **kwargs):  # noqa: ANN001, ANN202 - thin executor hop
    """CPU-heavy solving runs in a worker thread (OR-Tools releases the GIL while solving)."""
    return await asyncio.get_running_loop().run_in_executor(_solver, partial(fn, *args, **kwargs))


def request_hash(req: OrderRequest) -> bytes:
    return hashlib.sha256(_encoder.encode(req)).digest()


async def quote(pool: asyncpg.Pool, caller: Caller, req: OrderRequest, costs: CostModel) -> OrderOut:
    """The plan and the best alternative for each other possible method; reserves nothing."""
    require_role(caller, Role.CHECKOUT)
    order, sites, today = await _gather(pool, req, req.lines)
    plan, alternatives = await _solve(route_quote, order, sites, costs, today=today)
    return OrderOut(
        order_id=req.order_id,
        status=order_status(len(plan.fulfillments), len(plan.unallocated)),
        fulfillments=[_fulfillment_out(f) for f in plan.fulfillments],
        unallocated=plan.unallocated,
        total_cost=plan.total_cost,
        explanation=msgspec.to_builtins(plan.explanation),
        alternatives=[
            Alternative(
                method=_method_of(alt),
                fulfillments=[_fulfillment_out(f) for f in alt.fulfillments],
                unallocated=alt.unallocated,
                total_cost=alt.total_cost,
            )
            for alt in alternatives
        ],
    )


def _method_of(plan: Plan) -> str:
    methods = {f.method for f in plan.fulfillments}
    if methods & {"pickup", "transfer_then_pickup"}:
        return "pickup"
    if "curbside" in methods:
        return "curbside"
    return "ship"


def fulfillment_rows(fulfillments: list[Fulfillment], ids: list[tuple[UUID, UUID]]) -> list[dict]:
    """Rows for store.insert_fulfillments: each planned fulfillment with its ids."""
    return [
        {
            "fulfillment_id": fid,
            "location_id": f.location_id,
            "method": f.method,
            "lines": msgspec.to_builtins(f.lines),
            "cost": msgspec.to_builtins(f.cost),
            "eta": f.eta,
            "reservation_id": rid,
        }
        for f, (fid, rid) in zip(fulfillments, ids, strict=True)
    ]


async def reserve_plan(
    conn: asyncpg.Connection, owner: str, order_id: str, fulfillments: list[Fulfillment]
) -> list[tuple[UUID, UUID]]:
    """One reservation per fulfillment, in this transaction. Raises Shortage if stock moved."""
    ids = []
    for f in fulfillments:
        per_sku: dict[str, int] = {}
        for line in f.lines:
            per_sku[line.sku] = per_sku.get(line.sku, 0) + line.quantity
        hold = sorted(
            (HoldLine(sku=s, location_id=f.location_id, quantity=q) for s, q in per_sku.items()), key=lambda x: x.sku
        )
        rid = uuid4()
        await reservations_store.reserve(
            conn,
            reservation_id=rid,
            owner=owner,
            reference=order_id,
            ttl_seconds=ORDER_HOLD_SECONDS,
            lines=hold,
        )
        ids.append((uuid4(), rid))
    return ids


async def place(
    pool: asyncpg.Pool,
    caller: Caller,
    req: OrderRequest,
    costs: CostModel,
    idem_key: str | None = None,
    *,
    defer_ship: bool = False,
) -> tuple[int, bytes]:
    """Route and reserve atomically. Retries are safe two ways: the same order id again
    returns the stored order (200) and the same id with another body is a Conflict; an
    Idempotency-Key, when sent, returns the first answer byte for byte and refuses reuse
    with another body (the key is claimed in the transaction that places the order)."""
    require_role(caller, Role.CHECKOUT)
    digest = request_hash(req)
    idem_digest = idempotency.request_hash("orders.place", req) if idem_key else b""
    async with pool.acquire() as conn:
        if idem_key is not None and (first := await _first_answer(conn, caller, idem_key, idem_digest)):
            return first
        existing = await store.get_order(conn, req.order_id)
        if existing is not None:
            return 200, _encoder.encode(await _replay(conn, caller, existing, digest))

    placing = _Placing(caller, req, digest, idem_key, idem_digest)
    if req.defer if req.defer is not None else (defer_ship and req.method == "ship"):
        await _gather(pool, req, req.lines)  # the same checks as routing now: known SKUs, a real pickup store
        explanation = {"queued": "waits for the next routing run; nothing is held until then"}
        return await _record(pool, placing, "queued", [], [], 0.0, explanation)

    for attempt in range(MAX_ATTEMPTS):
        order, sites, today = await _gather(pool, req, req.lines)
        plan = await _solve(route, order, sites, costs, today=today)
        status = order_status(len(plan.fulfillments), len(plan.unallocated))
        explanation = {**msgspec.to_builtins(plan.explanation), "attempts": attempt + 1}
        try:
            answer = await _record(
                pool, placing, status, plan.fulfillments, plan.unallocated, plan.total_cost, explanation
            )
        except reservations_store.Shortage:
            continue  # stock moved since the solve: solve again with fresh stock
        stock_changed(line.sku for line in req.lines)
        return answer
    raise Conflict(f"stock kept moving while placing order {req.order_id}; retry the request", order_id=req.order_id)


class _Placing(msgspec.Struct, frozen=True):
    """Who places which order, and the digests its retries are recognised by."""

    caller: Caller
    req: OrderRequest
    digest: bytes
    idem_key: str | None
    idem_digest: bytes


async def _record(
    pool: asyncpg.Pool,
    p: _Placing,
    status: str,
    fulfillments: list[Fulfillment],
    unallocated: list[LineAllocation],
    total_cost: float,
    explanation: dict,
) -> tuple[int, bytes]:
    """In one transaction: claim the Idempotency-Key, hold each fulfillment's units
    (Shortage, and nothing written, if stock moved since the solve), store the order and its
    fulfillments, and store the answer under the key. If the same order id was placed
    concurrently, the stored order answers (200)."""
    caller, req = p.caller, p.req

    async def apply() -> tuple[int, bytes] | None:
        async with pool.acquire() as conn, conn.transaction():
            if p.idem_key is not None and not await idem_store.claim(
                conn, caller.key_id, p.idem_key, "orders.place", p.idem_digest
            ):
                return await _first_answer(conn, caller, p.idem_key, p.idem_digest)
            ids = await reserve_plan(conn, caller.key_id, req.order_id, fulfillments)
            inserted = await store.insert_order(
                conn,
                order_id=req.order_id,
                owner=caller.key_id,
                channel=req.channel,
                method=req.method,
                request=msgspec.to_builtins(req),
                request_hash=p.digest,
                status=status,
                unallocated=msgspec.to_builtins(unallocated),
                total_cost=total_cost,
                explanation=explanation,
            )
            if not inserted:
                return None  # placed concurrently: the replay below answers
            await store.insert_fulfillments(conn, req.order_id, fulfillment_rows(fulfillments, ids))
            encoded = _encoder.encode(
                OrderOut(
                    order_id=req.order_id,
                    status=status,
                    fulfillments=[
                        _fulfillment_out(f, fid, rid) for f, (fid, rid) in zip(fulfillments, ids, strict=True)
                    ],
                    unallocated=unallocated,
                    total_cost=total_cost,
                    explanation=explanation,
                )
            )
            if p.idem_key is not None:
                await idem_store.finish(conn, caller.key_id, p.idem_key, 201, encoded)
            return 201, encoded

    answer = await with_retry(apply)
    if answer is None:
        async with pool.acquire() as conn:
            return 200, _encoder.encode(
                await _replay(conn, caller, await store.get_order(conn, req.order_id), p.digest)
            )
    return answer


async def _first_answer(
    conn: asyncpg.Connection, caller: Caller, idem_key: str, idem_digest: bytes
) -> tuple[int, bytes] | None:
    row = await idem_store.stored(conn, caller.key_id, idem_key)
    if row is None:
        return None
    if row["operation"] != "orders.place" or row["request_hash"] != idem_digest:
        raise IdempotencyMismatch(
            "this Idempotency-Key was already used with a different request", idempotency_key=idem_key
        )
    return row["status_code"], bytes(row["response"])


async def _replay(conn: asyncpg.Connection, caller: Caller, row: asyncpg.Record, digest: bytes) -> OrderOut:
    if caller.role is not Role.ADMIN and row["owner"] != caller.key_id:
        raise Conflict(f"order {row['order_id']} exists already", order_id=row["order_id"])
    if bytes(row["request_hash"]) != digest:
        raise Conflict(f"order {row['order_id']} exists with a different body", order_id=row["order_id"])
    return await _read(conn, row)


async def _read(conn: asyncpg.Connection, row: asyncpg.Record) -> OrderOut:
    fulfillments = await store.get_fulfillments(conn, row["order_id"])
    return OrderOut(
        order_id=row["order_id"],
        status=row["status"],
        fulfillments=[
            FulfillmentOut(
                fulfillment_id=f["fulfillment_id"],
                location_id=f["location_id"],
                method=f["method"],
                lines=msgspec.convert(f["lines"], list[LineAllocation]),
                cost=f["cost"],
                eta=f["eta"],
                reservation_id=f["reservation_id"],
                status=f["status"],
            )
            for f in fulfillments
        ],
        unallocated=msgspec.convert(row["unallocated"], list[LineAllocation]),
        total_cost=row["total_cost"],
        explanation=row["explanation"],
    )


async def _load(conn: asyncpg.Connection, caller: Caller, order_id: str, *, lock: bool) -> asyncpg.Record:
    row = await store.get_order(conn, order_id, lock=lock)
    if row is None or (caller.role not in (Role.ADMIN, Role.POS) and row["owner"] != caller.key_id):
        raise NotFound(f"no order {order_id}")
    return row


async def get(pool: asyncpg.Pool, caller: Caller, order_id: str) -> OrderOut:
    require_role(caller, Role.CHECKOUT)
    async with pool.acquire() as conn:
        return await _read(conn, await _load(conn, caller, order_id, lock=False))


async def cancel(pool: asyncpg.Pool, caller: Caller, order_id: str) -> OrderOut:
    """Release every open fulfillment. An order with a completed fulfillment cannot be cancelled."""
    require_role(caller, Role.CHECKOUT)

    async def attempt() -> OrderOut:
        async with pool.acquire() as conn, conn.transaction():
            row = await _load(conn, caller, order_id, lock=True)
            if row["status"] == "cancelled":
                return await _read(conn, row)
            fulfillments = await store.get_fulfillments(conn, order_id)
            if any(f["status"] == "completed" for f in fulfillments):
                raise Conflict(
                    "part of this order has shipped or been picked up; it cannot be cancelled", order_id=order_id
                )
            for f in fulfillments:
                if f["status"] == "open":
                    await reservations_store.finish(
                        conn, f["reservation_id"], status=Status.RELEASED, actor=caller.key_id
                    )
                    await store.set_fulfillment_status(conn, f["fulfillment_id"], "cancelled")
            await store.update_order(conn, order_id, status="cancelled")
            return await _read(conn, await store.get_order(conn, order_id))

    return _touching(await with_retry(attempt))


def _touching(out: OrderOut) -> OrderOut:
    """The order's writes have committed: availability views here forget its SKUs."""
    stock_changed(line.sku for f in out.fulfillments for line in f.lines)
    return out


def _fulfillment(fulfillments: list[asyncpg.Record], fulfillment_id: UUID, order_id: str) -> asyncpg.Record:
    f = next((f for f in fulfillments if f["fulfillment_id"] == fulfillment_id), None)
    if f is None:
        raise NotFound(f"order {order_id} has no fulfillment {fulfillment_id}")
    return f


async def complete(pool: asyncpg.Pool, caller: Caller, order_id: str, fulfillment_id: UUID) -> OrderOut:
    """Shipped or picked up: the held units become a sale."""
    require_role(caller, Role.POS)

    async def attempt() -> OrderOut:
        async with pool.acquire() as conn, conn.transaction():
            row = await _load(conn, caller, order_id, lock=True)
            fulfillments = await store.get_fulfillments(conn, order_id)
            f = _fulfillment(fulfillments, fulfillment_id, order_id)
            require_locations(caller, [f["location_id"]])
            if f["status"] != "open":
                raise Conflict(f"fulfillment {fulfillment_id} is {f['status']}", fulfillment_id=str(fulfillment_id))
            await reservations_store.finish(conn, f["reservation_id"], status=Status.COMMITTED, actor=caller.key_id)
            await store.set_fulfillment_status(conn, fulfillment_id, "completed")
            others_open = any(x["status"] == "open" and x["fulfillment_id"] != fulfillment_id for x in fulfillments)
            if not others_open and not row["unallocated"]:
                await store.update_order(conn, order_id, status="completed")
            return await _read(conn, await store.get_order(conn, order_id))

    return _touching(await with_retry(attempt))


async def reject(pool: asyncpg.Pool, caller: Caller, order_id: str, fulfillment_id: UUID, costs: CostModel) -> OrderOut:
    """The source cannot pick: release its hold, exclude that location for this order, and
    route those lines again (what cannot be placed is listed as unallocated)."""
    require_role(caller, Role.POS)
    for _ in range(MAX_ATTEMPTS):
        async with pool.acquire() as conn:
            row = await _load(conn, caller, order_id, lock=False)
            f = _fulfillment(await store.get_fulfillments(conn, order_id), fulfillment_id, order_id)
        require_locations(caller, [f["location_id"]])
        if f["status"] != "open":
            raise Conflict(f"fulfillment {fulfillment_id} is {f['status']}", fulfillment_id=str(fulfillment_id))
        req = msgspec.convert(row["request"], OrderRequest)
        excluded = sorted({*row["excluded_locations"], f["location_id"]})
        moved = [OrderLine(line_id=x["line_id"], sku=x["sku"], quantity=x["quantity"]) for x in f["lines"]]
        order, sites, today = await _gather(pool, req, moved)
        plan = await _solve(route, order, sites, costs, today=today, exclude=frozenset(excluded))

        async def apply(plan: Plan = plan, excluded: list[str] = excluded) -> OrderOut:
            async with pool.acquire() as conn, conn.transaction():
                row = await _load(conn, caller, order_id, lock=True)
                current = _fulfillment(await store.get_fulfillments(conn, order_id), fulfillment_id, order_id)
                if current["status"] != "open":
                    raise Conflict(
                        f"fulfillment {fulfillment_id} is {current['status']}", fulfillment_id=str(fulfillment_id)
                    )
                await reservations_store.finish(
                    conn, current["reservation_id"], status=Status.RELEASED, actor=caller.key_id
                )
                await store.set_fulfillment_status(conn, fulfillment_id, "rejected")
                ids = await reserve_plan(conn, caller.key_id, order_id, plan.fulfillments)
                await store.insert_fulfillments(
                    conn,
                    order_id,
                    fulfillment_rows(plan.fulfillments, ids),
                )
                unallocated = [*row["unallocated"], *msgspec.to_builtins(plan.unallocated)]
                open_count = sum(1 for x in await store.get_fulfillments(conn, order_id) if x["status"] == "open")
                await store.update_order(
                    conn,
                    order_id,
                    status=order_status(open_count, len(unallocated)),
                    unallocated=unallocated,
                    total_cost=round(row["total_cost"] - current["cost"]["total"] + plan.total_cost, 2),
                    excluded_locations=excluded,
                    explanation={
                        **row["explanation"],
                        "rerouted": {"rejected": current["location_id"], **msgspec.to_builtins(plan.explanation)},
                    },
                )
                return await _read(conn, await store.get_order(conn, order_id))

        try:
            return _touching(await with_retry(apply))
        except reservations_store.Shortage:
            continue
    raise Conflict(f"stock kept moving while re-routing order {order_id}; retry the request", order_id=order_id)
