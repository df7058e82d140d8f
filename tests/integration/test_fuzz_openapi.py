"""Schemathesis against the OpenAPI document, every operation, as several roles.

The service runs in this process (schemathesis drives the ASGI app on its own event loop,
with its own lifespan and pool) over the test database with a small network in it. Each
operation gets OMNIROUTE_FUZZ_EXAMPLES generated requests (default 15; a third of that for
the checkout and planner keys; derandomized, so a run is reproducible) that fit the schema
and as many that do not, per role. Every answer must be: no 5xx; a status the document
lists for the operation; the documented content type; a body that matches the documented
schema; problem+json for every error; and a request that breaks the schema is refused.

A longer drill: OMNIROUTE_FUZZ_EXAMPLES=150 uv run --extra dev pytest -s tests/integration/test_fuzz_openapi.py
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from engine.config import Settings
from tests.conftest import ADMIN_KEY
from tests.helpers import build_network, make_key, receive

EXAMPLES = int(os.environ.get("OMNIROUTE_FUZZ_EXAMPLES", "15"))
# Requests per operation and generation mode, per role: admin reaches every operation's logic,
# a POS key is bound to a store; the other roles are mostly refused early, so fewer suffice.
ROLES = {"admin": EXAMPLES, "pos": EXAMPLES, "checkout": max(1, EXAMPLES // 3), "planner": max(1, EXAMPLES // 3)}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# Authorization is ours to send (a valid key of the role under test), not a parameter to
# mutate; a request refused for its size (413) has been refused, as it should be, and so
# has a feed read refused with 410 for a cursor the feed never issued. (A value the fuzzer
# means as invalid can be valid on the wire, `location_id=false` is a string; whether the
# cursor check then refuses it depends on how far the session's feed has got.)
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"with-security-parameters": False},
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 410, 413, 415, 422, 428, 429]
            }
        },
    }
)


def errors_are_problems(ctx, response, case) -> bool | None:
    """Every 4xx and 5xx is RFC 9457 problem+json with type, title, status and detail."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/problem+json"), f"{response.status_code} as {content_type!r}"
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == response.status_code, body
    return True


@pytest.fixture
async def keys(client, db) -> dict[str, str]:
    """A network with some stock, and a key per role (the pos key at STORE-NYC)."""
    await build_network(client)
    for sku in ("SKU-A", "SKU-B"):
        await receive(client, sku, "STORE-NYC", 20)
        await receive(client, sku, "DC-NJ", 50)
    return {
        "admin": f"Bearer {ADMIN_KEY}",
        "checkout": (await make_key(client, "checkout"))["Authorization"],
        "pos": (await make_key(client, "pos", "STORE-NYC"))["Authorization"],
        "planner": (await make_key(client, "planner"))["Authorization"],
    }


def no_wait(query: dict | None) -> dict:
    """A long poll with nothing new waits `timeout` seconds (20 by default): the fuzzer asks
    for no wait wherever it generated a valid timeout or none, and keeps invalid ones."""
    query = dict(query or {})
    try:
        valid = 0 <= float(query.get("timeout", 0)) <= 60
    except (TypeError, ValueError):
        valid = False
    if valid:
        query["timeout"] = "0"
    return query


def fuzz_operation(
    operation, mode: GenerationMode, authorization: str, examples: int, tally: Counter, failures: dict
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        if operation.label == "GET /v1/events":
            case.query = no_wait(case.query)
        response = case.call(headers={"Authorization": authorization})
        tally[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, additional_checks=[errors_are_problems])
        except (AssertionError, BaseExceptionGroup) as exc:  # kept: one example per operation and failure
            kinds = [line.strip() for line in str(exc).splitlines() if line.startswith("- ")] or [str(exc)[:200]]
            failures.setdefault(f"{operation.label} [{mode.value}]: {'; '.join(kinds)}", str(exc)[:3000])

    run()


def fuzz(schema, authorization: str, examples: int, tally: Counter, failures: dict[str, str]) -> None:
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(result.ok(), mode, authorization, examples, tally, failures)


@pytest.mark.parametrize("role", list(ROLES))
def test_the_api_answers_every_generated_request_as_its_openapi_document_says(keys, database_url, pool, role):
    app = create_app(
        database_url,
        Settings.from_env({"OMNIROUTE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "OMNIROUTE_SCHEDULER": "off"}),
    )
    tally: Counter = Counter()
    failures: dict[str, str] = {}
    try:
        schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app, config=CONFIG)
        fuzz(schema, keys[role], ROLES[role], tally, failures)
    finally:
        asgi.shutdown_lifespans()
    cases = sum(tally.values())
    by_status = Counter()
    for (_, status), n in tally.items():
        by_status[status] += n
    print(f"\nfuzz as {role}: {cases} requests over {len({op for op, _ in tally})} operations; by status {by_status}")
    assert not failures, "\n\n".join(f"{title}\n{detail}" for title, detail in sorted(failures.items()))
    assert not [s for s in by_status if s >= 500]
    assert cases >= ROLES[role] * len({op for op, _ in tally}), "fewer requests than asked for"
