"""Availability reads on a real streaming replica: a primary and a standby cloned from it
with pg_basebackup, both started here. Reads go to the replica while it keeps up, to the
primary when it lags beyond the bound or is down, and back when it recovers; the answer
is always the primary's current truth once the replica is out of use."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from engine.config import Settings
from engine.embedded import EmbeddedPostgres, EmbeddedStandby
from tests.conftest import ADMIN_KEY, fresh_database
from tests.helpers import ADMIN, build_network, receive

DB = "omniroute_replica"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedPostgres, EmbeddedStandby]]:
    primary = EmbeddedPostgres(tmp_path_factory.mktemp("primary"))
    primary.start()
    standby = EmbeddedStandby(tmp_path_factory.mktemp("standby"), primary.port)
    try:
        standby.start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()


async def until(predicate, what: str, limit_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


async def replayed(standby: EmbeddedStandby, on_hand: int) -> None:
    """Wait until the replica has replayed SKU-A's stock reaching `on_hand`: within the lag
    bound a replica may answer a little behind the primary, which is the deal."""
    conn = await asyncpg.connect(standby.url(DB))
    try:
        sql = "SELECT coalesce(sum(on_hand), 0) FROM stock_positions WHERE sku = 'SKU-A'"
        for _ in range(300):
            if await conn.fetchval(sql) == on_hand:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the replica never replayed on_hand {on_hand}")
    finally:
        await conn.close()


async def on_hand_seen(client: AsyncTestClient) -> int:
    r = await client.get("/v1/availability", params={"sku": "SKU-A"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["items"][0]["ship_available"]


async def test_reads_use_the_replica_and_fall_back_when_it_lags_or_dies(servers):
    primary, standby = servers
    async with fresh_database(primary.url(), DB) as url:
        await follow_the_replica(url, standby)


async def follow_the_replica(url: str, standby: EmbeddedStandby) -> None:
    settings = Settings.from_env(
        {
            "OMNIROUTE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "OMNIROUTE_SCHEDULER": "off",
            "OMNIROUTE_READ_DATABASE_URL": standby.url(DB),
            "OMNIROUTE_READ_MAX_LAG_SECONDS": "0.5",
            # Where reads that reach a database go: the availability view, which would answer
            # a repeated read from memory, is off (its replica rule: test_availability_view).
            "OMNIROUTE_AVAILABILITY_CACHE_SKUS": "0",
        }
    )
    app = create_app(url, settings)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        reads = app.state.reads
        await build_network(client)
        await receive(client, "SKU-A", "DC-NJ", 5)
        await until(lambda: reads.use_replica, "the replica is in use")
        await replayed(standby, 5)

        # Caught up: the replica answers, with what the primary holds.
        before = dict(reads.served)
        assert await on_hand_seen(client) == 5
        assert reads.served["replica"] == before["replica"] + 1 and reads.served["primary"] == before["primary"]
        ready = (await client.get("/readyz")).json()
        assert ready["status"] == "ready" and ready["read_replica"]["in_use"] is True

        # Replay paused: the replica falls behind the bound, reads go to the primary and
        # see the newest stock.
        replica = await asyncpg.connect(standby.url(DB))
        await replica.execute("SELECT pg_wal_replay_pause()")
        await receive(client, "SKU-A", "DC-NJ", 7)
        await until(lambda: not reads.use_replica, "the lagging replica is out of use")
        before = dict(reads.served)
        assert await on_hand_seen(client) == 12
        assert reads.served["primary"] == before["primary"] + 1
        assert await replica.fetchval("SELECT sum(on_hand) FROM stock_positions WHERE sku = 'SKU-A'") == 5
        assert (await client.get("/readyz")).json()["read_replica"]["in_use"] is False

        # Replay resumed: back on the replica, which now has everything.
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()
        await until(lambda: reads.use_replica, "the replica is back in use")
        await replayed(standby, 12)
        before = dict(reads.served)
        assert await on_hand_seen(client) == 12
        assert reads.served["replica"] == before["replica"] + 1

        # Replica down: every read is still answered (by the primary), none fails.
        standby.stop()
        for _ in range(20):
            assert await on_hand_seen(client) == 12
        await until(lambda: not reads.use_replica, "the stopped replica is out of use")
        await receive(client, "SKU-A", "DC-NJ", 1)
        assert await on_hand_seen(client) == 13

        # Replica up again: it catches up and serves reads again.
        standby.start()
        await until(lambda: reads.use_replica, "the restarted replica is back in use", limit_s=30)
        await replayed(standby, 13)
        before = dict(reads.served)
        assert await on_hand_seen(client) == 13
        assert reads.served["replica"] == before["replica"] + 1


async def test_without_a_replica_the_primary_serves_reads(client):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 3)
    reads = client.app.state.reads
    before = dict(reads.served)
    assert await on_hand_seen(client) == 3
    assert reads.served == {**before, "primary": before["primary"] + 1}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
