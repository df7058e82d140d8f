"""Hypothesis-made bodies for reservations and orders: well-formed ones (some short of stock,
naming unknown SKUs or stores, repeating lines or order ids) and broken ones (fields of the
wrong type, missing or unknown fields, any JSON at all, bytes that are not JSON).

Whatever arrives: never a 5xx, every error is problem+json, a refused request writes
nothing, and at the end the ledger sums to every position (`omniroute check` finds no
drift), every reserved unit belongs to an active hold, and nothing is reserved beyond what
is on hand. OMNIROUTE_FUZZ_EXAMPLES (default 15) x 8 bodies per test; derandomized.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from api.app import create_app
from engine.config import Settings
from engine.services.stock import check_ledger
from tests.conftest import ADMIN_KEY
from tests.helpers import NETWORK, SKUS, WRITE_TABLES, build_network, make_key, receive

EXAMPLES = 8 * int(os.environ.get("OMNIROUTE_FUZZ_EXAMPLES", "15"))
TABLES = (*WRITE_TABLES, "orders", "fulfillments")
JSON = {"content-type": "application/json"}

sku = st.sampled_from([*SKUS, "SKU-NOPE"])
location = st.sampled_from([*NETWORK, "NOWHERE"])
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)

reservation_line = st.fixed_dictionaries({"sku": sku, "location_id": location, "quantity": st.integers(1, 40)})
reservation = st.fixed_dictionaries(
    {"lines": st.lists(reservation_line, min_size=1, max_size=4)},
    optional={"ttl_seconds": st.integers(1, 3600), "reference": st.text(min_size=1, max_size=20)},
)


@st.composite
def order(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(["ship", "pickup", "curbside"]))
    body: dict[str, Any] = {
        "order_id": f"web-{draw(st.integers(1, 12))}",  # repeats: replays and clashes
        "destination": {"lat": draw(st.floats(38.0, 42.0)), "lon": draw(st.floats(-76.0, -72.0))},
        "method": method,
        "lines": draw(
            st.lists(
                st.fixed_dictionaries({"line_id": st.sampled_from("123"), "sku": sku, "quantity": st.integers(1, 12)}),
                min_size=1,
                max_size=3,
                unique_by=lambda line: line["line_id"],
            )
        ),
        "allow_split": draw(st.booleans()),
        "allow_partial": draw(st.booleans()),
    }
    if method != "ship":
        body["pickup_location_id"] = draw(location)
    if draw(st.booleans()):
        body["promise_by"] = (date(2030, 1, 1) + timedelta(days=draw(st.integers(0, 30)))).isoformat()
    if draw(st.booleans()):
        body["defer"] = draw(st.booleans())
    return body


@st.composite
def broken(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """A valid body spoilt one way (which sometimes leaves it valid: that is fine too)."""
    body = draw(valid)
    how = draw(st.sampled_from(["replace", "drop", "extra", "replace-in-line", "any-json", "not-json"]))
    if how == "any-json":
        return json.dumps(draw(json_value)).encode()
    if how == "not-json":
        return draw(st.binary(max_size=40))
    if how == "replace-in-line":
        line = draw(st.sampled_from(body["lines"]))
        line[draw(st.sampled_from(sorted(line)))] = draw(json_value)
    elif how == "replace":
        body[draw(st.sampled_from(sorted(body)))] = draw(json_value)
    elif how == "drop":
        del body[draw(st.sampled_from(sorted(body)))]
    else:
        body[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in body))] = draw(json_value)
    return json.dumps(body).encode()


def encoded(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    return st.one_of(valid.map(lambda b: json.dumps(b).encode()), broken(valid))


@pytest.fixture
async def callers(client, db) -> dict[str, dict[str, str]]:
    await build_network(client)
    for sku_ in SKUS:
        for loc in NETWORK:
            await receive(client, sku_, loc, 25)
    return {
        "admin": {"Authorization": f"Bearer {ADMIN_KEY}"},
        "checkout": await make_key(client, "checkout"),
        "pos": await make_key(client, "pos", "STORE-NYC"),
    }


class Service:
    """The app on the sync test client's own event loop, and its pool for checks."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def run(self, fn: Any, *args: Any) -> Any:
        with self.client.portal() as portal:
            return portal.call(fn, self.client.app.state.pool, *args)

    def counts(self) -> dict[str, int]:
        async def count(pool: asyncpg.Pool) -> dict[str, int]:
            async with pool.acquire() as conn:
                return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}

        return self.run(count)

    def invariants(self) -> None:
        _, drifted, examples = self.run(check_ledger)
        assert drifted == 0, f"{drifted} positions differ from their ledger: {examples}"

        async def holds(pool: asyncpg.Pool) -> tuple[int, int, int]:
            async with pool.acquire() as conn:
                return (
                    await conn.fetchval("SELECT coalesce(sum(reserved), 0) FROM stock_positions"),
                    await conn.fetchval(
                        "SELECT coalesce(sum(quantity), 0) FROM reservation_lines WHERE state = 'active'"
                    ),
                    await conn.fetchval("SELECT count(*) FROM stock_positions WHERE reserved > on_hand"),
                )

        reserved, held, oversold = self.run(holds)
        assert reserved == held, f"reserved {reserved} but active holds {held}"
        assert oversold == 0


def send(service: Service, path: str, body: bytes, headers: dict[str, str], allowed: set[int], tally: dict) -> None:
    before = service.counts()
    r = service.client.post(path, content=body, headers={**JSON, **headers})
    tally[r.status_code] = tally.get(r.status_code, 0) + 1
    assert r.status_code in allowed, f"{path} {body[:300]!r}: {r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
        problem = r.json()
        assert problem["status"] == r.status_code and problem["title"] and problem["detail"], problem
        assert service.counts() == before, f"a refused {path} ({r.status_code}) changed the database: {body[:300]!r}"


def fuzz_settings(f: Any) -> Any:
    return settings(
        max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )(f)


def service_for(database_url: str) -> TestClient:
    settings_ = Settings.from_env({"OMNIROUTE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "OMNIROUTE_SCHEDULER": "off"})
    return TestClient(app=create_app(database_url, settings_), raise_server_exceptions=False)


def test_reservation_bodies_never_break_the_service_or_the_ledger(callers, database_url):
    tally: dict[int, int] = {}
    with service_for(database_url) as client:
        service = Service(client)

        @fuzz_settings
        @given(body=encoded(reservation), caller=st.sampled_from(sorted(callers)))
        def run(body: bytes, caller: str) -> None:
            send(service, "/v1/reservations", body, callers[caller], {201, 400, 403, 409, 422}, tally)

        run()
        service.invariants()
    print(f"\nreservation bodies: {sum(tally.values())} requests, by status {dict(sorted(tally.items()))}")
    assert tally.get(201) and tally.get(400) and tally.get(409), f"the bodies did not reach every outcome: {tally}"


def test_order_bodies_never_break_the_service_or_the_ledger(callers, database_url):
    tally: dict[int, int] = {}
    with service_for(database_url) as client:
        service = Service(client)

        @fuzz_settings
        @given(
            body=encoded(order()),
            caller=st.sampled_from(sorted(callers)),
            path=st.sampled_from(["/v1/orders", "/v1/orders/quote"]),
        )
        def run(body: bytes, caller: str, path: str) -> None:
            send(service, path, body, callers[caller], {200, 201, 400, 403, 409, 422}, tally)

        run()
        service.invariants()
    print(f"\norder bodies: {sum(tally.values())} requests, by status {dict(sorted(tally.items()))}")
    assert tally.get(201) and tally.get(400), f"the bodies did not reach every outcome: {tally}"
