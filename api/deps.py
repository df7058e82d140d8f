"""What handlers receive: the pool, the authenticated caller, strictly decoded bodies."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.middleware.authentication import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import HeaderParameter
from litestar.types import Receive, Scope, Send

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


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    """Resolves `Authorization: Bearer <key>` to the caller (`request.user`) for every route
    not marked `exclude_from_auth`, then spends one token of that key's rate limit (when
    one is set). It runs before the body or parameters are parsed, so a request without a
    valid key is a 401 whatever else is wrong with it. (A middleware, not a guard: Litestar
    copies the route handler for every guard call.)"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (Unauthorized, RateLimited) as exc:
            # Raised by authenticate_request only: answered here, inside the request
            # middleware, so the refusal is logged and counted with its own status.
            request = Request(scope)
            await refusal(request, exc).to_asgi_response(app=None, request=request)(scope, receive, send)

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _sep, token = header.partition(" ")
        state = connection.app.state
        caller = await state.keyring.authenticate(token.strip() if scheme.lower() == "bearer" else None)
        limiter: RateLimiter | None = state.rate_limiter
        if limiter is not None and (wait := limiter.take(caller.key_id)):
            raise RateLimited(wait, limiter)
        return AuthenticationResult(user=caller, auth=None)


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
