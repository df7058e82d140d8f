"""API keys: only SHA-256 digests are stored."""

from __future__ import annotations

import asyncpg

_COLS = "key_id, role, location_id, name, created_at, revoked_at"


async def insert_key(
    conn: asyncpg.Connection, *, key_id: str, key_hash: bytes, role: str, location_id: str | None, name: str | None
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO api_keys (key_id, key_hash, role, location_id, name) VALUES ($1, $2, $3, $4, $5)
            RETURNING {_COLS}""",
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


async def revoke(conn: asyncpg.Connection, key_id: str) -> asyncpg.Record | None:
    """Mark the key revoked (the first time counts); None if there is no such key."""
    return await conn.fetchrow(
        f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1 RETURNING {_COLS}", key_id
    )


async def list_keys(conn: asyncpg.Connection, *, after: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {_COLS} FROM api_keys WHERE ($1::text IS NULL OR key_id > $1) ORDER BY key_id LIMIT $2",
        after,
        limit,
    )
