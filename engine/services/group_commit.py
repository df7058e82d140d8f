"""Group commit for reservations made without an Idempotency-Key.

Requests that arrive while earlier ones are at the database wait in a queue and go
together in the next statement: one round trip and one WAL flush for the whole group,
instead of one each. At low load a group is a single request, so nothing waits longer
than it would alone. At most `max_in_flight` groups are at the database at once.
"""

from __future__ import annotations

import asyncio
from collections import deque

import asyncpg

from engine.store import reservations as store
from engine.store.db import with_retry


class ReservationGroups:
    def __init__(self, pool: asyncpg.Pool, *, max_group: int = 64, max_in_flight: int = 4) -> None:
        self.pool = pool
        self.max_group = max_group
        self.max_in_flight = max_in_flight
        self._queue: deque[tuple[store.BatchItem, asyncio.Future]] = deque()
        self._in_flight = 0

    async def reserve(self, item: store.BatchItem) -> tuple | store.Shortage:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _send(self, items: list[store.BatchItem]) -> list:
        async with self.pool.acquire() as conn:
            return await store.reserve_batch(conn, items)

    async def _drain(self) -> None:
        # No await between the empty-queue check and the decrement: a request queued
        # meanwhile always finds a drainer running or a free slot to start one.
        try:
            while self._queue:
                group = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_group))]
                try:
                    results = await with_retry(lambda group=group: self._send([item for item, _ in group]))
                except BaseException as exc:  # noqa: BLE001 - every waiter must hear of it
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._in_flight -= 1
