"""The change feed over real HTTP: server-sent events from `omniroute serve` processes on the
test database, resumed with Last-Event-ID, across processes, and ended by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, fresh_database
from tests.helpers import ADMIN, NETWORK, SKUS
from tests.processes import descendants

pytestmark = pytest.mark.slow

SSE = {**ADMIN, "Accept": "text/event-stream"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`omniroute serve` on the test database (no embedded server, no demo data)."""

    def __init__(self, database_url: str, log_dir: Path, workers: int = 1) -> None:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
        env |= {
            "OMNIROUTE_DATABASE_URL": database_url,
            "OMNIROUTE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "OMNIROUTE_SCHEDULER": "off",
            "OMNIROUTE_EVENTS_KEEPALIVE_SECONDS": "1",
        }
        self.log = log_dir / f"serve-{port}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(workers)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{port}"

    async def ready(self, client: httpx.AsyncClient, limit_s: float = 60) -> Service:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if (await client.get(self.base + "/readyz", timeout=1)).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError("service not ready:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class Frames:
    """Reads an SSE response: each message as a dict of its fields (`id`, `event`, `data`,
    `retry`, and `comment` for comment lines)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, limit_s: float = 10) -> dict[str, str]:
        message: dict[str, str] = {}
        async with asyncio.timeout(limit_s):
            async for line in self.lines:
                if line == "":
                    if message:
                        return message
                    continue
                name, _, value = line.partition(":")
                message[name or "comment"] = value[1:] if value.startswith(" ") else value
        raise EOFError(message)

    async def events(self, count: int, limit_s: float = 10) -> list[dict]:
        """The next `count` events (messages with data), skipping keep-alives."""
        got = []
        while len(got) < count:
            message = await self.next(limit_s)
            if "data" in message:
                assert message["event"] == json.loads(message["data"])["kind"]
                assert int(message["id"]) == json.loads(message["data"])["seq"]
                got.append(message)
        return got


async def _setup(client: httpx.AsyncClient, base: str) -> None:
    for loc_id, body in NETWORK.items():
        r = await client.put(f"{base}/v1/locations/{loc_id}", json=body, headers=ADMIN)
        assert r.status_code in (200, 201), r.text
    items = {"items": [{"sku": s, "name": s} for s in SKUS]}
    assert (await client.post(f"{base}/v1/items/bulk", json=items, headers=ADMIN)).status_code == 200


async def _receipt(client: httpx.AsyncClient, base: str, quantity: int) -> None:
    body = {"movements": [{"sku": "SKU-A", "location_id": "DC-NJ", "kind": "receipt", "quantity": quantity}]}
    r = await client.post(f"{base}/v1/stock/movements", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text


async def test_a_consumer_resumes_with_last_event_id_without_loss_or_repeat_across_processes(
    db, database_url, tmp_path
):
    async with httpx.AsyncClient(timeout=30) as client:
        a = Service(database_url, tmp_path)
        b = Service(database_url, tmp_path)
        try:
            await a.ready(client)
            await b.ready(client)
            await _setup(client, a.base)

            # Connect to B; write through A: whichever process publishes, B's stream hears it.
            async with client.stream("GET", b.base + "/v1/events", headers=SSE) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                frames = Frames(r)
                first = await frames.next()
                assert first["retry"] == "1000" and int(first["id"]) >= 0
                start = int(first["id"])
                for q in range(1, 11):
                    await _receipt(client, a.base, q)
                before = await frames.events(10)
            assert [json.loads(m["data"])["payload"]["delta_on_hand"] for m in before] == list(range(1, 11))

            # Disconnected: ten more changes happen meanwhile.
            for q in range(11, 21):
                await _receipt(client, a.base, q)
            # Reconnect as an EventSource does: the URL it first opened (here with `after` at the
            # start) plus Last-Event-ID, which wins.
            headers = {**SSE, "Last-Event-ID": before[-1]["id"]}
            async with client.stream("GET", a.base + "/v1/events", params={"after": start}, headers=headers) as r:
                frames = Frames(r)
                assert (await frames.next())["id"] == before[-1]["id"]
                after = await frames.events(10)
                # Then nothing more: a keep-alive comes (every second here), not an event.
                idle = await frames.next(limit_s=5)
                assert "data" not in idle and idle.get("comment") == "keep-alive"
            assert [json.loads(m["data"])["payload"]["delta_on_hand"] for m in after] == list(range(11, 21))

            seqs = [int(m["id"]) for m in before + after]
            async with db.acquire() as conn:
                table = [r[0] for r in await conn.fetch("SELECT seq FROM events WHERE seq > $1 ORDER BY seq", start)]
            assert seqs == table
        finally:
            a.stop()
            b.stop()


async def test_sigterm_ends_open_streams_and_the_server_stops_promptly(db, database_url, tmp_path):
    async with httpx.AsyncClient(timeout=30) as client:
        svc = Service(database_url, tmp_path)
        try:
            await svc.ready(client)
            async with client.stream("GET", svc.base + "/v1/events", headers=SSE) as r:
                frames = Frames(r)
                await frames.next()
                began = time.monotonic()
                svc.proc.send_signal(signal.SIGTERM)
                with pytest.raises(EOFError):  # the stream ends cleanly: no more frames, no error
                    while True:
                        await frames.next(limit_s=10)
                code = await asyncio.to_thread(svc.proc.wait, 20)
            # The graceful-shutdown timeout is 30 s: the stream did not hold it up.
            assert code == 0 and time.monotonic() - began < 10, svc.log.read_text()
        finally:
            svc.stop()


async def test_with_two_workers_the_supervisor_publishes_and_streams_on_both_workers_hear_it(server_url, tmp_path):
    """`serve --workers 2`: the publisher runs in the supervisor (it logs its pid), and
    streams, whichever worker holds them, get every event once and in order. A database of
    its own, so that no other process (this test process's app) stands in the election."""
    async with (
        fresh_database(server_url, f"omniroute_feed_workers_{os.getpid()}") as url,
        httpx.AsyncClient(timeout=30) as client,
    ):
        svc = Service(url, tmp_path, workers=2)
        try:
            await svc.ready(client)
            await _setup(client, svc.base)
            async with contextlib.AsyncExitStack() as stack:
                frames = []
                for _ in range(6):  # the shared socket spreads connections unevenly: open several
                    r = await stack.enter_async_context(client.stream("GET", svc.base + "/v1/events", headers=SSE))
                    assert r.status_code == 200
                    frames.append(Frames(r))
                    await frames[-1].next()
                for q in range(1, 11):
                    await _receipt(client, svc.base, q)
                for f in frames:
                    got = await f.events(10)
                    assert [json.loads(m["data"])["payload"]["delta_on_hand"] for m in got] == list(range(1, 11))
            assert _publisher_pids(svc.log) == [svc.proc.pid], svc.log.read_text()[-3000:]
        finally:
            svc.stop()
        assert svc.proc.returncode == 0, svc.log.read_text()[-3000:]
        assert '"level":"error"' not in svc.log.read_text()


def _publisher_pids(log: Path) -> list[int]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [e["pid"] for e in entries if e["msg"] == "this process publishes the change feed"]


async def test_when_the_supervisor_dies_a_worker_takes_over_publishing(server_url, tmp_path):
    """Workers outlive a supervisor killed with SIGKILL (nothing of it runs to stop them);
    they stay publisher candidates, so one of them publishes and streams go on."""
    async with (
        fresh_database(server_url, f"omniroute_feed_orphans_{os.getpid()}") as url,
        httpx.AsyncClient(timeout=30) as client,
    ):
        svc = Service(url, tmp_path, workers=2)
        workers: set[int] = set()
        try:
            await svc.ready(client)
            await _setup(client, svc.base)
            workers = descendants(svc.proc.pid)
            assert _publisher_pids(svc.log) == [svc.proc.pid]
            svc.proc.kill()
            svc.proc.wait(10)
            # a worker may already have taken over by now; the supervisor must still come first
            assert _publisher_pids(svc.log)[:1] == [svc.proc.pid]
            for _ in range(100):  # a candidate tries the lock every second
                if pids := _publisher_pids(svc.log)[1:]:
                    break
                await asyncio.sleep(0.1)
            assert pids and pids[0] in workers, svc.log.read_text()[-3000:]
            async with client.stream("GET", svc.base + "/v1/events", headers=SSE) as r:
                frames = Frames(r)
                await frames.next()
                await _receipt(client, svc.base, 7)
                got = await frames.events(1)
            assert json.loads(got[0]["data"])["payload"]["delta_on_hand"] == 7
        finally:
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            svc.stop()
