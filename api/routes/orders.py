from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, RequestBody

from api.deps import AuthRequest, IdempotencyKey, PoolDep, stored_answer, strict
from api.errors import problems
from api.schemas import OrderIn
from engine.services import orders
from engine.services.orders import OrderOut, OrderRequest

OrderId = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")]
FulfillmentId = Annotated[UUID, PathParameter()]


def _request(data: OrderIn) -> OrderRequest:
    return msgspec.convert(msgspec.to_builtins(data), OrderRequest)


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @post("/quote", operation_id="quoteOrder", responses=problems(400, 403, 413, 422), status_code=200)
    async def quote(self, request: AuthRequest, pool: PoolDep, data: RequestBody[OrderIn]) -> OrderOut:
        data = await strict(request, data)
        return await orders.quote(pool, request.user, _request(data), request.app.state.costs)

    @post(
        "/",
        operation_id="placeOrder",
        status_code=201,
        description="201: placed; 200: this order_id was placed before with the same body (the stored order).",
        responses={**problems(400, 403, 409, 413, 422), 200: ResponseSpec(OrderOut, description="Placed before")},
    )
    async def place(
        self, request: AuthRequest, pool: PoolDep, data: RequestBody[OrderIn], idempotency_key: IdempotencyKey = None
    ) -> Response[OrderOut]:
        data = await strict(request, data)
        status, body = await orders.place(
            pool,
            request.user,
            _request(data),
            request.app.state.costs,
            idem_key=idempotency_key,
            defer_ship=request.app.state.settings.defer_ship_orders,
        )
        return stored_answer(status, body)

    @get("/{order_id:str}", operation_id="getOrder", responses=problems(400, 403, 404))
    async def read(self, request: AuthRequest, pool: PoolDep, order_id: OrderId) -> OrderOut:
        return await orders.get(pool, request.user, order_id)

    @post("/{order_id:str}/cancel", operation_id="cancelOrder", responses=problems(400, 403, 404, 409), status_code=200)
    async def cancel(self, request: AuthRequest, pool: PoolDep, order_id: OrderId) -> OrderOut:
        return await orders.cancel(pool, request.user, order_id)

    @post(
        "/{order_id:str}/fulfillments/{fulfillment_id:uuid}/reject",
        operation_id="rejectFulfillment",
        responses=problems(400, 403, 404, 409),
        status_code=200,
    )
    async def reject(
        self, request: AuthRequest, pool: PoolDep, order_id: OrderId, fulfillment_id: FulfillmentId
    ) -> OrderOut:
        return await orders.reject(pool, request.user, order_id, fulfillment_id, request.app.state.costs)

    @post(
        "/{order_id:str}/fulfillments/{fulfillment_id:uuid}/complete",
        operation_id="completeFulfillment",
        responses=problems(400, 403, 404, 409),
        status_code=200,
    )
    async def complete(
        self, request: AuthRequest, pool: PoolDep, order_id: OrderId, fulfillment_id: FulfillmentId
    ) -> OrderOut:
        return await orders.complete(pool, request.user, order_id, fulfillment_id)
