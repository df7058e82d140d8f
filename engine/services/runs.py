"""Planner runs: one of each kind at a time across every process, in the background.

A run holds a PostgreSQL advisory lock on its own connection from start to finish, so a
second trigger anywhere is refused with the running run's id, and a run whose process died
(lock gone, row still 'running') is marked interrupted by the next one. The work itself
runs as an asyncio task; solving goes to a worker process so checkout traffic on this
process's event loop and GIL is not held up.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from uuid import UUID, uuid4

import asyncpg
import msgspec

from engine.errors import Conflict
from engine.store import meta
from engine.store import runs as store

log = logging.getLogger("omniroute.runs")

LOCKS = {"routing": 0x6F6D0003, "rebalancing": 0x6F6D0004}
_tasks: set[asyncio.Task] = set()
_solver: ProcessPoolExecutor | None = None


def solver_processes() -> int:
    """Solver processes: one per CPU this process may use (at most 8)."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def solver() -> ProcessPoolExecutor:
    """The worker processes for run solves, started on first use (spawned: no inherited
    event loop or sockets). A routing run uses one; a rebalancing run plans SKU ranges on
    all of them at once. Each exits by itself if this process dies without stopping it."""
    global _solver
    if _solver is None:
        _solver = ProcessPoolExecutor(
            max_workers=solver_processes(),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
    return _solver


def _exit_with_parent(parent: int) -> None:
    """In the solver process: end it once `parent` is gone (killed, say, with SIGKILL, so
    no shutdown code ran), instead of solving on for minutes for nobody."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _stop_solver(executor: ProcessPoolExecutor) -> None:
    """Stop the solver process now, even in the middle of a solve: whatever it solves
    belongs to a run that has just been cancelled. (shutdown() alone would wait for the
    solve to finish, keeping this process alive or leaving the solver behind it.)"""
    terminate = getattr(executor, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((executor._processes or {}).values()):  # no public way before 3.14
        process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)


async def solve(fn, *args, **kwargs):  # noqa: ANN001, ANN202 - a process-pool hop
    return await asyncio.get_running_loop().run_in_executor(solver(), partial(fn, *args, **kwargs))


class RunRecord(msgspec.Struct, kw_only=True):
    """What every run shows: its state, who started it, its options and its summary."""

    run_id: UUID
    status: str
    phase: str
    triggered_by: str
    options: dict
    summary: dict | None
    error: str | None
    started_at: str
    finished_at: str | None


def record_fields(row: asyncpg.Record) -> dict:
    """The RunRecord fields of a run row (times as ISO 8601)."""
    return {
        "run_id": row["run_id"],
        "status": row["status"],
        "phase": row["phase"],
        "triggered_by": row["triggered_by"],
        "options": row["options"],
        "summary": row["summary"],
        "error": row["error"],
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


class Run:
    """A started run: its id and the connection holding its lock."""

    def __init__(self, kind: str, run_id: UUID, conn: asyncpg.Connection) -> None:
        self.kind = kind
        self.run_id = run_id
        self.conn = conn

    async def phase(self, phase: str) -> None:
        await store.set_phase(self.conn, self.kind, self.run_id, phase)


async def start(pool: asyncpg.Pool, kind: str, triggered_by: str, options: dict, *, status: str = "running") -> Run:
    """Take the run lock and record a new run; Conflict (with the running run's id) if a
    run of this kind is under way in any process."""
    conn = await pool.acquire()
    try:
        if not await meta.try_lock(conn, LOCKS[kind]):
            other = await store.running(conn, kind)
            raise Conflict(
                f"a {kind} run is already under way", **({"run_id": str(other)} if other is not None else {})
            )
        try:
            await store.fail_interrupted(conn, kind)
            run_id = uuid4()
            await store.create(conn, kind, run_id, triggered_by, options)
        except BaseException:
            await meta.unlock(conn, LOCKS[kind])
            raise
    except BaseException:
        await pool.release(conn)
        raise
    return Run(kind, run_id, conn)


async def finish(pool: asyncpg.Pool, run: Run) -> None:
    try:
        await meta.unlock(run.conn, LOCKS[run.kind])
    finally:
        await pool.release(run.conn)


def in_background(
    pool: asyncpg.Pool, run: Run, work: Callable[[Run], Awaitable[None]], *, failed_status: str = "failed"
) -> asyncio.Task:
    """Run `work` as a task; a failure or cancellation puts the run in `failed_status` with
    the reason. The lock is released when it ends either way."""

    async def body() -> None:
        try:
            await work(run)
        except asyncio.CancelledError:
            await _record_failure(run, failed_status, "interrupted: the service stopped")
            raise
        except Exception as exc:
            log.exception("%s run %s failed", run.kind, run.run_id)
            await _record_failure(run, failed_status, f"{type(exc).__name__}: {exc}")
        finally:
            await asyncio.shield(finish(pool, run))

    task = asyncio.get_running_loop().create_task(body(), name=f"{run.kind}-run-{run.run_id}")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def _record_failure(run: Run, status: str, reason: str) -> None:
    try:
        await asyncio.shield(store.fail(run.conn, run.kind, run.run_id, status=status, error=reason))
    except Exception:  # the connection may be gone; the next run marks this one interrupted
        log.exception("could not record the failure of %s run %s", run.kind, run.run_id)


async def stop_all() -> None:
    """Cancel runs in progress (service shutdown) and stop the solver process."""
    global _solver
    for task in list(_tasks):
        task.cancel()
    if _tasks:
        await asyncio.gather(*_tasks, return_exceptions=True)
    if _solver is not None:
        executor, _solver = _solver, None
        await asyncio.to_thread(_stop_solver, executor)
