"""The run solver's worker process never outlives the service process that started it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.processes import alive, descendants

# A service stand-in: starts the solver on a long job, says so, then waits to be killed.
SERVICE = """
import sys, time
from engine.services import runs
runs.solver().submit(time.sleep, 300)
time.sleep(1)
print("solving", flush=True)
time.sleep(300)
"""


def test_the_solver_process_ends_when_its_service_is_killed():
    service = subprocess.Popen([sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, text=True)
    try:
        assert service.stdout.readline().strip() == "solving"
        helpers = descendants(service.pid)
        assert helpers, "the solver process should be running"
    finally:
        service.send_signal(signal.SIGKILL)  # no shutdown code runs
        service.wait(10)
        service.stdout.close()
    deadline = time.monotonic() + 5
    while (left := [pid for pid in helpers if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"orphaned after the service was killed: {left}"
