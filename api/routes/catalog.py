from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter, RequestBody

from api.deps import AuthRequest, PoolDep, strict
from api.errors import problems
from api.schemas import ID_PATTERN, MAX_PAGE, ItemIn, ItemsBulkIn, LocationIn
from engine.core.model import Item, Location
from engine.services import catalog

LocationId = Annotated[str, PathParameter(pattern=ID_PATTERN)]
Sku = Annotated[str, PathParameter(pattern=ID_PATTERN)]


class LocationController(Controller):
    path = "/v1/locations"
    tags = ["locations"]

    @put(
        "/{location_id:str}",
        operation_id="upsertLocation",
        status_code=200,
        description="200: replaced; 201: created.",
        responses={**problems(400, 403, 413), 201: ResponseSpec(Location, description="Created")},
    )
    async def upsert(
        self, request: AuthRequest, pool: PoolDep, location_id: LocationId, data: RequestBody[LocationIn]
    ) -> Response[Location]:
        data = await strict(request, data)
        location, created = await catalog.upsert_location(pool, request.user, location_id, data)
        return Response(location, status_code=201 if created else 200)

    @get("/{location_id:str}", operation_id="getLocation", responses=problems(400, 404))
    async def read(self, request: AuthRequest, pool: PoolDep, location_id: LocationId) -> Location:
        return await catalog.get_location(pool, request.user, location_id)

    @get("/", operation_id="listLocations", responses=problems(400))
    async def list(
        self,
        request: AuthRequest,
        pool: PoolDep,
        kind: Annotated[str | None, QueryParameter(pattern="^(store|warehouse)$")] = None,
        after: Annotated[str | None, QueryParameter(max_length=64, description="keyset cursor")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 500,
    ) -> list[Location]:
        return await catalog.list_locations(pool, request.user, kind=kind, after=after, limit=limit)


class ItemController(Controller):
    path = "/v1/items"
    tags = ["items"]

    @put(
        "/{sku:str}",
        operation_id="upsertItem",
        status_code=200,
        description="200: replaced; 201: created.",
        responses={**problems(400, 403, 413), 201: ResponseSpec(Item, description="Created")},
    )
    async def upsert(self, request: AuthRequest, pool: PoolDep, sku: Sku, data: RequestBody[ItemIn]) -> Response[Item]:
        data = await strict(request, data)
        item, created = await catalog.upsert_item(
            pool, request.user, Item(sku=sku, name=data.name, weight_kg=data.weight_kg)
        )
        return Response(item, status_code=201 if created else 200)

    @post("/bulk", operation_id="upsertItems", responses=problems(400, 403, 413), status_code=200)
    async def bulk(self, request: AuthRequest, pool: PoolDep, data: RequestBody[ItemsBulkIn]) -> catalog.BulkResult:
        data = await strict(request, data)
        items = [Item(sku=i.sku, name=i.name, weight_kg=i.weight_kg) for i in data.items]
        return await catalog.upsert_items(pool, request.user, items)

    @get("/{sku:str}", operation_id="getItem", responses=problems(400, 404))
    async def read(self, request: AuthRequest, pool: PoolDep, sku: Sku) -> Item:
        return await catalog.get_item(pool, request.user, sku)
