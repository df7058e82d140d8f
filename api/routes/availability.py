from __future__ import annotations

import time

import msgspec
from litestar import Controller, Litestar, get, post
from litestar.datastructures import State
from litestar.params import RequestBody
from litestar.types import Scope, Send

from api.deps import ADMITTED, AuthRequest, RateLimited, admit, strict
from api.errors import problems
from api.observability import record, request_id, request_id_var
from api.query import query_errors, query_operation, values
from api.schemas import AvailabilityIn, AvailabilityQuery
from engine.errors import Unauthorized
from engine.services.availability import AvailabilityResult, availability

PATH = "/v1/availability"
_OPERATION = "getAvailability"


class AvailabilityController(Controller):
    path = PATH
    tags = ["availability"]

    @get(
        "/",
        operation_id=_OPERATION,
        operation_class=query_operation(AvailabilityQuery),
        responses=problems(400, 422),
    )
    async def read(self, request: AuthRequest) -> AvailabilityResult:
        # Checkout's hottest call reads its own query: one msgspec.convert (strings to
        # numbers, every bound and the lat/lon rule of AvailabilityQuery), a fraction of the
        # cost of Litestar's parsing and signature model. Errors map to a 400 problem.
        q = msgspec.convert(values(request.scope["query_string"], _LISTS), AvailabilityQuery, strict=False)
        return await _answer(request.app.state, q.sku, q)

    @post("/", operation_id="postAvailability", responses=problems(400, 413, 422), status_code=200)
    async def query(self, request: AuthRequest, data: RequestBody[AvailabilityIn]) -> AvailabilityResult:
        data = await strict(request, data)
        return await _answer(request.app.state, data.skus, data)


_LISTS = frozenset({"sku"})


async def _answer(state: State, skus: list[str], q: AvailabilityIn | AvailabilityQuery) -> AvailabilityResult:
    return await availability(
        state.reads,
        skus,
        lat=q.lat,
        lon=q.lon,
        radius_km=q.radius_km,
        pickup_limit=q.pickup_limit,
        view=state.availability,
    )


_encoder = msgspec.json.Encoder()


async def shortcut(app: Litestar, scope: Scope, send: Send) -> bool:
    """GET /v1/availability answered straight from the ASGI scope, on its ordinary path:
    the same admission, query rules, conversion and answer as `read`, the same bytes and
    headers, counted and logged as every request is, without Litestar's routing, middleware
    stack, exception middleware and response objects. Profiled with py-spy on the 10M
    network, those cost more CPU than the answer itself.

    Anything out of the ordinary returns False before anything is sent, and the request goes
    on through Litestar, which answers it as it answers every request: a refusal (with the
    admission decided here, so no second rate-limit token is spent), a query it refuses, an
    error while answering (the answer is worked out again there, to be mapped to its problem)."""
    start = time.perf_counter()
    state = app.state
    try:
        scope[ADMITTED] = await admit(state, scope)
    except (Unauthorized, RateLimited) as exc:
        scope[ADMITTED] = exc
        return False
    except Exception:
        return False  # a database error looking up the key, say: Litestar maps it
    query = scope["query_string"]
    if query_errors(query, state.query_rules[_OPERATION]):
        return False
    try:
        q = msgspec.convert(values(query, _LISTS), AvailabilityQuery, strict=False)
    except msgspec.ValidationError:
        return False
    rid = request_id(scope)
    token = request_id_var.set(rid)
    try:
        try:
            result = await _answer(state, q.sku, q)
        except Exception:
            return False
        body = _encoder.encode(result)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", rid.encode("latin-1")),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            record(scope, PATH, 200, time.perf_counter() - start)
        return True
    finally:
        request_id_var.reset(token)
