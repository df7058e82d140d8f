from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import QueryParameter, RequestBody

from api.deps import AuthRequest, IdempotencyKey, PoolDep, stored_answer, strict
from api.errors import problems
from api.schemas import ID_PATTERN, MAX_PAGE, MovementsIn
from engine.core.model import MovementKind, Position
from engine.core.stock import MovementLine
from engine.services import stock
from engine.services.stock import MovementResult

IdQuery = Annotated[str | None, QueryParameter(pattern=ID_PATTERN)]


class StockController(Controller):
    path = "/v1/stock"
    tags = ["stock"]

    @post("/movements", operation_id="recordMovements", responses=problems(400, 403, 409, 413, 422), status_code=201)
    async def movements(
        self,
        request: AuthRequest,
        pool: PoolDep,
        data: RequestBody[MovementsIn],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MovementResult]:
        data = await strict(request, data)
        lines = [
            MovementLine(sku=m.sku, location_id=m.location_id, kind=MovementKind(m.kind), quantity=m.quantity)
            for m in data.movements
        ]
        status, body = await stock.record_movements(
            pool, request.user, lines, reference=data.reference, idem_key=idempotency_key
        )
        return stored_answer(status, body)

    @get("/", operation_id="listStock", responses=problems(400, 422))
    async def positions(
        self,
        request: AuthRequest,
        pool: PoolDep,
        sku: IdQuery = None,
        location_id: IdQuery = None,
        after_sku: Annotated[
            str | None, QueryParameter(pattern=ID_PATTERN, description="keyset cursor: last sku")
        ] = None,
        after_location_id: Annotated[
            str | None, QueryParameter(pattern=ID_PATTERN, description="keyset cursor: last location")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 200,
    ) -> list[Position]:
        after = (after_sku, after_location_id or "") if after_sku else None
        return await stock.list_positions(pool, sku=sku, location_id=location_id, after=after, limit=limit)
