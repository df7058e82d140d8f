"""Test database: OMNIROUTE_TEST_DATABASE_URL when set, else an embedded PostgreSQL.

Either way the run gets a database of its own (created here, dropped at the end), migrated
once. Integration and end-to-end tests start from empty tables.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from engine.config import Settings
from engine.embedded import EmbeddedPostgres
from engine.store.db import create_pool
from engine.store.migrate import migrate

ADMIN_KEY = "test-admin-" + secrets.token_hex(8)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("OMNIROUTE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    pg.start()
    try:
        yield pg.url("postgres")
    finally:
        pg.stop()


@asynccontextmanager
async def fresh_database(server_url: str, name: str) -> AsyncIterator[str]:
    """A new, migrated database `name` on the server (its URL), dropped afterwards."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = _with_database(server_url, name)
        conn = await asyncpg.connect(url)
        await migrate(conn)
        await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url, f"omniroute_test_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, min_size=2, max_size=40)
    yield p
    await p.close()


TABLES = [
    "routing_runs",
    "rebalancing_proposals",
    "transfers",
    "rebalancing_runs",
    "demand",
    "fulfillments",
    "orders",
    "reservation_lines",
    "reservations",
    "events",
    "idempotency_keys",
    "api_keys",
    "stock_movements",
    "stock_positions",
    "items",
    "locations",
    "settings",
]


@pytest.fixture
async def db(pool: asyncpg.Pool) -> asyncpg.Pool:
    """An empty database (schema kept)."""
    async with pool.acquire() as conn:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    return pool


@pytest.fixture(scope="session")
async def app_client(database_url: str) -> AsyncIterator[AsyncTestClient]:
    # No scheduler: tests run the expiry sweep themselves, so "before the sweep" is certain.
    settings = Settings.from_env(
        {"OMNIROUTE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "OMNIROUTE_POOL_MAX": "40", "OMNIROUTE_SCHEDULER": "off"}
    )
    app = create_app(database_url, settings)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
async def client(app_client: AsyncTestClient, db: asyncpg.Pool) -> AsyncTestClient:
    """HTTP client over an empty database, authenticated as admin by default."""
    app_client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    # `db` emptied the tables behind the service (TRUNCATE writes no events): forget them.
    app_client.app.state.availability.invalidate_sites()
    return app_client
