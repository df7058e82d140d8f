"""Scheduled jobs, each run by one process at a time across every instance."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from engine.config import Settings
from engine.core.routing import CostModel
from engine.errors import Conflict
from engine.services import rebalancing, routing_runs
from engine.store import events as events_store
from engine.store import idempotency as idem_store
from engine.store import meta

log = logging.getLogger("omniroute.jobs")

# Advisory lock keys, one per job (the migration lock is 0x6F6D6E69; runs take 0x6F6D0003
# and 0x6F6D0004, engine.services.runs.LOCKS).
LOCKS = {
    "expire-reservations": 0x6F6D0001,
    "purge-idempotency": 0x6F6D0002,
    "purge-events": 0x6F6D0005,
    "publish-events": 0x6F6D0006,  # held for as long as a process publishes the change feed
}
PURGE_EVENTS_BATCH = 10_000


async def run_exclusively(pool: asyncpg.Pool, name: str, job: Callable[[asyncpg.Pool], Awaitable[int]]) -> bool:
    """Run `job` unless another process runs the same job right now (PostgreSQL advisory
    lock, released if this process dies). Returns whether it ran."""
    async with pool.acquire() as conn:
        if not await meta.try_lock(conn, LOCKS[name]):
            return False
        try:
            started = time.perf_counter()
            count = await job(pool)
            if count:
                log.info(
                    "%s: %d",
                    name,
                    count,
                    extra={
                        "fields": {"job": name, "count": count, "ms": round((time.perf_counter() - started) * 1000, 1)}
                    },
                )
        finally:
            await meta.unlock(conn, LOCKS[name])
    return True


async def routing_run(pool: asyncpg.Pool, settings: Settings, costs: CostModel) -> None:
    """The scheduled routing run; skipped when one is already under way anywhere."""
    try:
        run_id = await routing_runs.run_now(
            pool, "scheduler", routing_runs.RunOptions(time_limit_s=settings.routing_run_seconds), costs
        )
    except Conflict:
        log.info("routing run skipped: one is already under way")
        return
    log.info("routing run %s finished", run_id, extra={"fields": {"job": "routing-run", "run_id": str(run_id)}})


async def rebalancing_run(pool: asyncpg.Pool) -> None:
    """The scheduled (nightly) rebalancing run: proposals only; a planner applies them."""
    try:
        run_id = await rebalancing.run_now(pool, "scheduler", rebalancing.RunOptions())
    except Conflict:
        log.info("rebalancing run skipped: one is already under way")
        return
    log.info("rebalancing run %s finished", run_id, extra={"fields": {"job": "rebalancing-run", "run_id": str(run_id)}})


def purge_idempotency(hours: float) -> Callable[[asyncpg.Pool], Awaitable[int]]:
    async def job(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            return await idem_store.purge(conn, hours)

    return job


def purge_events(hours: float, batch: int = PURGE_EVENTS_BATCH) -> Callable[[asyncpg.Pool], Awaitable[int]]:
    """Delete events published more than `hours` ago, oldest first, `batch` per transaction.
    A consumer whose cursor falls behind what is left gets 410 and resyncs."""

    async def job(pool: asyncpg.Pool) -> int:
        total = 0
        while True:
            async with pool.acquire() as conn:
                deleted = await events_store.purge(conn, hours=hours, limit=batch)
            total += deleted
            if deleted < batch:
                return total

    return job
