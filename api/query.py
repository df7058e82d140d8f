"""Query strings are strict, like bodies: a parameter the operation does not declare, or a
single-valued one given twice, is a 400 problem naming it. (Litestar ignores unknown
parameters and keeps one of a repeated value; `?locaton_id=X` would list every location.)

The rules come from the app's own OpenAPI document, so the check and the document agree.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import msgspec
from litestar import Litestar, Request
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.types import ASGIApp, Receive, Scope, Send

from api.errors import problem


class QueryRule(msgspec.Struct, frozen=True):
    names: frozenset[str]
    repeatable: frozenset[str]


def _is_array(schema: object) -> bool:
    if not isinstance(schema, Schema):
        return False
    return schema.type == OpenAPIType.ARRAY or any(_is_array(s) for s in schema.one_of or ())


def query_rules(app: Litestar) -> dict[str, QueryRule]:
    """operation_id -> the query parameters it declares (and which of them may repeat)."""
    rules = {}
    for item in (app.openapi_schema.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None or not operation.operation_id:
                continue
            params = [p for p in operation.parameters or () if getattr(p, "param_in", None) == "query"]
            rules[operation.operation_id] = QueryRule(
                names=frozenset(p.name for p in params),
                repeatable=frozenset(p.name for p in params if _is_array(p.schema)),
            )
    return rules


_NAME = re.compile(rb"(?:^|&)([^=&]*)(=?)")


def _names(query: bytes) -> list[str]:
    """Parameter names in the order given (values are left to Litestar): a few µs a request.
    An empty name before `=` counts (it is unknown); an empty part (`a=1&&b=2`) does not."""
    names = [name for name, eq in _NAME.findall(query) if name or eq]
    if b"%" in query or b"+" in query:
        return [unquote_plus(name.decode("latin-1"), encoding="utf-8") for name in names]
    return [name.decode("latin-1") for name in names]


def _errors(names: list[str], rule: QueryRule) -> list[dict[str, str]]:
    """One error per offending name, in the order the names came."""
    errors, seen, reported = [], set(), set()
    for name in names:
        if name not in rule.names:
            message = "unknown query parameter"
        elif name in seen and name not in rule.repeatable:
            message = "given more than once"
        else:
            message = None
        if message and name not in reported:
            errors.append({"field": name, "message": message})
            reported.add(name)
        seen.add(name)
    return errors


def strict_query(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string")
        if query and scope["type"] == "http":
            rule = scope["litestar_app"].state.query_rules.get(scope["route_handler"].operation_id)
            if rule is not None and (errors := _errors(_names(query), rule)):
                response = problem(
                    400,
                    "Invalid request",
                    f"unknown or repeated query parameters: {', '.join(e['field'] for e in errors)}",
                    type_="/problems/invalid-request",
                    errors=errors,
                )
                await response.to_asgi_response(app=None, request=Request(scope))(scope, receive, send)
                return
        await app(scope, receive, send)

    return middleware
