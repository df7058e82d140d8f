"""Where availability reads go: a streaming replica while it is up and close enough
behind, else the primary. Writes and reservations always use the primary.

A watcher samples the primary's WAL position and the replica's replay position every
`every_s` seconds (engine.core.replication) and stops sending reads to the replica when
it lags more than `max_lag_s`, does not answer, or is not a standby. A read that fails on
the replica with a connection error is answered by the primary at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from engine.core.replication import ReplicaLag
from engine.store import replication as store

log = logging.getLogger("omniroute.reads")
T = TypeVar("T")

# The replica is gone or cannot serve this read (a standby cancels queries that conflict
# with recovery as serialization failures); the primary answers instead.
REPLICA_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.SerializationError,
)


class Reads:
    def __init__(
        self,
        primary: asyncpg.Pool,
        replica: asyncpg.Pool | None = None,
        *,
        max_lag_s: float = 1.0,
        every_s: float = 0.2,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_s
        self.every_s = every_s
        self.lag_s: float | None = None
        self.use_replica = False
        self.served = {"replica": 0, "primary": 0}
        self._lag = ReplicaLag(window_s=max(4 * max_lag_s, 2.0))
        self._watcher: asyncio.Task | None = None
        self._state = ""

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`work` on a replica connection when the replica is usable, else (or if the
        replica fails under it) on a primary connection."""
        if self.use_replica and self.replica is not None:
            try:
                async with self.replica.acquire(timeout=self.max_lag_s) as conn:
                    result = await work(conn)
            except REPLICA_ERRORS as exc:
                self._set(False, f"read failed on the replica ({exc.__class__.__name__}: {exc})")
            else:
                self.served["replica"] += 1
                return result
        async with self.primary.acquire() as conn:
            result = await work(conn)
        self.served["primary"] += 1
        return result

    def start(self) -> None:
        if self.replica is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="omniroute-read-replica")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self.replica is not None:
            await self.replica.close()

    async def check(self) -> None:
        """One look at both servers: sample the primary, then ask the replica how far it is."""
        assert self.replica is not None
        try:
            async with asyncio.timeout(max(self.max_lag_s, 0.5)):
                async with self.primary.acquire() as conn:
                    self._lag.primary_at(time.monotonic(), await store.wal_position(conn))
        except (*REPLICA_ERRORS, asyncpg.PostgresError):
            return  # the primary's own trouble; /readyz reports it
        try:
            async with asyncio.timeout(max(self.max_lag_s, 0.5)):
                async with self.replica.acquire() as conn:
                    replayed = await store.replayed_position(conn)
        except (*REPLICA_ERRORS, asyncpg.PostgresError) as exc:
            self.lag_s = None
            self._set(False, f"replica unreachable ({exc.__class__.__name__})")
            return
        if replayed is None:
            self.lag_s = None
            self._set(False, "OMNIROUTE_READ_DATABASE_URL is not a standby (not in recovery)")
            return
        self.lag_s = self._lag.seconds(time.monotonic(), replayed)
        if self.lag_s > self.max_lag_s:
            self._set(False, f"replica {self.lag_s:.1f} s behind (bound {self.max_lag_s:g} s)")
        else:
            self._set(True, "replica in use")

    async def _watch(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.every_s)

    def _set(self, use: bool, why: str) -> None:
        self.use_replica = use
        if why != self._state:
            (log.info if use else log.warning)("availability reads: %s", why)
            self._state = why

    def status(self) -> dict:
        return {
            "configured": self.replica is not None,
            "in_use": self.use_replica,
            "lag_s": None if self.lag_s is None or self.lag_s == float("inf") else round(self.lag_s, 3),
            "max_lag_s": self.max_lag_s,
            "state": self._state or ("no replica configured" if self.replica is None else "starting"),
            "served": dict(self.served),
        }
