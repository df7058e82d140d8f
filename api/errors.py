"""Every error leaves as RFC 9457 application/problem+json; mapped here and only here."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from engine.errors import EngineError, Unauthorized

log = logging.getLogger("omniroute.api")
PROBLEM = "application/problem+json"
_encoder = msgspec.json.Encoder()
DATABASE_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                 asyncpg.InterfaceError, asyncpg.exceptions.AdminShutdownError)


def problem(status: int, title: str, detail: str, *, type_: str = "about:blank", **extra: Any) -> Response:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(content=_encoder.encode(body), status_code=status, media_type=PROBLEM, headers=headers)


def _slug(title: str) -> str:
    return "/problems/" + title.lower().replace(" ", "-")


def engine_error(_: Request, exc: EngineError) -> Response:
    return problem(exc.status, exc.title, exc.detail, type_=_slug(exc.title), **exc.extra)


def validation_error(_: Request, exc: ValidationException) -> Response:
    errors = []
    for e in exc.extra or []:
        if isinstance(e, dict):
            errors.append({"field": e.get("key") or e.get("source") or "body", "message": e.get("message", "")})
    detail = exc.detail if exc.detail and exc.detail != "Bad Request" else "the request does not match the schema"
    return problem(400, "Invalid request", detail, type_="/problems/invalid-request", errors=errors)


def decode_error(_: Request, exc: msgspec.ValidationError) -> Response:
    return problem(400, "Invalid request", str(exc), type_="/problems/invalid-request",
                   errors=[{"field": "query", "message": str(exc)}])


def http_error(_: Request, exc: HTTPException) -> Response:
    title = {401: "Unauthorized", 404: "Not found", 405: "Method not allowed", 413: "Request body too large",
             429: "Too many requests"}.get(exc.status_code, "Bad request" if exc.status_code < 500 else "Error")
    return problem(exc.status_code, title, exc.detail or title, type_=_slug(title))


def database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
    return problem(503, "Service unavailable", "the database is not reachable; retry shortly",
                   type_="/problems/service-unavailable")


def unexpected_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DATABASE_DOWN):
        return database_unavailable(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal error", "an unexpected error occurred; it has been logged")


EXCEPTION_HANDLERS = {
    EngineError: engine_error,
    ValidationException: validation_error,
    msgspec.ValidationError: decode_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}

__all__ = ["EXCEPTION_HANDLERS", "Unauthorized", "problem"]
