import asyncio
import time

import asyncpg
import pytest

from engine.store import migrate as migrate_module
from engine.store.migrate import MigrationError, migrate, pending


@pytest.fixture
async def scratch(server_url):
    """A throwaway database for migration tests."""
    admin = await asyncpg.connect(server_url)
    await admin.execute("DROP DATABASE IF EXISTS omniroute_migrations_test WITH (FORCE)")
    await admin.execute("CREATE DATABASE omniroute_migrations_test")
    url = server_url.rsplit("/", 1)[0] + "/omniroute_migrations_test"
    yield url
    await admin.execute("DROP DATABASE omniroute_migrations_test WITH (FORCE)")
    await admin.close()


def _write(dirpath, name, sql):
    (dirpath / name).write_text(sql)


async def test_each_migration_is_applied_once(scratch, tmp_path):
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    _write(tmp_path, "0002_b.sql", "INSERT INTO a VALUES (1);")
    conn = await asyncpg.connect(scratch)
    assert await migrate(conn, tmp_path) == ["0001_a.sql", "0002_b.sql"]
    assert await migrate(conn, tmp_path) == []
    assert await conn.fetchval("SELECT count(*) FROM a") == 1
    assert await pending(conn, tmp_path) == []
    await conn.close()


async def test_an_edited_applied_migration_is_refused(scratch, tmp_path):
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    conn = await asyncpg.connect(scratch)
    await migrate(conn, tmp_path)
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(conn, tmp_path)
    await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(scratch, tmp_path):
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int); SELECT 1/0;")
    conn = await asyncpg.connect(scratch)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(conn, tmp_path)
    assert await conn.fetchval("SELECT to_regclass('a')") is None
    assert await pending(conn, tmp_path) == ["0001_a.sql"]
    await conn.close()


async def test_processes_migrating_at_once_apply_each_file_once(scratch, tmp_path):
    # The second file is not idempotent: run twice it would insert twice.
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int); SELECT pg_sleep(0.2);")
    _write(tmp_path, "0002_b.sql", "INSERT INTO a VALUES (1);")
    conns = [await asyncpg.connect(scratch) for _ in range(4)]
    results = await asyncio.gather(*(migrate(c, tmp_path) for c in conns))
    assert sorted(len(r) for r in results) == [0, 0, 0, 2]
    assert await conns[0].fetchval("SELECT count(*) FROM a") == 1
    for c in conns:
        await c.close()


async def test_the_project_migrations_apply_to_an_empty_database(scratch):
    conn = await asyncpg.connect(scratch)
    applied = await migrate(conn)
    assert applied and applied[0].startswith("0001_")
    assert await pending(conn) == []
    await conn.close()


async def test_a_migration_waiting_for_a_lock_never_holds_writers_up_for_long(scratch, tmp_path):
    # A long transaction holds the table; the migration needs it exclusively. Queued for
    # the lock, it would stall every later writer until that transaction ends; it waits
    # at most LOCK_TIMEOUT at a time instead, and steps back in between.
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    setup = await asyncpg.connect(scratch)
    await migrate(setup, tmp_path)
    _write(tmp_path, "0002_b.sql", "ALTER TABLE a ADD COLUMN y int;")
    long_tx, migrator, writer = [await asyncpg.connect(scratch) for _ in range(3)]

    async def hold(seconds: float) -> None:
        async with long_tx.transaction():
            await long_tx.execute("INSERT INTO a VALUES (0)")
            await asyncio.sleep(seconds)

    holding = asyncio.create_task(hold(2.0))
    await asyncio.sleep(0.1)
    migrating = asyncio.create_task(migrate(migrator, tmp_path))
    slowest = 0.0
    while not holding.done():
        started = time.perf_counter()
        await writer.execute("INSERT INTO a VALUES (1)")
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(0.01)
    assert await migrating == ["0002_b.sql"]
    assert slowest < 1.0, f"a writer waited {slowest:.2f} s behind the migration"
    for c in (setup, long_tx, migrator, writer):
        await c.close()


async def test_a_migration_that_never_gets_its_lock_gives_up_with_nothing_applied(scratch, tmp_path, monkeypatch):
    monkeypatch.setattr(migrate_module, "LOCK_ATTEMPTS", 3)
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    setup = await asyncpg.connect(scratch)
    await migrate(setup, tmp_path)
    _write(tmp_path, "0002_b.sql", "ALTER TABLE a ADD COLUMN y int;")
    blocker = await asyncpg.connect(scratch)
    async with blocker.transaction():
        await blocker.execute("LOCK TABLE a IN ACCESS SHARE MODE")
        with pytest.raises(MigrationError, match="could not take its locks"):
            await migrate(setup, tmp_path)
    assert await pending(setup, tmp_path) == ["0002_b.sql"]
    assert await setup.fetchval("SELECT count(*) FROM information_schema.columns WHERE table_name = 'a'") == 1
    for c in (setup, blocker):
        await c.close()
