"""PostgreSQL goes away under traffic and comes back: the service says so (readiness and
503 problems, never a 500), loses no write it acknowledged, and recovers by itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from bench.common import RawClient, Service
from bench.drill import omniroute_check
from engine.embedded import EmbeddedPostgres
from engine.services.setup import apply_migrations

pytestmark = pytest.mark.slow

JSON = "Content-Type: application/json\r\n"


@pytest.fixture
def own_server(tmp_path: Path):
    """A PostgreSQL server of this test's own, which it may stop and start."""
    pg = EmbeddedPostgres(tmp_path / "pg")
    pg.start()
    yield pg
    pg.stop()


async def _fresh_database(pg: EmbeddedPostgres) -> str:
    conn = await asyncpg.connect(pg.url())
    await conn.execute("CREATE DATABASE omniroute")
    await conn.close()
    await apply_migrations(pg.url("omniroute"))
    return pg.url("omniroute")


class Writers:
    """Clients booking one-unit receipts, each with its own Idempotency-Key, recording
    every answer (status, content type, body, when)."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.clients = clients
        self.answers: list[tuple[str, int, bytes, float]] = []
        self.in_flight: list[str] = []
        self.stop = asyncio.Event()

    @staticmethod
    def body(key: str) -> bytes:
        movement = {"sku": "SKU-1", "location_id": "DC-1", "kind": "receipt", "quantity": 1}
        return json.dumps({"movements": [movement], "reference": key}).encode()

    async def one(self) -> None:
        client = RawClient(self.port)
        while not self.stop.is_set():
            key = uuid.uuid4().hex
            try:
                status, answer = await client.request(
                    "POST", "/v1/stock/movements", self.body(key), f"Idempotency-Key: {key}\r\n{JSON}"
                )
            except (OSError, asyncio.IncompleteReadError):
                self.in_flight.append(key)
                await asyncio.sleep(0.05)
                continue
            self.answers.append((key, status, answer, time.monotonic()))
            if status != 201:
                await asyncio.sleep(0.05)  # a client backs off when told to retry later
        await client.close()

    def start(self) -> list[asyncio.Task]:
        return [asyncio.create_task(self.one()) for _ in range(self.clients)]


async def _get(port: int, target: str, key: str | None = None) -> tuple[int, bytes]:
    client = RawClient(port, key) if key else RawClient(port)
    try:
        return await client.request("GET", target)
    finally:
        await client.close()


async def _readiness(port: int) -> int:
    return (await _get(port, "/readyz"))[0]


async def _until_ready(port: int, want: int, within: float) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await _readiness(port) == want:
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {want} within {within} s")


async def _start(pg: EmbeddedPostgres, log: Path) -> tuple[str, Service, RawClient, str]:
    """A fresh database, the service on it, an admin client, and a checkout key never used."""
    url = await _fresh_database(pg)
    svc = await asyncio.to_thread(Service, url, log=log)
    admin = RawClient(svc.port)
    loc = {"kind": "warehouse", "name": "DC", "lat": 40.5, "lon": -74.4}
    assert (await admin.request("PUT", "/v1/locations/DC-1", json.dumps(loc).encode(), JSON))[0] == 201
    items = {"items": [{"sku": "SKU-1", "name": "one"}]}
    assert (await admin.request("POST", "/v1/items/bulk", json.dumps(items).encode(), JSON))[0] == 200
    status, answer = await admin.request("POST", "/v1/api-keys", json.dumps({"role": "checkout"}).encode(), JSON)
    assert status == 201
    return url, svc, admin, json.loads(answer)["key"]


async def _check_every_write_landed_once(url: str, svc: Service, admin: RawClient, writers: Writers) -> Counter:
    """The service lived through it, answered only 201 or a 503 problem, and every write,
    once a 503 is retried with its key, is booked exactly once. Returns the status counts."""
    assert svc.proc.poll() is None, "the service must recover without a restart of its own"
    statuses = Counter(status for _, status, _, _ in writers.answers)
    assert set(statuses) <= {201, 503}, statuses
    assert not writers.in_flight, "the service itself never dropped a connection"
    for _, status, answer, _ in writers.answers:
        if status == 503:
            problem = json.loads(answer)
            assert problem["status"] == 503 and problem["title"] == "Service unavailable", problem

    # A 503 may hide a commit whose answer was lost with the connection; asking again with
    # the key settles it, and every write lands exactly once.
    for key, status, _, _ in writers.answers:
        if status != 201:
            again, answer = await admin.request(
                "POST", "/v1/stock/movements", Writers.body(key), f"Idempotency-Key: {key}\r\n{JSON}"
            )
            assert again == 201, answer
    status, answer = await admin.request("GET", "/v1/stock?sku=SKU-1&location_id=DC-1")
    assert status == 200
    assert json.loads(answer)[0]["on_hand"] == len(writers.answers)
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT reference, count(*) AS n FROM stock_movements GROUP BY reference")
    finally:
        await conn.close()
    assert {r["reference"] for r in rows} == {key for key, *_ in writers.answers}
    assert all(r["n"] == 1 for r in rows)
    assert await asyncio.to_thread(omniroute_check, url) == 0
    return statuses


async def test_service_rides_out_a_postgresql_crash_and_restart_under_traffic(own_server, tmp_path):
    url, svc, admin, unseen_key = await _start(own_server, tmp_path / "serve.log")
    try:
        writers = Writers(svc.port, clients=8)
        tasks = writers.start()
        await asyncio.sleep(1.5)
        # A crash, not a polite shutdown: sessions are cut mid-transaction, and the next
        # start replays the WAL.
        await asyncio.to_thread(own_server.stop, "immediate")
        stopped = time.monotonic()
        await _until_ready(svc.port, 503, within=10)
        await asyncio.sleep(1.5)  # traffic against a database that is not there
        # Even the key lookup needs the database: that too is a 503, not a 401 or a 500.
        status, answer = await _get(svc.port, "/v1/stock?sku=SKU-1", unseen_key)
        assert status == 503 and json.loads(answer)["title"] == "Service unavailable", answer
        starting = time.monotonic()
        await asyncio.to_thread(own_server.start)
        up = await _until_ready(svc.port, 200, within=30)
        await asyncio.sleep(1.5)
        writers.stop.set()
        await asyncio.gather(*tasks)

        assert not any(status == 201 and stopped < at < starting for _, status, _, at in writers.answers)
        assert any(status == 201 and at > up for _, status, _, at in writers.answers), "writes work again"
        statuses = await _check_every_write_landed_once(url, svc, admin, writers)
        assert statuses[503] > 0, statuses
    finally:
        await admin.close()
        await asyncio.to_thread(svc.stop)


async def test_service_rides_out_a_crashed_postgresql_server_process(own_server, tmp_path):
    # One server process dies (a segfault, the OOM killer): PostgreSQL ends every session,
    # telling them so, and recovers; the service's connections all break at once.
    url, svc, admin, _ = await _start(own_server, tmp_path / "serve.log")
    try:
        writers = Writers(svc.port, clients=8)
        tasks = writers.start()
        await asyncio.sleep(1.5)
        conn = await asyncpg.connect(url)
        try:
            pids = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        os.kill(pids[0]["pid"], signal.SIGKILL)
        await asyncio.sleep(0.5)
        up = await _until_ready(svc.port, 200, within=30)
        await asyncio.sleep(1.5)
        writers.stop.set()
        await asyncio.gather(*tasks)

        assert any(status == 201 and at > up for _, status, _, at in writers.answers), "writes work again"
        statuses = await _check_every_write_landed_once(url, svc, admin, writers)
        assert statuses[503] > 0, statuses  # the broken sessions were noticed, and said so
    finally:
        await admin.close()
        await asyncio.to_thread(svc.stop)
