"""Every route of the app × every kind of caller: exactly the expected status.

The routes are read from the app itself, so a new endpoint without an entry in MATRIX fails
here until someone decides who may call it. Callers: no key, a made-up key, a revoked
(admin) key, and valid admin, checkout, planner and POS keys, the POS key once at the store
the request is about (STORE-NYC) and once at another (STORE-EWR). A refused request (401,
403, or a 404 that hides what another key owns) must write nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.helpers import ADMIN, build_network, receive, row_counts

CALLERS = ("none", "bad", "revoked", "admin", "checkout", "pos_own", "pos_other", "planner")
KEYED = CALLERS[3:]
NYC = {"lat": 40.7128, "lon": -74.0060}
LOCATION = {"kind": "store", "name": "Manhattan", "lat": 40.7128, "lon": -74.0060, "pickup": True, "curbside": True}


def only(ok: int, *allowed: str, **others: int) -> dict[str, int]:
    """`ok` for the `allowed` callers, 403 for every other valid key (unless `others` says),
    401 without a valid key."""
    return {c: ok if c in allowed else others.get(c, 403 if c in KEYED else 401) for c in CALLERS}


def public(ok: int) -> dict[str, int]:
    return dict.fromkeys(CALLERS, ok)


ANY_KEY = KEYED


class World:
    """The network, some stock, a key per caller, and builders for what routes act on."""

    def __init__(self, client: AsyncTestClient, db: asyncpg.Pool) -> None:
        self.client, self.db = client, db
        self.auth: dict[str, str | None] = {"none": None, "bad": "Bearer omr_not-a-real-key"}
        self.serial = 0

    async def setup(self) -> None:
        await build_network(self.client)
        for sku in ("SKU-A", "SKU-B"):
            await receive(self.client, sku, "STORE-NYC", 200)
            await receive(self.client, sku, "DC-NJ", 200)
        for caller, role, location in (
            ("admin", "admin", None),
            ("checkout", "checkout", None),
            ("pos_own", "pos", "STORE-NYC"),
            ("pos_other", "pos", "STORE-EWR"),
            ("planner", "planner", None),
            ("revoked", "admin", None),
        ):
            issued = await self.post("/v1/api-keys", json={"role": role, "location_id": location})
            self.auth[caller] = f"Bearer {issued['key']}"
        r = await self.client.delete(f"/v1/api-keys/{issued['key_id']}", headers=ADMIN)
        assert r.status_code == 204, r.text

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def headers(self, caller: str) -> dict[str, str]:
        return {"Authorization": self.auth[caller]} if self.auth.get(caller) else {}

    async def post(self, path: str, caller: str = "admin", **kw: Any) -> dict:
        r = await self.client.post(path, headers={**ADMIN, **self.headers(caller)}, **kw)
        assert r.status_code in (200, 201, 202), r.text
        return r.json()

    async def reservation(self, owner: str) -> str:
        body = {"lines": [{"sku": "SKU-A", "location_id": "STORE-NYC", "quantity": 1}], "ttl_seconds": 600}
        return (await self.post("/v1/reservations", owner, json=body))["reservation_id"]

    async def order(self, owner: str, method: str = "ship") -> dict:
        body = {
            "order_id": self.next_id("order"),
            "destination": NYC,
            "method": method,
            "lines": [{"line_id": "1", "sku": "SKU-A", "quantity": 1}],
        }
        if method != "ship":
            body["pickup_location_id"] = "STORE-NYC"
        return await self.post("/v1/orders", owner, json=body)

    async def pickup_fulfillment(self) -> str:
        order = await self.order("checkout", method="pickup")
        [f] = order["fulfillments"]
        assert f["location_id"] == "STORE-NYC", order
        return f"/v1/orders/{order['order_id']}/fulfillments/{f['fulfillment_id']}"

    async def wait(self, path: str) -> dict:
        for _ in range(600):
            r = await self.client.get(path, headers=ADMIN)
            assert r.status_code == 200, r.text
            if r.json()["status"] not in ("running", "applying"):
                return r.json()
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path} still running")

    async def routing_run(self) -> str:
        run = await self.post("/v1/routing-runs", json={"time_limit_s": 1, "bound_time_limit_s": 0})
        await self.wait(f"/v1/routing-runs/{run['run_id']}")
        return run["run_id"]

    async def rebalancing_run(self) -> str:
        await self._put_demand()
        run = await self.post("/v1/rebalancing-runs", json={"demand": "given"})
        done = await self.wait(f"/v1/rebalancing-runs/{run['run_id']}")
        assert done["status"] == "proposed", done
        return run["run_id"]

    async def _put_demand(self) -> None:
        body = {"demand": [{"sku": "SKU-A", "location_id": "STORE-NYC", "units_per_day": 30}]}
        r = await self.client.put("/v1/demand", json=body, headers=ADMIN)
        assert r.status_code == 200, r.text

    async def transfer_to_nyc(self) -> str:
        run_id = await self.rebalancing_run()
        await self.post(f"/v1/rebalancing-runs/{run_id}/apply")
        done = await self.wait(f"/v1/rebalancing-runs/{run_id}")
        transfers = [p["transfer_id"] for p in done["proposals"] if p["to_location_id"] == "STORE-NYC"]
        assert transfers, done
        return transfers[0]


# What a route needs to be called: (method, path, request kwargs), given the world and caller.
Prepare = Callable[[World, str], Awaitable[tuple[str, dict[str, Any]]]]


def fixed(path: str, **request: Any) -> Prepare:
    async def prepare(w: World, caller: str) -> tuple[str, dict[str, Any]]:
        return path, request

    return prepare


def reservation_action(action: str, **request: Any) -> Prepare:
    async def prepare(w: World, caller: str) -> tuple[str, dict[str, Any]]:
        owner = caller if caller in ("admin", "checkout", "pos_own") else "checkout"
        return f"/v1/reservations/{await w.reservation(owner)}{action}", request

    return prepare


def order_action(action: str) -> Prepare:
    async def prepare(w: World, caller: str) -> tuple[str, dict[str, Any]]:
        owner = caller if caller in ("admin", "checkout") else "checkout"
        return f"/v1/orders/{(await w.order(owner))['order_id']}{action}", {}

    return prepare


def fulfillment_action(action: str) -> Prepare:
    async def prepare(w: World, caller: str) -> tuple[str, dict[str, Any]]:
        return f"{await w.pickup_fulfillment()}{action}", {}

    return prepare


async def new_order(w: World, caller: str) -> tuple[str, dict[str, Any]]:
    body = {
        "order_id": w.next_id("new"),
        "destination": NYC,
        "lines": [{"line_id": "1", "sku": "SKU-B", "quantity": 1}],
    }
    return "/v1/orders", {"json": body}


async def victim_key(w: World, caller: str) -> tuple[str, dict[str, Any]]:
    r = await w.client.post("/v1/api-keys", json={"role": "checkout"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return f"/v1/api-keys/{r.json()['key_id']}", {}


async def start_routing_run(w: World, caller: str) -> tuple[str, dict[str, Any]]:
    return "/v1/routing-runs", {"json": {"time_limit_s": 1, "bound_time_limit_s": 0}}


async def read_routing_run(w: World, caller: str) -> tuple[str, dict[str, Any]]:
    if not hasattr(w, "routing_run_id"):
        w.routing_run_id = await w.routing_run()
    return f"/v1/routing-runs/{w.routing_run_id}", {}


async def start_rebalancing_run(w: World, caller: str) -> tuple[str, dict[str, Any]]:
    return "/v1/rebalancing-runs", {"json": {"demand": "given"}}


async def read_rebalancing_run(w: World, caller: str) -> tuple[str, dict[str, Any]]:
    if not hasattr(w, "rebalancing_run_id"):
        w.rebalancing_run_id = await w.rebalancing_run()
    return f"/v1/rebalancing-runs/{w.rebalancing_run_id}", {"params": {"limit": 10}}


async def apply_rebalancing_run(w: World, caller: str) -> tuple[str, dict[str, Any]]:
    return f"/v1/rebalancing-runs/{await w.rebalancing_run()}/apply", {}


def transfer_action(action: str) -> Prepare:
    async def prepare(w: World, caller: str) -> tuple[str, dict[str, Any]]:
        if not hasattr(w, "transfer_id"):
            w.transfer_id = await w.transfer_to_nyc()
        return f"/v1/transfers/{w.transfer_id}{action}", {}

    return prepare


BULK = {"items": [{"sku": "SKU-Z", "name": "Z"}]}
RECEIPT = {"movements": [{"sku": "SKU-A", "location_id": "STORE-NYC", "kind": "receipt", "quantity": 1}]}
RESERVE = {"lines": [{"sku": "SKU-A", "location_id": "STORE-NYC", "quantity": 1}]}
QUOTE = {"order_id": "quote-1", "destination": NYC, "lines": [{"line_id": "1", "sku": "SKU-A", "quantity": 1}]}
OWNER_OR_ADMIN = {"pos_other": 404, "planner": 404}  # another key's reservation is not found

MATRIX: dict[str, tuple[dict[str, int], Prepare]] = {
    "GET /healthz": (public(200), fixed("/healthz")),
    "GET /readyz": (public(200), fixed("/readyz")),
    "GET /metrics": (public(200), fixed("/metrics")),
    "GET /schema": (public(200), fixed("/schema")),
    "GET /schema/openapi.json": (public(200), fixed("/schema/openapi.json")),
    "GET /schema/oauth2-redirect.html": (public(200), fixed("/schema/oauth2-redirect.html")),
    "GET /schema/{path:str}": (public(404), fixed("/schema/redoc")),
    "GET /v1/locations": (only(200, *ANY_KEY), fixed("/v1/locations")),
    "GET /v1/locations/{location_id:str}": (only(200, *ANY_KEY), fixed("/v1/locations/STORE-NYC")),
    "PUT /v1/locations/{location_id:str}": (only(200, "admin"), fixed("/v1/locations/STORE-NYC", json=LOCATION)),
    "POST /v1/items/bulk": (
        only(200, "admin"),
        fixed("/v1/items/bulk", json={"items": [{"sku": "SKU-Z", "name": "Z"}]}),
    ),
    "GET /v1/items/{sku:str}": (only(200, *ANY_KEY), fixed("/v1/items/SKU-A")),
    "PUT /v1/items/{sku:str}": (only(200, "admin"), fixed("/v1/items/SKU-A", json={"name": "A", "weight_kg": 1.0})),
    "POST /v1/stock/movements": (only(201, "admin", "pos_own"), fixed("/v1/stock/movements", json=RECEIPT)),
    "GET /v1/stock": (only(200, *ANY_KEY), fixed("/v1/stock", params={"location_id": "STORE-NYC"})),
    "GET /v1/availability": (only(200, *ANY_KEY), fixed("/v1/availability", params={"sku": ["SKU-A"], **NYC})),
    "POST /v1/availability": (only(200, *ANY_KEY), fixed("/v1/availability", json={"skus": ["SKU-A", "SKU-B"]})),
    "GET /v1/events": (only(200, *ANY_KEY), fixed("/v1/events", params={"timeout": "0"})),
    "GET /v1/api-keys": (only(200, "admin"), fixed("/v1/api-keys")),
    "POST /v1/api-keys": (only(201, "admin"), fixed("/v1/api-keys", json={"role": "planner"})),
    "DELETE /v1/api-keys/{key_id:str}": (only(204, "admin"), victim_key),
    "POST /v1/reservations": (only(201, "admin", "checkout", "pos_own"), fixed("/v1/reservations", json=RESERVE)),
    "GET /v1/reservations/{reservation_id:uuid}": (
        only(200, "admin", "checkout", "pos_own", **OWNER_OR_ADMIN),
        reservation_action(""),
    ),
    "POST /v1/reservations/{reservation_id:uuid}/commit": (
        only(200, "admin", "checkout", "pos_own", **OWNER_OR_ADMIN),
        reservation_action("/commit"),
    ),
    "POST /v1/reservations/{reservation_id:uuid}/release": (
        only(200, "admin", "checkout", "pos_own", **OWNER_OR_ADMIN),
        reservation_action("/release"),
    ),
    "POST /v1/reservations/{reservation_id:uuid}/extend": (
        only(200, "admin", "checkout", "pos_own", **OWNER_OR_ADMIN),
        reservation_action("/extend", json={"ttl_seconds": 900}),
    ),
    "POST /v1/orders/quote": (only(200, "admin", "checkout"), fixed("/v1/orders/quote", json=QUOTE)),
    "POST /v1/orders": (only(201, "admin", "checkout"), new_order),
    "GET /v1/orders/{order_id:str}": (only(200, "admin", "checkout"), order_action("")),
    "POST /v1/orders/{order_id:str}/cancel": (only(200, "admin", "checkout"), order_action("/cancel")),
    "POST /v1/orders/{order_id:str}/fulfillments/{fulfillment_id:uuid}/reject": (
        only(200, "admin", "pos_own"),
        fulfillment_action("/reject"),
    ),
    "POST /v1/orders/{order_id:str}/fulfillments/{fulfillment_id:uuid}/complete": (
        only(200, "admin", "pos_own"),
        fulfillment_action("/complete"),
    ),
    "GET /v1/routing-runs": (only(200, "admin", "planner"), fixed("/v1/routing-runs")),
    "POST /v1/routing-runs": (only(202, "admin", "planner"), start_routing_run),
    "GET /v1/routing-runs/{run_id:uuid}": (only(200, "admin", "planner"), read_routing_run),
    "PUT /v1/demand": (
        only(200, "admin", "planner"),
        fixed("/v1/demand", json={"demand": [{"sku": "SKU-B", "location_id": "STORE-EWR", "units_per_day": 1}]}),
    ),
    "POST /v1/rebalancing-runs": (only(202, "admin", "planner"), start_rebalancing_run),
    "GET /v1/rebalancing-runs/{run_id:uuid}": (only(200, "admin", "planner"), read_rebalancing_run),
    "POST /v1/rebalancing-runs/{run_id:uuid}/apply": (only(202, "admin", "planner"), apply_rebalancing_run),
    "GET /v1/transfers/{transfer_id:uuid}": (
        only(200, "admin", "planner", "pos_own", pos_other=404),
        transfer_action(""),
    ),
    "POST /v1/transfers/{transfer_id:uuid}/receive": (only(200, "admin", "pos_own"), transfer_action("/receive")),
}
# Runs started in a cell are waited for, so the next cell does not meet a run under way.
WAIT_FOR = {"POST /v1/routing-runs": "/v1/routing-runs/{}", "POST /v1/rebalancing-runs": "/v1/rebalancing-runs/{}"}
WAIT_FOR["POST /v1/rebalancing-runs/{run_id:uuid}/apply"] = "/v1/rebalancing-runs/{}"


def app_routes() -> list[str]:
    """Every (method, path) the app serves, OPTIONS included, read from the app."""
    app = create_app("postgresql://unused/unused")
    return sorted(
        f"{method} {route.path}"
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
    )


ROUTES = app_routes()


def expectation(route: str) -> tuple[dict[str, int], Prepare]:
    method, path = route.split(" ", 1)
    if method == "OPTIONS":  # Litestar's automatic OPTIONS (CORS preflight): no key, only the allowed methods
        return public(204), _options_path(path)
    if route not in MATRIX:
        pytest.fail(f"{route} has no entry in MATRIX: decide who may call it and add one")
    return MATRIX[route]


def _options_path(path: str) -> Prepare:
    concrete = path
    for name, value in (
        ("{location_id:str}", "STORE-NYC"),
        ("{sku:str}", "SKU-A"),
        ("{key_id:str}", "key_000000000000"),
        ("{order_id:str}", "order-1"),
        ("{path:str}", "x"),
    ):
        concrete = concrete.replace(name, value)
    for name in ("reservation_id", "fulfillment_id", "run_id", "transfer_id"):
        concrete = concrete.replace("{" + name + ":uuid}", "00000000-0000-0000-0000-000000000001")
    return fixed(concrete)


async def send(w: World, method: str, path: str, caller: str, request: dict[str, Any]) -> Any:
    req = w.client.build_request(method, path, **request)
    if "authorization" in req.headers:
        del req.headers["authorization"]
    if w.auth[caller]:
        req.headers["authorization"] = w.auth[caller]
    return await w.client.send(req)


async def check_route(w: World, route: str) -> dict[str, int]:
    expect, prepare = expectation(route)
    method = route.split(" ", 1)[0]
    db = w.db
    seen = {}
    for caller in CALLERS:
        path, request = await prepare(w, caller)
        before = await row_counts(db)
        r = await send(w, method, path, caller, request)
        seen[caller] = r.status_code
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), (caller, r.text)
        if expect[caller] in (401, 403) or (expect[caller] == 404 and expect["admin"] < 400):
            assert await row_counts(db) == before, f"{caller}: a refused {route} changed the database"
        if route in WAIT_FOR and r.status_code == 202:
            await w.wait(WAIT_FOR[route].format(r.json()["run_id"]))
    assert seen == expect, f"{route}: got {seen}"
    return seen


@pytest.mark.parametrize("route", [r for r in ROUTES if not r.startswith("OPTIONS ")])
async def test_each_caller_gets_exactly_the_expected_status_on_every_route(client, db, route):
    w = World(client, db)
    await w.setup()
    seen = await check_route(w, route)
    print(f"\n{route}: {len(seen)} cells {seen}")


async def test_options_on_every_path_needs_no_key_and_changes_nothing(client, db):
    """Litestar answers OPTIONS itself (CORS preflight carries no credentials): the allowed
    methods, for any caller, and nothing else."""
    w = World(client, db)
    await w.setup()
    routes = [r for r in ROUTES if r.startswith("OPTIONS ")]
    for route in routes:
        await check_route(w, route)
    print(f"\nOPTIONS: {len(routes)} paths x {len(CALLERS)} callers")


def test_the_matrix_names_only_routes_the_app_has_and_counts_its_cells():
    stale = sorted(set(MATRIX) - set(ROUTES))
    assert not stale, f"MATRIX entries for routes the app does not have: {stale}"
    print(f"\nauthorization matrix: {len(ROUTES)} routes x {len(CALLERS)} callers = {len(ROUTES) * len(CALLERS)} cells")
