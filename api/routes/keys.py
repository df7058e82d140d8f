from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, post
from litestar.params import PathParameter, QueryParameter, RequestBody

from api.deps import AuthRequest, IdempotencyKey, PoolDep, stored_answer, strict
from api.errors import problems
from api.schemas import ID_PATTERN, MAX_PAGE, ApiKeyIn
from engine.services import keys

KeyId = Annotated[str, PathParameter(pattern=ID_PATTERN)]


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api-keys"]

    @post(
        "/",
        operation_id="createApiKey",
        responses=problems(400, 403, 409, 413, 422),
        status_code=201,
        description="The secret is in this answer only. A retry with the same Idempotency-Key is a 409 naming the key.",
    )
    async def create(
        self,
        request: AuthRequest,
        pool: PoolDep,
        data: RequestBody[ApiKeyIn],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[keys.IssuedKey]:
        data = await strict(request, data)
        body = await keys.create(
            pool, request.user, data.role, data.location_id, data.name, idempotency_key, request=data
        )
        return stored_answer(201, body)

    @get(
        "/",
        operation_id="listApiKeys",
        responses=problems(400, 403),
        description="Every key, revoked ones too, without secrets; by key_id.",
    )
    async def list_keys(
        self,
        request: AuthRequest,
        pool: PoolDep,
        after: Annotated[str | None, QueryParameter(pattern=ID_PATTERN, description="keyset cursor: last key_id")] = (
            None
        ),
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> list[keys.KeyOut]:
        return await keys.list_keys(pool, request.user, after=after, limit=limit)

    @delete(
        "/{key_id:str}",
        operation_id="revokeApiKey",
        responses=problems(400, 403, 404),
        status_code=204,
        description="Revoke a key: 401 for it from then on (other service processes: within "
        "OMNIROUTE_KEY_CACHE_SECONDS). Revoking it again is a 204 too; an unknown key_id is a 404.",
    )
    async def revoke(self, request: AuthRequest, key_id: KeyId) -> None:
        await request.app.state.keyring.revoke(request.user, key_id)
