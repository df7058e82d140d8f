import asyncio

import asyncpg
import pytest

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
