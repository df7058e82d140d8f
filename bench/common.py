"""Shared benchmark plumbing: the database, the service process, a lean HTTP client, stats.

The benchmark database is the embedded server in `bench/.data` (kept between runs, so the
10M-position network is loaded once) unless OMNIROUTE_BENCH_DATABASE_URL names another.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

from engine.embedded import EmbeddedPostgres
from engine.services import fixtures
from engine.services.setup import apply_migrations
from engine.store import meta

BENCH_DIR = Path(__file__).resolve().parent
BENCH_KEY = "bench-admin-key"


def database(size: str) -> tuple[str, EmbeddedPostgres | None]:
    """URL of a database holding the `size` network, loading it (timed) if absent."""
    url = os.environ.get("OMNIROUTE_BENCH_DATABASE_URL")
    pg = None
    if not url:
        pg = EmbeddedPostgres(BENCH_DIR / ".data" / size)
        pg.start()
        url = pg.url("postgres")
    asyncio.run(apply_migrations(url))

    async def present() -> dict | None:
        conn = await asyncpg.connect(url)
        try:
            return await meta.get_setting(conn, "network") if await meta.has_locations(conn) else None
        finally:
            await conn.close()

    info = asyncio.run(present())
    if info is None:
        t = time.perf_counter()
        info = asyncio.run(fixtures.load(url, size, show_progress=True))
        print(f"loaded the {size} network in {time.perf_counter() - t:.1f} s: {info}", flush=True)
    return url, pg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`omniroute serve` against `url`, on a free port (or `port`), until stopped.

    The service runs in a process group of its own, so `kill()` (SIGKILL to the group)
    takes down every process it started, as a crash would, and nothing else. `log`, when
    given, receives its output; `env` adds settings; `pool_max` sets the service's
    connections per process (OMNIROUTE_POOL_MAX; its own default when None)."""

    def __init__(
        self,
        url: str,
        workers: int = 1,
        pool_max: int | None = None,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        timeout: float = 60,
    ) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environ = {
            **os.environ,
            "OMNIROUTE_DATABASE_URL": url,
            "OMNIROUTE_BOOTSTRAP_ADMIN_KEY": BENCH_KEY,
            "OMNIROUTE_LOG_LEVEL": "WARNING",
            **({"OMNIROUTE_POOL_MAX": str(pool_max)} if pool_max is not None else {}),
            **(env or {}),
        }
        out = open(log, "a") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port), "--workers", str(workers)],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log is not None:
                out.close()
        deadline = time.monotonic() + timeout
        seen: set[str] = set()  # the processes that answered /readyz
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode} before it was ready")
            try:
                # A new connection each time: one per worker must answer, or a load started
                # now would put every connection on the worker that came up first.
                r = httpx.get(f"{self.base}/readyz", timeout=1, headers={"Connection": "close"})
                if r.status_code == 200:
                    seen.add(r.headers["x-request-id"][:16])
                    if len(seen) == workers:
                        return
                    continue
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"service did not become ready ({len(seen)} of {workers} workers answered)")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)

    def kill(self) -> None:
        """SIGKILL to the service's whole process group: no shutdown code runs anywhere."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


class RawClient:
    """A minimal keep-alive HTTP/1.1 client: cheap enough not to be the bottleneck.

    `key` is the API key it sends unless a request names another. After a failed request
    the connection is dropped and the next request opens a new one."""

    def __init__(self, port: int, key: str = BENCH_KEY) -> None:
        self.port = port
        self.key = key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.served_by: str | None = None  # the process that answered last (its request-id prefix)

    async def connect(self) -> None:
        """Open the connection if there is none, or if the server has closed it since
        (an idle keep-alive connection); raises OSError if nothing listens."""
        if self.reader is not None and self.reader.at_eof():
            await self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: str = "", key: str | None = None
    ) -> tuple[int, bytes]:
        await self.connect()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key or self.key}\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n"
        )
        try:
            self.writer.write(head.encode() + body)
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionResetError("the server closed the connection")
            length = 0
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                elif line[:13].lower() == b"x-request-id:":
                    self.served_by = line[13:].strip()[:16].decode()  # 16 hex digits per process
            payload = await self.reader.readexactly(length)
        except BaseException:
            await self.close()
            raise
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            writer, self.reader, self.writer = self.writer, None, None
            writer.close()
            with contextlib.suppress(OSError):  # the server may have reset it already
                await writer.wait_closed()


async def loop_lag(samples: list[float], tick: float = 0.005) -> None:
    """How late this process's event loop wakes a sleeper (ms): the load generator's own
    delay, which its latencies include."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(tick)
        samples.append((time.perf_counter() - t - tick) * 1000)


async def run_load(
    clients: int, seconds: float, make_worker: Callable[[int], Callable[[int], Awaitable[None]]]
) -> dict:
    """Run `clients` loops for `seconds`; each loop calls its worker with a running counter.

    Returns requests/s and latency percentiles in ms (per call, client side).
    """
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def loop(cid: int) -> None:
        work = make_worker(cid)
        i = 0
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            await work(i)
            latencies.append(time.perf_counter() - t)
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in range(clients)))
    elapsed = time.perf_counter() - start
    return summarize(latencies, elapsed)


WRK_SCRIPT = BENCH_DIR / "wrk_targets.lua"


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk_load(port: int, targets: list[str], clients: int, seconds: float) -> dict:
    """`clients` keep-alive connections GETting `targets` in turn for `seconds`, from wrk
    (Debian's `wrk`, a load generator in C: one thread, a fraction of the CPU this process's
    asyncio generator spends on the same load, on cores the service shares). Same keys as
    `run_load`, plus how the answers spread over the service's processes. Any answer other
    than 2xx or any socket error fails the run."""
    with tempfile.NamedTemporaryFile("w", suffix=".targets") as listing:
        listing.write("\n".join(targets) + "\n")
        listing.flush()
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{clients}",
                f"-d{round(seconds)}s",
                "--timeout",
                "10s",
                "-s",
                str(WRK_SCRIPT),
                f"http://127.0.0.1:{port}",
            ],
            env={**os.environ, "WRK_TARGETS": listing.name, "WRK_KEY": BENCH_KEY},
            capture_output=True,
            text=True,
            check=True,
        )
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line[4:])
    if r["status_errors"] or r["socket_errors"]:
        raise RuntimeError(f"wrk: {r['status_errors']} answers not 2xx, {r['socket_errors']} socket errors")
    served = collections.Counter(r["served"])
    return {
        "requests": r["requests"],
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50": r["p50_us"] / 1000,
        "p99": r["p99_us"] / 1000,
        "requests per worker": "/".join(f"{n / r['requests']:.0%}" for _, n in served.most_common()),
    }


def summarize(latencies: list[float], elapsed: float) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"requests": len(ms), "rps": len(ms) / elapsed, "p50": q[49], "p99": q[98]}


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    out = [" | ".join(c.ljust(widths[c]) for c in columns), "-|-".join("-" * widths[c] for c in columns)]
    out += [" | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(out)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if v >= 100 else f"{v:.2f}"
    return str(v) if v is not None else ""
