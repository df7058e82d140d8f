"""WAL positions: where the primary is, and how far a streaming replica has replayed."""

from __future__ import annotations

import asyncpg


async def wal_position(conn: asyncpg.Connection) -> int:
    """The primary's current WAL write position, in bytes."""
    return await conn.fetchval("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")


async def replayed_position(conn: asyncpg.Connection) -> int | None:
    """How far a standby has replayed the WAL, in bytes; None if the server is not a standby."""
    return await conn.fetchval(
        "SELECT CASE WHEN pg_is_in_recovery() THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint END"
    )
