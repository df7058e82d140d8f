"""Migrations while the service runs: instances starting at once migrate once, and a
migration applied under write traffic loses no write and fails none."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import asyncpg
import pytest

from bench import drill
from bench.common import Service
from engine.config import MIGRATIONS_DIR
from engine.store.db import connect
from engine.store.migrate import discover, migrate

pytestmark = pytest.mark.slow

# A change a later release could make to a hot table while checkout writes to it: a new
# nullable column, an index, and a widened column type (which changes what cached
# statements read inside transactions return). One table: a file holds each lock it takes
# until it commits, so a file that locks two tables writers use in differing orders can
# be shut out for as long as the traffic lasts (see the README).
EXTRA = "0007_under_load.sql"
EXTRA_SQL = """
ALTER TABLE reservations ADD COLUMN channel text;
CREATE INDEX reservations_by_reference ON reservations (reference);
ALTER TABLE reservations ALTER COLUMN reference TYPE varchar(200);
"""


@pytest.fixture
async def fresh(server_url):
    db = drill.Database(server_url)
    yield db
    await db.drop()


def _migrate_cli(url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "migrate"],
        env={**env, "OMNIROUTE_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_two_migrate_commands_at_once_apply_each_file_once(fresh):
    url = await fresh.create(migrated=False)
    procs = [_migrate_cli(url), _migrate_cli(url)]
    outputs = []
    for proc in procs:
        out, _ = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, out
        outputs.append(out.strip().splitlines()[-1])
    names = [name for _, name, _, _ in discover()]
    assert sorted(outputs) == sorted(["applied: " + ", ".join(names), "applied: nothing (up to date)"]), outputs


async def test_two_instances_starting_at_once_on_a_fresh_database_both_serve(fresh, tmp_path):
    url = await fresh.create(migrated=False)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    services = await asyncio.gather(*(asyncio.to_thread(Service, url, log=log) for log in logs))
    try:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        assert [(r["version"], r["name"]) for r in rows] == [(v, n) for v, n, _, _ in discover()]
    finally:
        for svc in services:
            await asyncio.to_thread(svc.stop)
    for log in logs:
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


async def test_a_migration_applied_under_write_traffic_loses_no_write(fresh, tmp_path):
    url = await fresh.create()
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / EXTRA).write_text(EXTRA_SQL)
    applied: list[str] = []

    async def apply_extra() -> None:
        conn = await connect(url)
        try:
            applied.extend(await migrate(conn, directory))
        finally:
            await conn.close()

    report = await drill.run(url, cycles=0, clients=8, seconds=2.0, during=apply_extra, log=tmp_path / "serve.log")
    shown = drill.summary(report) + "\n" + "\n".join(report.problems[:20])
    assert applied == [EXTRA]
    assert report.errors == 0, shown  # no write failed (a 5xx) around the migration
    assert report.lost == 0 and report.half_written == 0 and report.double_effects == 0, shown
    assert report.in_flight == 0 and report.inconsistent_replays == 0, shown
    assert report.drift == 0 and report.over_reserved == 0 and report.holds_mismatch == 0, shown
    assert report.acknowledged >= 100, shown
