"""Stored first answers for Idempotency-Key retries."""

from __future__ import annotations

import asyncpg


async def claim(conn: asyncpg.Connection, owner: str, key: str, operation: str, request_hash: bytes) -> bool:
    """Claim (owner, key) inside the caller's transaction; False if it was already used.

    A concurrent claim of the same key waits here until the first transaction ends, then
    sees its committed row (or claims the key itself if the first one rolled back).
    """
    row = await conn.fetchval(
        """INSERT INTO idempotency_keys (owner, idem_key, operation, request_hash)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
        owner,
        key,
        operation,
        request_hash,
    )
    return bool(row)


async def stored(conn: asyncpg.Connection, owner: str, key: str) -> asyncpg.Record:
    return await conn.fetchrow(
        """SELECT operation, request_hash, status_code, response FROM idempotency_keys
           WHERE owner = $1 AND idem_key = $2""",
        owner,
        key,
    )


async def finish(conn: asyncpg.Connection, owner: str, key: str, status_code: int, response: bytes) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE owner = $1 AND idem_key = $2",
        owner,
        key,
        status_code,
        response,
    )


async def purge(conn: asyncpg.Connection, older_than_hours: float) -> int:
    status = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1 * 3600)",
        older_than_hours,
    )
    return int(status.split()[-1])
