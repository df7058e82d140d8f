"""APScheduler set-up: reservation expiry every few seconds, idempotency purge hourly,
change-feed purge every ten minutes, routing runs every few minutes and the rebalancing run
nightly (both configurable)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from engine.config import Settings
from engine.core.routing import CostModel
from engine.services import jobs
from engine.services.reservations import sweep_expired


def start_scheduler(pool: asyncpg.Pool, settings: Settings, costs: CostModel) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    scheduler.add_job(
        jobs.run_exclusively,
        "interval",
        seconds=settings.expiry_sweep_seconds,
        args=[pool, "expire-reservations", sweep_expired],
        id="expire-reservations",
        next_run_time=datetime.now(UTC),
        **common,
    )
    scheduler.add_job(
        jobs.run_exclusively,
        "interval",
        hours=1,
        args=[pool, "purge-idempotency", jobs.purge_idempotency(settings.idempotency_hours)],
        id="purge-idempotency",
        next_run_time=datetime.now(UTC),
        **common,
    )
    scheduler.add_job(
        jobs.run_exclusively,
        "interval",
        minutes=10,
        args=[pool, "purge-events", jobs.purge_events(settings.events_retention_hours)],
        id="purge-events",
        next_run_time=datetime.now(UTC),
        **common,
    )
    if settings.routing_run_minutes > 0:
        scheduler.add_job(
            jobs.routing_run,
            "interval",
            minutes=settings.routing_run_minutes,
            args=[pool, settings, costs],
            id="routing-run",
            **common,
        )
    if settings.rebalancing_cron:
        scheduler.add_job(
            jobs.rebalancing_run,
            CronTrigger.from_crontab(settings.rebalancing_cron, timezone=UTC),
            args=[pool],
            id="rebalancing-run",
            **common,
        )
    scheduler.start()
    return scheduler
