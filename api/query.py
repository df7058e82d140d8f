"""Query strings are strict, like bodies: a parameter the operation does not declare, or a
single-valued one given twice, is a 400 problem naming it. (Litestar ignores unknown
parameters and keeps one of a repeated value; `?locaton_id=X` would list every location.)

The rules come from the app's own OpenAPI document, so the check and the document agree.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qsl

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


def strict_query(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string")
        if query and scope["type"] == "http":
            handler = scope["route_handler"]
            rule = scope["litestar_app"].state.query_rules.get(handler.operation_id)
            if rule is not None:
                counts = Counter(name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True))
                errors = [
                    {"field": name, "message": "unknown query parameter"} for name in counts if name not in rule.names
                ] + [
                    {"field": name, "message": "given more than once"}
                    for name, n in counts.items()
                    if n > 1 and name in rule.names and name not in rule.repeatable
                ]
                if errors:
                    response = problem(
                        400,
                        "Invalid request",
                        f"unknown or repeated query parameters: {', '.join(e['field'] for e in errors)}",
                        type_="/problems/invalid-request",
                        errors=errors,
                    )
                    request = Request(scope)
                    await response.to_asgi_response(app=None, request=request)(scope, receive, send)
                    return
        await app(scope, receive, send)

    return middleware
