"""Request ids, one structured (JSON) log line per request, and Prometheus metrics."""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import sys
import time

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REQUESTS = Counter("omniroute_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "omniroute_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
EVENT_STREAMS = Gauge("omniroute_event_streams", "open change-feed event streams (SSE)")

_log_encoder = msgspec.json.Encoder()
access_log = logging.getLogger("omniroute.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _log_encoder.encode(entry).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
    # Two INFO lines for every run of every job (the expiry sweep runs every 2 s); the jobs
    # log what they did themselves, and a job that fails or misses its time still shows.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)


class _RequestIds:
    """32 hex digits: 16 random per process, then a counter. Unique across processes (with
    overwhelming odds) and a fraction of uuid4's cost, which would be paid on every request."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_new_request_id = _RequestIds()
_metrics: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def _metrics_for(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled children, kept: `labels()` takes a lock and builds a key on every call."""
    key = (method, route, status)
    found = _metrics.get(key)
    if found is None:
        found = _metrics[key] = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route))
    return found


def request_id(scope: Scope) -> str:
    """The caller's X-Request-ID when it is sane (printable, cut to 64 characters), else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            rid = value.decode("latin-1")[:64]
            if rid and rid.isprintable():
                return rid
            break
    return _new_request_id()


def record(scope: Scope, route: str, status: int, elapsed: float) -> None:
    """Count a finished request and log it (one line, when INFO is on)."""
    method = scope["method"]
    requests, latency = _metrics_for(method, route, status)
    requests.inc()
    latency.observe(elapsed)
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "%s %s %d",
            method,
            scope["path"],
            status,
            extra={
                "fields": {
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                }
            },
        )


def request_middleware(app: ASGIApp) -> ASGIApp:
    """Tag each request with an id (X-Request-ID, taken from the caller when sane), log it
    once when it ends, and count it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        rid = request_id(scope)
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500
        rid_header = (b"x-request-id", rid.encode("latin-1"))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            record(scope, scope.get("path_template") or "unmatched", status, time.perf_counter() - start)
            request_id_var.reset(token)

    return middleware
