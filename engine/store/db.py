"""Connection pool set-up and the retry rule for transient transaction failures."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

T = TypeVar("T")

# Errors that mean "this transaction lost a race; running it again is safe". A migration
# applied while the service runs can change what a cached prepared statement returns;
# asyncpg then drops its statement caches, but inside a transaction it cannot re-prepare
# on its own, so the whole transaction runs again.
RETRYABLE = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.InvalidCachedStatementError,
    asyncpg.exceptions.OutdatedSchemaCacheError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's default reset query (advisory unlock, CLOSE ALL, UNLISTEN,
    RESET ALL), which costs a round trip per request. Nothing here leaves session state:
    no SET, LISTEN or open cursors, and the one session advisory lock (scheduled jobs) is
    unlocked explicitly. asyncpg still ends any open transaction before reuse."""


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=60,
        reset=_keep_session,
    )


async def connect(url: str, *, command_timeout: float | None = None) -> asyncpg.Connection:
    conn = await asyncpg.connect(url, command_timeout=command_timeout)
    await _init_connection(conn)
    return conn


async def with_retry(fn: Callable[[], Awaitable[T]], *, attempts: int = 8) -> T:
    """Run `fn` (one whole transaction) again after a deadlock or serialization failure.

    Backs off with jitter so two losers do not collide again in lock step.
    """
    for attempt in range(attempts):
        try:
            return await fn()
        except RETRYABLE:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
    raise AssertionError("unreachable")
