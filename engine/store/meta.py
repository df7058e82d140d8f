"""Deployment-wide settings rows and health probes."""

from __future__ import annotations

from typing import Any

import asyncpg


async def get_setting(conn: asyncpg.Connection, key: str) -> Any:
    return await conn.fetchval("SELECT value FROM settings WHERE key = $1", key)


async def set_setting(conn: asyncpg.Connection, key: str, value: Any) -> None:
    await conn.execute(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        key,
        value,
    )


async def ping(conn: asyncpg.Connection) -> None:
    await conn.fetchval("SELECT 1")


async def ensure_database(conn: asyncpg.Connection, name: str) -> None:
    """Create database `name` on the server if missing (connected to any other database)."""
    if not await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name):
        await conn.execute(f'CREATE DATABASE "{name}"')


async def has_locations(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM locations)"))


async def active_keys(conn: asyncpg.Connection, key_ids: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT key_id FROM api_keys WHERE key_id = ANY($1) AND revoked_at IS NULL", key_ids)
    return {r[0] for r in rows}


async def first_store(conn: asyncpg.Connection) -> str | None:
    return await conn.fetchval(
        "SELECT location_id FROM locations WHERE kind = 'store' AND active ORDER BY location_id LIMIT 1"
    )


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Session advisory lock: held until unlock or until the connection closes (a crash)."""
    return await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)


async def unlock(conn: asyncpg.Connection, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)
