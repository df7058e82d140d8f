from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.params import PathParameter, RequestBody

from api.deps import AuthRequest, IdempotencyKey, PoolDep, stored_answer, strict
from api.errors import problems
from api.schemas import ExtendIn, ReservationIn
from engine.core.reservations import Line
from engine.services import reservations
from engine.services.reservations import ReservationOut

ReservationId = Annotated[UUID, PathParameter()]


class ReservationController(Controller):
    path = "/v1/reservations"
    tags = ["reservations"]

    @post("/", operation_id="createReservation", responses=problems(400, 403, 409, 413, 422), status_code=201)
    async def create(
        self,
        request: AuthRequest,
        pool: PoolDep,
        data: RequestBody[ReservationIn],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ReservationOut]:
        data = await strict(request, data)
        lines = [Line(sku=x.sku, location_id=x.location_id, quantity=x.quantity) for x in data.lines]
        return stored_answer(
            *await reservations.create(
                pool,
                request.user,
                lines,
                ttl_seconds=data.ttl_seconds,
                reference=data.reference,
                idem_key=idempotency_key,
                groups=request.app.state.reservation_groups,
            )
        )

    @get("/{reservation_id:uuid}", operation_id="getReservation", responses=problems(400, 403, 404))
    async def read(self, request: AuthRequest, pool: PoolDep, reservation_id: ReservationId) -> ReservationOut:
        return await reservations.get(pool, request.user, reservation_id)

    @post(
        "/{reservation_id:uuid}/commit",
        operation_id="commitReservation",
        responses=problems(400, 403, 404, 409),
        status_code=200,
    )
    async def commit(
        self, request: AuthRequest, pool: PoolDep, reservation_id: ReservationId, idempotency_key: IdempotencyKey = None
    ) -> Response[ReservationOut]:
        return stored_answer(*await reservations.commit(pool, request.user, reservation_id, idempotency_key))

    @post(
        "/{reservation_id:uuid}/release",
        operation_id="releaseReservation",
        responses=problems(400, 403, 404, 409),
        status_code=200,
    )
    async def release(
        self, request: AuthRequest, pool: PoolDep, reservation_id: ReservationId, idempotency_key: IdempotencyKey = None
    ) -> Response[ReservationOut]:
        return stored_answer(*await reservations.release(pool, request.user, reservation_id, idempotency_key))

    @post(
        "/{reservation_id:uuid}/extend",
        operation_id="extendReservation",
        responses=problems(400, 403, 404, 409, 413),
        status_code=200,
    )
    async def extend(
        self,
        request: AuthRequest,
        pool: PoolDep,
        reservation_id: ReservationId,
        data: RequestBody[ExtendIn],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ReservationOut]:
        data = await strict(request, data)
        return stored_answer(
            *await reservations.extend(pool, request.user, reservation_id, data.ttl_seconds, idempotency_key)
        )
