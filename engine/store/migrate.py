"""Apply numbered plain-SQL migrations: each once, in its own transaction, with a checksum.

Two processes starting at once serialize on a PostgreSQL advisory lock, so each file runs
exactly once. An already-applied file whose checksum changed is refused: edit history by
adding a new migration, never by rewriting an old one. Files can be applied while the
service runs: no statement waits long for a table lock (see `_apply`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
from pathlib import Path

import asyncpg

from engine.config import MIGRATIONS_DIR

MIGRATION_LOCK = 0x6F6D6E69  # "omni"
# Longest a migration statement waits for a table lock (requests queue behind it
# meanwhile). Shorter than PostgreSQL's deadlock_timeout (1 s), so in a lock cycle with
# a writer the migration steps back before the deadlock detector makes it the victim.
LOCK_TIMEOUT = "200ms"
LOCK_ATTEMPTS = 100
log = logging.getLogger("omniroute.migrate")
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


def discover(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, str, str]]:
    """(version, name, sql, sha256) for each migration file, in version order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        sql = path.read_text()
        found.append((int(m.group(1)), path.name, sql, hashlib.sha256(sql.encode()).hexdigest()))
    versions = [v for v, *_ in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    files = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
        done: list[str] = []
        for version, name, sql, checksum in files:
            row = applied.get(version)
            if row is not None:
                if row["checksum"] != checksum:
                    raise MigrationError(
                        f"migration {name} was changed after it was applied "
                        f"(checksum {row['checksum'][:12]} recorded, {checksum[:12]} on disk); "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            await _apply(conn, version, name, sql, checksum)
            done.append(name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def _apply(conn: asyncpg.Connection, version: int, name: str, sql: str, checksum: str) -> None:
    """One file in one transaction, retried whole when it loses a lock race.

    Under traffic, DDL takes its table locks in the file's order while writers take theirs
    in another, so the two can deadlock; and a statement queued for an exclusive lock makes
    every later reader and writer of that table queue behind it. So each lock is waited
    for at most LOCK_TIMEOUT, and a timeout (or a deadlock) rolls the file back and tries
    again after a short pause, during which the service's requests go through.
    """
    for attempt in range(LOCK_ATTEMPTS):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    version,
                    name,
                    checksum,
                )
            return
        except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError) as exc:
            if attempt == LOCK_ATTEMPTS - 1:
                raise MigrationError(f"migration {name} could not take its locks in {LOCK_ATTEMPTS} attempts") from exc
            log.info("migration %s waited too long for a lock (%s); trying again", name, type(exc).__name__)
            await asyncio.sleep(random.uniform(0.05, 0.3))


async def pending(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Names of migrations not yet applied (readiness check)."""
    files = discover(directory)
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return [name for _, name, _, _ in files]
    applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [name for v, name, _, _ in files if v not in applied]
