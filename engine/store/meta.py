"""Deployment-wide settings rows and health probes."""

from __future__ import annotations

from typing import Any

import asyncpg


async def get_setting(conn: asyncpg.Connection, key: str) -> Any:
    return await conn.fetchval("SELECT value FROM settings WHERE key = $1", key)


async def set_setting(conn: asyncpg.Connection, key: str, value: Any) -> None:
    await conn.execute(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        key, value,
    )


async def ping(conn: asyncpg.Connection) -> None:
    await conn.fetchval("SELECT 1")
