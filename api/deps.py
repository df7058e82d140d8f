"""What handlers receive: the pool, the authenticated caller, strictly decoded bodies."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import asyncpg
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.middleware.authentication import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import HeaderParameter

from engine.core.model import Caller

T = TypeVar("T")

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


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    """Resolves `Authorization: Bearer <key>` to the caller (`request.user`) for every route
    not marked `exclude_from_auth`. It runs before the body or parameters are parsed, so a
    request without a valid key is a 401 whatever else is wrong with it. (A middleware, not
    a guard: Litestar copies the route handler for every guard call.)"""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _sep, token = header.partition(" ")
        keyring = connection.app.state.keyring
        caller = await keyring.authenticate(token.strip() if scheme.lower() == "bearer" else None)
        return AuthenticationResult(user=caller, auth=None)


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
