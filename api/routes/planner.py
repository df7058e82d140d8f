from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.params import Parameter, PathParameter, RequestBody

from api.deps import AuthRequest, IdempotencyKey, PoolDep, stored_answer, strict
from api.errors import problems
from api.schemas import MAX_PAGE, MAX_RUNS_PAGE, DemandIn, RebalancingRunIn, RoutingRunIn
from engine.services import rebalancing, routing_runs
from engine.services.routing_runs import RunOptions, RunOut

Limit = Annotated[int, Parameter(ge=1, le=MAX_RUNS_PAGE, description="most recent first")]
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
        responses=problems(400, 403, 409, 413),
        status_code=202,
        description="Start a batch re-brokering run in the background (body optional). 409 names the running run.",
    )
    async def start(
        self,
        request: AuthRequest,
        pool: PoolDep,
        data: RequestBody[RoutingRunIn | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[RunOut]:
        body = await optional_body(request, _run_in)
        options = msgspec.convert(msgspec.to_builtins(body), RunOptions)
        return stored_answer(
            *await routing_runs.trigger(pool, request.user, options, request.app.state.costs, idempotency_key)
        )

    @get("/", operation_id="listRoutingRuns", responses=problems(400, 403))
    async def list_runs(self, request: AuthRequest, pool: PoolDep, limit: Limit = 20) -> list[RunOut]:
        return await routing_runs.recent(pool, request.user, limit)

    @get("/{run_id:uuid}", operation_id="getRoutingRun", responses=problems(400, 403, 404))
    async def read(self, request: AuthRequest, pool: PoolDep, run_id: RunId) -> RunOut:
        return await routing_runs.get(pool, request.user, run_id)


_rebalancing_in = msgspec.json.Decoder(RebalancingRunIn)
After = Annotated[int, Parameter(ge=0, description="proposals after this proposal_no")]
PageSize = Annotated[int, Parameter(ge=1, le=MAX_PAGE)]
TransferId = Annotated[UUID, PathParameter()]


def _options(body: RebalancingRunIn) -> rebalancing.RunOptions:
    data = msgspec.to_builtins(body)
    data["lanes"]["overrides"] = [
        {
            "from_id": o["from_location_id"],
            "to_id": o["to_location_id"],
            "unit_cost": o["unit_cost"],
            "fixed_cost": o["fixed_cost"],
        }
        for o in data["lanes"]["overrides"]
    ]
    return msgspec.convert(data, rebalancing.RunOptions)


class DemandController(Controller):
    path = "/v1/demand"
    tags = ["planner"]

    @put("/", operation_id="putDemand", responses=problems(400, 403, 413, 422), status_code=200)
    async def put_demand(self, request: AuthRequest, pool: PoolDep, data: RequestBody[DemandIn]) -> dict:
        data = await strict(request, data)
        rows = [rebalancing.DemandRow(r.sku, r.location_id, r.units_per_day) for r in data.demand]
        return {"rows": await rebalancing.put_demand(pool, request.user, rows)}


class RebalancingRunController(Controller):
    path = "/v1/rebalancing-runs"
    tags = ["planner"]

    @post(
        "/",
        operation_id="startRebalancingRun",
        responses=problems(400, 403, 409, 413, 422),
        status_code=202,
        description="Propose transfers in the background (body optional). 409 names the running run.",
    )
    async def start(
        self,
        request: AuthRequest,
        pool: PoolDep,
        data: RequestBody[RebalancingRunIn | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[rebalancing.RebalancingRunOut]:
        body = await optional_body(request, _rebalancing_in)
        return stored_answer(*await rebalancing.trigger(pool, request.user, _options(body), idempotency_key))

    @get("/{run_id:uuid}", operation_id="getRebalancingRun", responses=problems(400, 403, 404))
    async def read(
        self, request: AuthRequest, pool: PoolDep, run_id: RunId, after: After = 0, limit: PageSize = 100
    ) -> rebalancing.RebalancingRunOut:
        return await rebalancing.get(pool, request.user, run_id, after=after, limit=limit)

    @post(
        "/{run_id:uuid}/apply",
        operation_id="applyRebalancingRun",
        responses=problems(400, 403, 404, 409),
        status_code=202,
    )
    async def apply(
        self, request: AuthRequest, pool: PoolDep, run_id: RunId, idempotency_key: IdempotencyKey = None
    ) -> Response[rebalancing.RebalancingRunOut]:
        return stored_answer(*await rebalancing.apply(pool, request.user, run_id, idempotency_key))


class TransferController(Controller):
    path = "/v1/transfers"
    tags = ["planner"]

    @get("/{transfer_id:uuid}", operation_id="getTransfer", responses=problems(400, 403, 404))
    async def read(self, request: AuthRequest, pool: PoolDep, transfer_id: TransferId) -> rebalancing.TransferOut:
        return await rebalancing.get_transfer(pool, request.user, transfer_id)

    @post(
        "/{transfer_id:uuid}/receive",
        operation_id="receiveTransfer",
        responses=problems(400, 403, 404, 409),
        status_code=200,
    )
    async def receive(self, request: AuthRequest, pool: PoolDep, transfer_id: TransferId) -> rebalancing.TransferOut:
        return await rebalancing.receive(pool, request.user, transfer_id)
