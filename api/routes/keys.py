from __future__ import annotations

import asyncpg
from litestar import Controller, Response, post
from litestar.params import RequestBody

from api.deps import AuthRequest, IdempotencyKey, PoolDep, strict
from api.schemas import ApiKeyIn
from engine.services import idempotency, keys


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api-keys"]

    @post("/", operation_id="createApiKey", status_code=201)
    async def create(
        self,
        request: AuthRequest,
        pool: PoolDep,
        data: RequestBody[ApiKeyIn],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[keys.IssuedKey]:
        data = await strict(request, data)

        async def work(conn: asyncpg.Connection) -> tuple[int, keys.IssuedKey]:
            return 201, await keys.issue(conn, request.user, data.role, data.location_id, data.name)

        status, body = await idempotency.run(pool, request.user, idempotency_key, "api-keys.create", data, work)
        return Response(body, status_code=status, media_type="application/json")
