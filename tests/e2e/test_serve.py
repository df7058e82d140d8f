"""`omniroute serve` as a newcomer runs it: embedded PostgreSQL, demo network, demo keys.

Also the durability promise: a receipt acknowledged before `kill -9` is there after restart.
"""

from __future__ import annotations

import asyncio
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

from tests.processes import alive, children, cmdline, descendants

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, data_dir: Path, port: int, workers: int = 1) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
        env["OMNIROUTE_DATA_DIR"] = str(data_dir)
        self.log = data_dir.parent / f"serve-{port}-{time.time_ns()}.log"
        with open(self.log, "w") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(workers)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("service not ready:\n" + self.log.read_text())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve") / "data"
    yield d
    # Whatever happened, leave no server running.
    subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "stop"],
        env={**os.environ, "OMNIROUTE_DATA_DIR": str(d)},
        capture_output=True,
    )


def test_serve_answers_availability_near_a_demo_city_and_survives_kill_9(data_dir):
    port = _free_port()
    svc = Service(data_dir, port)
    svc.wait_ready()
    keys = json.loads((data_dir / "demo-keys.json").read_text())
    assert set(keys) == {"admin", "checkout", "pos", "planner"}
    banner = svc.log.read_text()
    assert keys["checkout"]["key"] in banner and "/schema" in banner
    checkout = {"Authorization": f"Bearer {keys['checkout']['key']}"}
    admin = {"Authorization": f"Bearer {keys['admin']['key']}"}

    # New York City: the demo network has stores there and ships from fulfillment centers.
    r = httpx.get(
        svc.base + "/v1/availability",
        headers=checkout,
        params={"sku": ["SKU-00001", "SKU-00002"], "lat": 40.71, "lon": -74.01, "radius_km": 50},
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items[0]["sku"] == "SKU-00001" and items[0]["ship_available"] > 0
    assert items[0]["pickup"], "expected demo stores near New York"
    assert all(p["distance_km"] <= 50 for p in items[0]["pickup"])

    store = keys["pos"]["location_id"]
    r = httpx.post(
        svc.base + "/v1/stock/movements",
        headers=admin,
        json={"movements": [{"sku": "SKU-00007", "location_id": store, "kind": "receipt", "quantity": 321}]},
    )
    assert r.status_code == 201, r.text
    on_hand = next(p["on_hand"] for p in r.json()["positions"])

    svc.proc.send_signal(signal.SIGKILL)  # no shutdown code runs
    svc.proc.wait(10)

    again = Service(data_dir, port)
    again.wait_ready()
    r = httpx.get(again.base + "/v1/stock", headers=admin, params={"sku": "SKU-00007", "location_id": store})
    assert r.status_code == 200 and r.json()[0]["on_hand"] == on_hand
    # Keys survive a restart, and the demo network is not loaded twice.
    assert json.loads((data_dir / "demo-keys.json").read_text()) == keys
    r = httpx.get(again.base + "/v1/locations", headers=admin, params={"limit": 1000})
    assert len(r.json()) == len({loc["location_id"] for loc in r.json()})

    # SIGTERM stops the service and the embedded server it started.
    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(60) == 0
    assert not (data_dir / "pg" / "postmaster.pid").exists()


def test_check_reports_a_clean_ledger_on_the_demo_network(data_dir):
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "check"],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")},
            "OMNIROUTE_DATA_DIR": str(data_dir),
        },
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["drifted"] == 0 and report["positions_checked"] > 10_000


async def _place_order(client: httpx.AsyncClient, i: int) -> httpx.Response:
    body = {
        "order_id": f"shutdown-{time.time_ns()}-{i}",
        "destination": {"lat": 40.71, "lon": -74.01},
        "lines": [{"line_id": "1", "sku": f"SKU-{1 + i % 50:05d}", "quantity": 1}],
        "allow_partial": True,
    }
    return await client.post("/v1/orders", json=body)


ORDERS = 48


def test_sigterm_finishes_requests_in_flight_and_leaves_nothing_running(data_dir):
    port = _free_port()
    svc = Service(data_dir, port, workers=2)
    svc.wait_ready()
    keys = json.loads((data_dir / "demo-keys.json").read_text())
    planner = {"Authorization": f"Bearer {keys['planner']['key']}"}
    checkout = {"Authorization": f"Bearer {keys['checkout']['key']}"}

    # A rebalancing run with fixed transfer costs (a MIP per SKU: minutes of solving) keeps
    # the solver process busy while the service is told to stop.
    locs = [loc["location_id"] for loc in httpx.get(svc.base + "/v1/locations?limit=1000", headers=planner).json()]
    stores = [loc for loc in locs if loc.startswith("STORE-")][:5]
    demand = [
        {"sku": f"SKU-{s:05d}", "location_id": loc, "units_per_day": 40} for s in range(1, 2001) for loc in stores
    ]
    r = httpx.put(svc.base + "/v1/demand", json={"demand": demand}, headers=planner, timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.post(
        svc.base + "/v1/rebalancing-runs", json={"demand": "given", "lanes": {"fixed_cost": 5}}, headers=planner
    )
    assert r.status_code == 202, r.text
    run_url = f"{svc.base}/v1/rebalancing-runs/{r.json()['run_id']}"
    deadline = time.monotonic() + 60
    while not httpx.get(run_url, headers=planner).json()["phase"].startswith("planning SKU ranges"):
        assert time.monotonic() < deadline, "the run never started solving"
        time.sleep(0.2)
    time.sleep(1)  # the solver process is up and working

    pg_pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    children = descendants(svc.proc.pid)
    assert len(children) >= 3, children  # two uvicorn workers and the solver process at least

    async def orders_then_sigterm() -> tuple[list[httpx.Response], int]:
        async with httpx.AsyncClient(base_url=svc.base, headers=checkout, timeout=60) as client:
            placing = [asyncio.create_task(_place_order(client, i)) for i in range(ORDERS)]
            # The first answer is back: every order has been sent, most are still being routed.
            _, pending = await asyncio.wait(placing, return_when=asyncio.FIRST_COMPLETED)
            svc.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*placing), len(pending)

    sent = time.monotonic()
    answers, in_flight = asyncio.run(orders_then_sigterm())
    assert in_flight >= ORDERS // 2, f"only {in_flight} orders in flight: too few to test the drain"
    statuses = [a.status_code for a in answers]
    assert statuses == [201] * ORDERS, [a.text[:200] for a in answers if a.status_code != 201]
    assert svc.proc.wait(30) == 0
    took = time.monotonic() - sent
    assert took < 30, f"shutdown took {took:.1f} s"

    # Orphans would be reparented and live on; helpers such as multiprocessing's resource
    # tracker end a moment after the last process holding them, so allow a short grace.
    deadline = time.monotonic() + 5
    while (left := sorted(pid for pid in children | {pg_pid} if alive(pid))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"still running after shutdown: {[cmdline(pid) for pid in left]}"
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    # Both workers ran their shutdown to the end (scheduler, runs, solver, pool) and
    # nothing failed on the way.
    log = svc.log.read_text()
    assert log.count("Application shutdown complete") == 2, log[-3000:]
    assert '"level":"error"' not in log, log[-3000:]


def _listening_sockets(port: int) -> int:
    """How many sockets listen on `port` (Linux: /proc/net/tcp, state 0A)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


async def _burst(base: str, n: int) -> list[str]:
    """`n` connections opened at once, one request each: the process that answered each
    (the first 16 hex digits of its request id)."""
    clients = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(n)]
    try:
        answers = await asyncio.gather(*(c.get("/healthz") for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    assert [a.status_code for a in answers] == [200] * n
    return [a.headers["x-request-id"][:16] for a in answers]


def _workers(supervisor: int) -> set[int]:
    """The supervisor's uvicorn workers (children it spawned; not its resource tracker)."""
    return {pid for pid in children().get(supervisor, []) if "spawn_main" in cmdline(pid) and alive(pid)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux only")
def test_two_workers_listen_on_a_socket_each_so_a_burst_of_connections_reaches_both(data_dir):
    """With uvicorn's one shared socket, the worker that woke first took every connection
    waiting: 32 opened at once landed 27/5, even 32/0, in the benchmarks. Each worker has
    its own socket now (api.workers), and a worker killed and replaced keeps its socket:
    connections that arrive meanwhile wait for the replacement, none is refused."""
    port = _free_port()
    svc = Service(data_dir, port, workers=2)
    try:
        svc.wait_ready()
        deadline = time.monotonic() + 60
        while len(set(asyncio.run(_burst(svc.base, 8)))) < 2:  # the second worker is up
            assert time.monotonic() < deadline, svc.log.read_text()[-3000:]
            time.sleep(0.5)
        assert _listening_sockets(port) == 2
        served = asyncio.run(_burst(svc.base, 32))
        counts = sorted(served.count(w) for w in set(served))
        # A hash of each connection's address picks its socket: fewer than 4 of 32 on one
        # worker has odds of about 3 in a million.
        assert len(counts) == 2 and counts[0] >= 4, counts

        workers = _workers(svc.proc.pid)
        assert len(workers) == 2, [cmdline(pid) for pid in workers]
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        served = asyncio.run(_burst(svc.base, 32))  # some wait for the replacement
        assert len(set(served)) == 2, served
        replaced = _workers(svc.proc.pid)
        assert victim not in replaced and len(replaced & workers) == 1, (workers, replaced)
        assert _listening_sockets(port) == 2
    finally:
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(60) == 0
