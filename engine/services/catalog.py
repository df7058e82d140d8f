"""Locations and the item catalog (admin writes, anyone reads)."""

from __future__ import annotations

import asyncpg
import msgspec

from engine.core.access import require_role
from engine.core.model import Caller, Item, Location, LocationKind
from engine.errors import NotFound
from engine.services.availability import locations_changed
from engine.store import catalog as store


class BulkResult(msgspec.Struct, kw_only=True):
    created: int
    updated: int


async def upsert_location(
    pool: asyncpg.Pool, caller: Caller, location_id: str, body: msgspec.Struct
) -> tuple[Location, bool]:
    require_role(caller)
    fields = msgspec.structs.asdict(body)
    fields["kind"] = LocationKind(fields["kind"])
    async with pool.acquire() as conn:
        answer = await store.upsert_location(conn, Location(location_id=location_id, **fields))
    locations_changed()
    return answer


async def get_location(pool: asyncpg.Pool, caller: Caller, location_id: str) -> Location:
    async with pool.acquire() as conn:
        loc = await store.get_location(conn, location_id)
    if loc is None:
        raise NotFound(f"no location {location_id}")
    return loc


async def list_locations(
    pool: asyncpg.Pool, caller: Caller, *, kind: str | None, after: str | None, limit: int
) -> list[Location]:
    async with pool.acquire() as conn:
        return await store.list_locations(conn, kind=kind, after=after, limit=limit)


async def upsert_item(pool: asyncpg.Pool, caller: Caller, item: Item) -> tuple[Item, bool]:
    require_role(caller)
    async with pool.acquire() as conn:
        created = await store.upsert_items(conn, [item])
    return item, created == 1


async def upsert_items(pool: asyncpg.Pool, caller: Caller, items: list[Item]) -> BulkResult:
    """All or nothing: one statement."""
    require_role(caller)
    async with pool.acquire() as conn:
        created = await store.upsert_items(conn, items)
    return BulkResult(created=created, updated=len(items) - created)


async def get_item(pool: asyncpg.Pool, caller: Caller, sku: str) -> Item:
    async with pool.acquire() as conn:
        item = await store.get_item(conn, sku)
    if item is None:
        raise NotFound(f"no item {sku}")
    return item
