"""What handlers receive: the pool, the authenticated caller, strictly decoded bodies."""

from __future__ import annotations

from typing import Annotated, TypeVar

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import HeaderParameter
from litestar.types import ASGIApp, Receive, Scope, Send

from api.errors import engine_error, problem
from api.ratelimit import RateLimiter, retry_after
from engine.core.model import Caller
from engine.errors import Unauthorized

T = TypeVar("T")


def stored_answer(status: int, body: bytes) -> Response:
    """An answer the service encoded already (and stored, for Idempotency-Key retries):
    sent as it is, byte for byte."""
    return Response(body, status_code=status, media_type="application/json")


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        min_length=1,
        max_length=255,
        description="Retry-safe writes: the same key and body return the first answer.",
    ),
]


class RateLimited(Exception):
    def __init__(self, wait: float, limiter: RateLimiter) -> None:
        super().__init__("rate limited")
        self.wait = wait
        self.limiter = limiter


def api_key_authentication(app: ASGIApp) -> ASGIApp:
    """Resolves `Authorization: Bearer <key>` to the caller (`request.user`) for every route
    not marked `exclude_from_auth` (and not OPTIONS or the API documentation under /schema),
    then spends one token of that key's rate limit (when one is set). It runs before the body or
    parameters are parsed, so a request without a valid key is a 401 whatever else is wrong
    with it. A plain ASGI function, not Litestar's authentication middleware class or a
    guard: it reads the one header it needs straight from the scope, which keeps it a few
    microseconds a request (guards also make Litestar copy the route handler per call)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"  # Litestar answers it itself: the methods allowed, nothing else
            or scope["path"].startswith("/schema")
            or scope["route_handler"].opt.get("exclude_from_auth")
        ):
            await app(scope, receive, send)
            return
        admitted = scope.pop(ADMITTED, None)  # decided already, by a shortcut that then passed
        if admitted is None:
            try:
                admitted = await admit(scope["litestar_app"].state, scope)
            except (Unauthorized, RateLimited) as exc:
                admitted = exc
        if not isinstance(admitted, Caller):
            # Answered here, inside the request middleware, so the refusal is logged and
            # counted with its own status.
            request = Request(scope)
            await refusal(request, admitted).to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        scope["user"] = admitted
        scope["auth"] = None
        await app(scope, receive, send)

    return middleware


ADMITTED = "omniroute.admitted"
"""Scope key: the caller (or the refusal) a shortcut decided before passing the request on to
Litestar, which then neither authenticates again nor spends a second rate-limit token."""


async def admit(state: State, scope: Scope) -> Caller:
    """The caller `Authorization: Bearer <key>` names, after spending one token of that key's
    rate limit (when one is set). Raises Unauthorized or RateLimited."""
    header = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    scheme, _sep, token = header.partition(" ")
    caller = await state.keyring.authenticate(token.strip() if scheme.lower() == "bearer" else None)
    limiter: RateLimiter | None = state.rate_limiter
    if limiter is not None and (wait := limiter.take(caller.key_id)):
        raise RateLimited(wait, limiter)
    return caller


def refusal(request: Request, exc: Unauthorized | RateLimited) -> Response:
    if isinstance(exc, Unauthorized):
        return engine_error(request, exc)
    seconds = retry_after(exc.wait)
    return problem(
        429,
        "Too many requests",
        f"this key may make {exc.limiter.rate:g} requests a second (bursts of {exc.limiter.burst:g}); "
        f"retry after {seconds} s",
        type_="/problems/too-many-requests",
        headers={"Retry-After": str(seconds)},
    )


# Handlers read the caller as `request.user`; the pool is the one injected dependency
# (two sibling dependencies would cost Litestar an anyio task group per request).
AuthRequest = Request[Caller, None, State]


def provide_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


_decoders: dict[type, msgspec.json.Decoder] = {}


async def strict(request: Request, data: T) -> T:
    """The body decoded again, strictly. Litestar converts bodies leniently ("5" becomes 5,
    "true" becomes True); a stock API must not guess what its caller meant. The body is
    already buffered, so this costs one small decode. Errors map to a 400 problem."""
    kind = type(data)
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder.decode(await request.body())


PoolDep = NamedDependency[asyncpg.Pool]
