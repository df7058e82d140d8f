"""Dependencies injected into handlers: the pool and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from litestar import Request
from litestar.di import NamedDependency
from litestar.params import HeaderParameter

from engine.core.model import Caller

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", required=False, min_length=1, max_length=255,
              description="Retry-safe writes: the same key and body return the first answer."),
]


async def provide_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


async def provide_caller(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return await request.app.state.keyring.authenticate(token.strip() if scheme.lower() == "bearer" else None)


PoolDep = NamedDependency[asyncpg.Pool]
CallerDep = NamedDependency[Caller]
