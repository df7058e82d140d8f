from __future__ import annotations

import msgspec
from litestar import Controller, get, post
from litestar.params import RequestBody

from api.deps import AuthRequest, strict
from api.errors import problems
from api.query import query_operation, values
from api.schemas import AvailabilityIn, AvailabilityQuery
from engine.services.availability import AvailabilityResult, availability


class AvailabilityController(Controller):
    path = "/v1/availability"
    tags = ["availability"]

    @get(
        "/",
        operation_id="getAvailability",
        operation_class=query_operation(AvailabilityQuery),
        responses=problems(400, 422),
    )
    async def read(self, request: AuthRequest) -> AvailabilityResult:
        # Checkout's hottest call reads its own query: one msgspec.convert (strings to
        # numbers, every bound and the lat/lon rule of AvailabilityQuery), a fraction of the
        # cost of Litestar's parsing and signature model. Errors map to a 400 problem.
        q = msgspec.convert(values(request.scope["query_string"], _LISTS), AvailabilityQuery, strict=False)
        return await _answer(request, q.sku, q)

    @post("/", operation_id="postAvailability", responses=problems(400, 413, 422), status_code=200)
    async def query(self, request: AuthRequest, data: RequestBody[AvailabilityIn]) -> AvailabilityResult:
        data = await strict(request, data)
        return await _answer(request, data.skus, data)


_LISTS = frozenset({"sku"})


async def _answer(request: AuthRequest, skus: list[str], q: AvailabilityIn | AvailabilityQuery) -> AvailabilityResult:
    state = request.app.state
    return await availability(
        state.reads,
        skus,
        lat=q.lat,
        lon=q.lon,
        radius_km=q.radius_km,
        pickup_limit=q.pickup_limit,
        view=state.availability,
    )
