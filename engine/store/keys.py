"""API keys: only SHA-256 digests are stored."""

from __future__ import annotations

import asyncpg


async def insert_key(
    conn: asyncpg.Connection, *, key_id: str, key_hash: bytes, role: str, location_id: str | None, name: str | None
) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO api_keys (key_id, key_hash, role, location_id, name) VALUES ($1, $2, $3, $4, $5)
           RETURNING key_id, role, location_id, name, created_at""",
        key_id,
        key_hash,
        role,
        location_id,
        name,
    )


async def find_by_hash(conn: asyncpg.Connection, key_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT key_id, role, location_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash
    )
