"""Query strings are strict, like bodies: a parameter the operation does not declare, or a
single-valued one given twice, is a 400 problem naming it. (Litestar ignores unknown
parameters and keeps one of a repeated value; `?locaton_id=X` would list every location.)

The rules come from the app's own OpenAPI document, so the check and the document agree.

A handler on a hot path may read its query itself (`values`, then one msgspec.convert into a
Struct) instead of declaring each parameter for Litestar to parse: `query_operation`
documents that Struct's fields as the operation's query parameters, so the document, these
rules and the conversion come from one definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import msgspec
from litestar import Litestar, Request
from litestar.enums import ParamType
from litestar.openapi.spec import OpenAPIType, Operation, Parameter, Schema
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


def values(query: bytes, lists: frozenset[str]) -> dict[str, Any]:
    """The parameters' values by name, decoded as `_names` decodes names; those named in
    `lists` gathered into lists, the others as given (strict_query has refused repeats).
    A few µs where Litestar's parsing and signature model take tens."""
    out: dict[str, Any] = {}
    text = query.decode("latin-1")
    for part in text.split("&"):
        if not part:
            continue
        name, _eq, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name, encoding="utf-8"), unquote_plus(value, encoding="utf-8")
        if name in lists:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _schema(json_schema: dict[str, Any]) -> Schema:
    """A JSON Schema (as msgspec writes it) as Litestar's OpenAPI Schema object."""
    fields: dict[str, Any] = {}
    for key, value in json_schema.items():
        field = _CAMEL.sub("_", key).lower()
        if field == "type":
            value = OpenAPIType(value)
        elif field == "items":
            value = _schema(value)
        elif field in ("any_of", "one_of", "all_of"):
            value = [_schema(v) for v in value]
        fields[field] = value
    return Schema(**fields)


def query_operation(model: type[msgspec.Struct]) -> type[Operation]:
    """An OpenAPI Operation class (`@get(..., operation_class=...)`) that lists `model`'s
    fields as query parameters, for a handler that converts its query into `model` itself."""
    (ref,), components = msgspec.json.schema_components([model], ref_template="{name}")
    definition = components[ref["$ref"]]
    required = set(definition.get("required", ()))
    parameters = []
    for name, prop in definition["properties"].items():
        schema = _schema(prop)
        parameters.append(
            Parameter(
                name=name,
                param_in=ParamType.QUERY,
                schema=schema,
                required=name in required,
                description=schema.description,
            )
        )

    @dataclass
    class QueryOperation(Operation):
        def __post_init__(self) -> None:
            self.parameters = [*(self.parameters or ()), *parameters]

    QueryOperation.__name__ = QueryOperation.__qualname__ = f"{model.__name__}Operation"
    return QueryOperation


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


def query_errors(query: bytes, rule: QueryRule) -> list[dict[str, str]]:
    """The parameters of `query` that `rule` refuses: unknown, or single-valued and repeated."""
    return _errors(_names(query), rule)


def strict_query(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string")
        if query and scope["type"] == "http":
            rule = scope["litestar_app"].state.query_rules.get(scope["route_handler"].operation_id)
            if rule is not None and (errors := query_errors(query, rule)):
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
