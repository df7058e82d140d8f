"""Reservations: create (no oversell), read, commit, release, extend."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import asyncpg
import msgspec

from engine.core import reservations as rules
from engine.core.access import require_locations, require_role
from engine.core.model import Caller, Role
from engine.core.reservations import Line, Reservation, Status
from engine.errors import BadInput, Conflict, OutOfStock
from engine.services import group_commit, idempotency
from engine.services.availability import stock_changed
from engine.store import reservations as store
from engine.store.db import with_retry

_encoder = msgspec.json.Encoder()


class ReservationOut(msgspec.Struct, kw_only=True):
    reservation_id: UUID
    status: Status
    expires_at: datetime
    reference: str | None
    created_at: datetime
    lines: list[Line]


def _out(res: Reservation, now: datetime, status: Status | None = None, expires_at: datetime | None = None):
    return ReservationOut(
        reservation_id=res.reservation_id,
        status=status or res.status_at(now),
        expires_at=expires_at or res.expires_at,
        reference=res.reference,
        created_at=res.created_at,
        lines=res.lines,
    )


async def create(
    pool: asyncpg.Pool,
    caller: Caller,
    lines: list[Line],
    *,
    ttl_seconds: int,
    reference: str | None,
    idem_key: str | None,
    groups: group_commit.ReservationGroups | None = None,
) -> tuple[int, bytes]:
    """Hold every line or none. Each line takes at most `available` at that instant,
    whatever the concurrency (one conditional UPDATE per line inside one statement).

    Without an Idempotency-Key and with `groups`, it joins the process's group commit;
    with a key, the claim, the hold and the stored answer share one transaction."""
    require_role(caller, Role.CHECKOUT, Role.POS)
    require_locations(caller, (line.location_id for line in lines))
    ordered = rules.validate_lines(lines)

    rules.check_ttl(ttl_seconds)
    if idem_key is None and groups is not None:
        item = store.BatchItem(
            reservation_id=uuid4(), owner=caller.key_id, reference=reference, ttl_seconds=ttl_seconds, lines=ordered
        )
        result = await groups.reserve(item)
        if isinstance(result, store.Shortage):
            _raise_shortage(result.shortages)
        created_at, expires_at = result
        stock_changed(line.sku for line in ordered)
        out = ReservationOut(
            reservation_id=item.reservation_id,
            status=Status.ACTIVE,
            expires_at=expires_at,
            reference=reference,
            created_at=created_at,
            lines=ordered,
        )
        return 201, _encoder.encode(out)

    async def work(conn: asyncpg.Connection) -> tuple[int, ReservationOut]:
        rid = uuid4()
        try:
            created_at, expires_at = await store.reserve(
                conn,
                reservation_id=rid,
                owner=caller.key_id,
                reference=reference,
                ttl_seconds=ttl_seconds,
                lines=ordered,
            )
        except store.Shortage as short:
            _raise_shortage(short.shortages)
        return 201, ReservationOut(
            reservation_id=rid,
            status=Status.ACTIVE,
            expires_at=expires_at,
            reference=reference,
            created_at=created_at,
            lines=ordered,
        )

    body = {"lines": ordered, "ttl_seconds": ttl_seconds, "reference": reference}
    answer = await idempotency.run(pool, caller, idem_key, "reservations.create", body, work, single_statement=True)
    stock_changed(line.sku for line in ordered)
    return answer


def _raise_shortage(shortages: list[dict]) -> None:
    unknown = [{"field": "sku", "message": f"unknown sku {s['sku']}"} for s in shortages if s["unknown_sku"]]
    unknown += [
        {"field": "location_id", "message": f"unknown location {s['location_id']}"}
        for s in shortages
        if s["unknown_location"]
    ]
    if unknown:
        raise BadInput("unknown sku or location", errors=unknown)
    raise OutOfStock(
        "not enough available stock for every line; nothing was reserved",
        shortages=[{k: s[k] for k in ("sku", "location_id", "requested", "available")} for s in shortages],
    )


async def get(pool: asyncpg.Pool, caller: Caller, reservation_id: UUID) -> ReservationOut:
    async with pool.acquire() as conn:
        found, now = await store.get(conn, reservation_id)
        return _out(rules.require_access(caller, found, reservation_id), now)


async def commit(pool: asyncpg.Pool, caller: Caller, reservation_id: UUID, idem_key: str | None) -> tuple[int, bytes]:
    """Held units become a sale: on_hand and reserved both drop. Expired: 409."""

    async def work(conn: asyncpg.Connection) -> tuple[int, ReservationOut]:
        found, now = await store.get(conn, reservation_id, lock=True)
        res = rules.require_access(caller, found, reservation_id)
        rules.require_active(res, now, "commit")
        moved = await store.finish(conn, reservation_id, status=Status.COMMITTED, actor=caller.key_id)
        if moved != len(res.lines):
            raise Conflict(
                "the reservation expired while it was being committed",
                reservation_id=str(reservation_id),
                reservation_status="expired",
            )
        touched.extend(line.sku for line in res.lines)
        return 200, _out(res, now, status=Status.COMMITTED)

    touched: list[str] = []
    answer = await idempotency.run(
        pool, caller, idem_key, "reservations.commit", {"reservation_id": str(reservation_id)}, work
    )
    stock_changed(touched)
    return answer


async def release(pool: asyncpg.Pool, caller: Caller, reservation_id: UUID, idem_key: str | None) -> tuple[int, bytes]:
    """Give the held units back. Releasing a released or expired hold changes nothing."""

    async def work(conn: asyncpg.Connection) -> tuple[int, ReservationOut]:
        found, now = await store.get(conn, reservation_id, lock=True)
        res = rules.require_access(caller, found, reservation_id)
        if rules.release_is_noop(res, now):
            return 200, _out(res, now)
        final = Status.EXPIRED if res.status_at(now) is Status.EXPIRED else Status.RELEASED
        await store.finish(conn, reservation_id, status=final, actor=caller.key_id)
        touched.extend(line.sku for line in res.lines)
        return 200, _out(res, now, status=final)

    touched: list[str] = []
    answer = await idempotency.run(
        pool, caller, idem_key, "reservations.release", {"reservation_id": str(reservation_id)}, work
    )
    stock_changed(touched)
    return answer


async def extend(
    pool: asyncpg.Pool, caller: Caller, reservation_id: UUID, ttl_seconds: int, idem_key: str | None
) -> tuple[int, bytes]:
    """New expiry = now + ttl_seconds (at most 7 days). Only an active hold can be extended."""

    async def work(conn: asyncpg.Connection) -> tuple[int, ReservationOut]:
        found, now = await store.get(conn, reservation_id, lock=True)
        res = rules.require_access(caller, found, reservation_id)
        rules.require_active(res, now, "extend")
        expires_at = rules.expiry(now, ttl_seconds)
        if await store.extend(conn, reservation_id, expires_at) != len(res.lines):
            raise Conflict(
                "the reservation expired while it was being extended",
                reservation_id=str(reservation_id),
                reservation_status="expired",
            )
        return 200, _out(res, now, expires_at=expires_at)

    return await idempotency.run(
        pool,
        caller,
        idem_key,
        "reservations.extend",
        {"reservation_id": str(reservation_id), "ttl_seconds": ttl_seconds},
        work,
    )


async def sweep_expired(pool: asyncpg.Pool, *, batch: int = 1000) -> int:
    """Release expired holds in batches of `batch` lines, each batch its own transaction."""
    total = 0
    while True:

        async def one() -> int:
            async with pool.acquire() as conn, conn.transaction():
                return await store.release_expired(conn, batch)

        released = await with_retry(one)
        total += released
        if released < batch:
            return total
