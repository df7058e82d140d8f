from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import QueryParameter, RequestBody

from api.deps import AuthRequest, strict
from api.errors import problems
from api.schemas import MAX_AVAILABILITY_SKUS, AvailabilityIn
from engine.services.availability import AvailabilityResult, availability


class AvailabilityController(Controller):
    path = "/v1/availability"
    tags = ["availability"]

    @get("/", operation_id="getAvailability", responses=problems(400, 422))
    async def read(
        self,
        request: AuthRequest,
        sku: Annotated[
            list[str], QueryParameter(min_items=1, max_items=MAX_AVAILABILITY_SKUS, description="repeat for each SKU")
        ],
        lat: Annotated[float | None, QueryParameter(ge=-90, le=90)] = None,
        lon: Annotated[float | None, QueryParameter(ge=-180, le=180)] = None,
        radius_km: Annotated[float, QueryParameter(gt=0, le=2000)] = 50.0,
        pickup_limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    ) -> AvailabilityResult:
        # convert() applies the same per-SKU and cross-field rules as the POST body.
        body = msgspec.convert(
            {"skus": sku, "lat": lat, "lon": lon, "radius_km": radius_km, "pickup_limit": pickup_limit}, AvailabilityIn
        )
        return await _answer(request, body)

    @post("/", operation_id="postAvailability", responses=problems(400, 413, 422), status_code=200)
    async def query(self, request: AuthRequest, data: RequestBody[AvailabilityIn]) -> AvailabilityResult:
        data = await strict(request, data)
        return await _answer(request, data)


async def _answer(request: AuthRequest, q: AvailabilityIn) -> AvailabilityResult:
    state = request.app.state
    return await availability(
        state.reads,
        q.skus,
        lat=q.lat,
        lon=q.lon,
        radius_km=q.radius_km,
        pickup_limit=q.pickup_limit,
        view=state.availability,
    )
