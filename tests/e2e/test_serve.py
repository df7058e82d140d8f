"""`omniroute serve` as a newcomer runs it: embedded PostgreSQL, demo network, demo keys.

Also the durability promise: a receipt acknowledged before `kill -9` is there after restart.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
        env["OMNIROUTE_DATA_DIR"] = str(data_dir)
        self.log = data_dir.parent / f"serve-{port}-{time.time_ns()}.log"
        with open(self.log, "w") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
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
