"""Every error leaves as RFC 9457 application/problem+json; mapped here and only here."""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from engine.errors import EngineError, Unauthorized

log = logging.getLogger("omniroute.api")
PROBLEM = "application/problem+json"
_encoder = msgspec.json.Encoder()
DATABASE_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details, as every error is answered. Some problems carry more
    members (`shortages`, `key_id`, `location_ids`, …); `errors` names offending fields."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


_MEANING = {
    400: "The request does not match the schema (types, bounds, unknown fields, malformed JSON).",
    401: "No valid API key (missing, unknown or revoked).",
    403: "The key's role, or the POS key's store, does not allow this.",
    404: "No such resource (or not one this key may see).",
    409: "The request clashes with the current state, or an Idempotency-Key was reused with another request.",
    410: "The feed cursor is older than what is kept, or ahead of the feed: read the state again, then follow.",
    413: "The body is over the size limit.",
    422: "Well-formed, but names an unknown SKU or location, repeats a line, or asks for something not allowed.",
    429: "This key is over its rate limit; retry after the Retry-After seconds.",
    503: "The database is not reachable; retry shortly.",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for the problems an authenticated operation may answer: those
    given, plus 401, 429 and 503, which any of them can."""
    return {
        status: ResponseSpec(
            data_container=Problem, media_type=PROBLEM, description=_MEANING[status], generate_examples=False
        )
        for status in sorted({*statuses, 401, 429, 503})
    }


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return Response(content=_encoder.encode(body), status_code=status, media_type=PROBLEM, headers=headers)


def _slug(title: str) -> str:
    return "/problems/" + title.lower().replace(" ", "-")


def engine_problem(exc: EngineError) -> dict[str, Any]:
    """The problem document of an engine error (also sent inside an event stream)."""
    return {"type": _slug(exc.title), "title": exc.title, "status": exc.status, "detail": exc.detail, **exc.extra}


def engine_error(_: Request, exc: EngineError) -> Response:
    return problem(exc.status, exc.title, exc.detail, type_=_slug(exc.title), **exc.extra)


_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]+)`")
_MISSING_PARAM = re.compile(r"^Missing required (\w+) parameter '([^']+)'")
_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_FIELD_PREFIX = re.compile(r"^([A-Za-z_]\w*): (.+)$", re.DOTALL)  # api/schemas.py cross-field checks


def _join(parent: str, name: str) -> str:
    return name if parent in ("body", "query", "") else f"{parent}.{name}"


def _field_error(key: str | None, source: str | None, message: str) -> dict[str, str]:
    """One entry of `errors`, naming the field as the caller spelt it (never Litestar's `data`)."""
    field = key or "body"
    if field == "data":
        field = "body"
    if source == "header":
        field = "-".join(part.capitalize() for part in field.split("_"))
    if field == "body" and message == "'data'":  # the body was empty: Litestar reports a KeyError
        message = "a JSON body is required"
    if named := _NAMED_FIELD.match(message):  # name the unknown or missing field itself
        field = _join(field, named.group(1))
    elif prefixed := _FIELD_PREFIX.match(message):
        field, message = _join(field, prefixed.group(1)), prefixed.group(2)
    return {"field": field, "message": message}


def validation_error(_: Request, exc: ValidationException) -> Response:
    errors = [
        _field_error(e.get("key"), e.get("source"), e.get("message", ""))
        for e in exc.extra or []
        if isinstance(e, dict)
    ]
    detail = exc.detail if exc.detail and exc.detail != "Bad Request" else "the request does not match the schema"
    if not errors and (missing := _MISSING_PARAM.match(detail)):
        errors = [{"field": missing.group(2), "message": f"required {missing.group(1)} parameter"}]
    return problem(400, "Invalid request", detail, type_="/problems/invalid-request", errors=errors)


def decode_error(_: Request, exc: msgspec.ValidationError) -> Response:
    """A msgspec.convert() inside a handler (query parameters gathered into a schema) failed."""
    message = str(exc)
    at = _AT_PATH.search(message)
    error = _field_error((at.group(1) or "query") if at else "query", None, message[: at.start()] if at else message)
    return problem(400, "Invalid request", error["message"], type_="/problems/invalid-request", errors=[error])


def http_error(_: Request, exc: HTTPException) -> Response:
    if exc.status_code == 400 and isinstance(exc.__cause__, SerializationException):
        detail = f"the body is not valid JSON: {exc.detail}"
        return problem(
            400,
            "Malformed request body",
            detail,
            type_="/problems/malformed-body",
            errors=[{"field": "body", "message": exc.detail}],
        )
    title = {
        401: "Unauthorized",
        404: "Not found",
        405: "Method not allowed",
        413: "Request body too large",
        429: "Too many requests",
    }.get(exc.status_code, "Bad request" if exc.status_code < 500 else "Error")
    return problem(exc.status_code, title, exc.detail or title, type_=_slug(title), headers=exc.headers)


def database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
    return problem(
        503,
        "Service unavailable",
        "the database is not reachable; retry shortly",
        type_="/problems/service-unavailable",
    )


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

__all__ = ["EXCEPTION_HANDLERS", "Problem", "Unauthorized", "engine_problem", "problem", "problems"]
