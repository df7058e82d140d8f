from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter, PathParameter, RequestBody

from api.deps import AuthRequest, PoolDep
from api.schemas import RoutingRunIn
from engine.services import routing_runs
from engine.services.routing_runs import RunOptions, RunOut

Limit = Annotated[int, Parameter(ge=1, le=100, description="most recent first")]
RunId = Annotated[UUID, PathParameter()]
_run_in = msgspec.json.Decoder(RoutingRunIn)


async def optional_body(request: Request, decoder: msgspec.json.Decoder):  # noqa: ANN201 - the decoded Struct
    """An optional JSON body: empty means every default. Decoded strictly (400 on errors)."""
    body = await request.body()
    return decoder.decode(body if body.strip() else b"{}")


class RoutingRunController(Controller):
    path = "/v1/routing-runs"
    tags = ["planner"]

    @post(
        "/",
        operation_id="startRoutingRun",
        status_code=202,
        description="Start a batch re-brokering run in the background (body optional). 409 names the running run.",
    )
    async def start(self, request: AuthRequest, pool: PoolDep, data: RequestBody[RoutingRunIn | None] = None) -> RunOut:
        body = await optional_body(request, _run_in)
        options = msgspec.convert(msgspec.to_builtins(body), RunOptions)
        return await routing_runs.trigger(pool, request.user, options, request.app.state.costs)

    @get("/", operation_id="listRoutingRuns")
    async def list_runs(self, request: AuthRequest, pool: PoolDep, limit: Limit = 20) -> list[RunOut]:
        return await routing_runs.recent(pool, request.user, limit)

    @get("/{run_id:uuid}", operation_id="getRoutingRun")
    async def read(self, request: AuthRequest, pool: PoolDep, run_id: RunId) -> RunOut:
        return await routing_runs.get(pool, request.user, run_id)
