"""Small scenario builders shared by integration and end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from api.app import create_app
from engine.config import Settings
from tests.conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

# Manhattan, Newark (~14 km away), Philadelphia (~130 km), and a warehouse in New Jersey.
NETWORK = {
    "STORE-NYC": {
        "kind": "store",
        "name": "Manhattan",
        "lat": 40.7128,
        "lon": -74.0060,
        "pickup": True,
        "curbside": True,
        "ships": True,
        "safety_stock": 1,
        "pick_cost_per_unit": 0.8,
    },
    "STORE-EWR": {
        "kind": "store",
        "name": "Newark",
        "lat": 40.7357,
        "lon": -74.1724,
        "pickup": True,
        "curbside": False,
        "ships": False,
        "pick_cost_per_unit": 0.8,
    },
    "STORE-PHL": {
        "kind": "store",
        "name": "Philadelphia",
        "lat": 39.9526,
        "lon": -75.1652,
        "pickup": True,
        "ships": True,
    },
    "DC-NJ": {
        "kind": "warehouse",
        "name": "New Jersey DC",
        "lat": 40.5,
        "lon": -74.4,
        "ships": True,
        "pick_cost_per_unit": 0.3,
    },
}
SKUS = ["SKU-A", "SKU-B", "SKU-C"]


async def build_network(client: AsyncTestClient) -> None:
    for loc_id, body in NETWORK.items():
        r = await client.put(f"/v1/locations/{loc_id}", json=body, headers=ADMIN)
        assert r.status_code in (200, 201), r.text
    r = await client.post(
        "/v1/items/bulk", json={"items": [{"sku": s, "name": s, "weight_kg": 1.0} for s in SKUS]}, headers=ADMIN
    )
    assert r.status_code == 200, r.text


async def receive(client: AsyncTestClient, sku: str, location_id: str, quantity: int, **kw: Any) -> None:
    r = await client.post(
        "/v1/stock/movements",
        headers=ADMIN,
        json={"movements": [{"sku": sku, "location_id": location_id, "kind": "receipt", "quantity": quantity}], **kw},
    )
    assert r.status_code == 201, r.text


async def make_key(client: AsyncTestClient, role: str, location_id: str | None = None) -> dict[str, str]:
    body: dict[str, Any] = {"role": role}
    if location_id:
        body["location_id"] = location_id
    r = await client.post("/v1/api-keys", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


# Every table a request could write to: a refused request must leave all of them unchanged.
WRITE_TABLES = (
    "stock_movements",
    "stock_positions",
    "items",
    "locations",
    "api_keys",
    "idempotency_keys",
    "events",
    "reservations",
    "reservation_lines",
)


async def row_counts(db: asyncpg.Pool) -> dict[str, int]:
    async with db.acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in WRITE_TABLES}


def assert_problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """`r` is a problem+json answer with `status`; when `field` is given, `errors` names it."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"problem without {key!r}: {body}"
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    if field is not None:
        errors = body.get("errors")
        assert isinstance(errors, list) and errors, f"no errors list: {body}"
        assert all({"field", "message"} <= e.keys() for e in errors), errors
        assert any(field in e["field"] for e in errors), f"no error names {field!r}: {errors}"
    return body


@asynccontextmanager
async def service(database_url: str, **env: str) -> AsyncIterator[AsyncTestClient]:
    """Another service process, as far as a test can tell: its own app, pool, key cache and
    rate limiter over the same database; `env` overrides its settings (no scheduler)."""
    settings = Settings.from_env(
        {"OMNIROUTE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "OMNIROUTE_POOL_MAX": "5", "OMNIROUTE_SCHEDULER": "off", **env}
    )
    async with AsyncTestClient(app=create_app(database_url, settings), raise_server_exceptions=False) as client:
        yield client
