from __future__ import annotations

import asyncio

import asyncpg
from litestar import Controller, Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import PoolDep
from api.errors import problem
from engine.store import meta
from engine.store.migrate import pending


class OpsController(Controller):
    """Unauthenticated probes for load balancers and Prometheus."""

    include_in_schema = False
    opt = {"exclude_from_auth": True}

    @get("/healthz", operation_id="healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", operation_id="readyz")
    async def readyz(self, request: Request, pool: PoolDep) -> Response:
        """Ready when the database answers within 2 s and every migration is applied. A read
        replica is reported, not required: without it the primary serves every read."""
        try:
            async with asyncio.timeout(2):
                async with pool.acquire() as conn:
                    await meta.ping(conn)
                    missing = await pending(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            return problem(503, "Not ready", f"database unreachable: {exc.__class__.__name__}")
        if missing:
            return problem(503, "Not ready", "migrations pending", pending=missing)
        reads = request.app.state.reads
        if reads.replica is None:
            return Response({"status": "ready"})
        return Response({"status": "ready", "read_replica": reads.status()})

    @get("/metrics", operation_id="metrics", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
