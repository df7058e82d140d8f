"""Small scenario builders shared by integration and end-to-end tests."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

# Manhattan, Newark (~14 km away), Philadelphia (~130 km), and a warehouse in New Jersey.
NETWORK = {
    "STORE-NYC": {"kind": "store", "name": "Manhattan", "lat": 40.7128, "lon": -74.0060, "pickup": True,
                  "curbside": True, "ships": True, "safety_stock": 1, "pick_cost_per_unit": 0.8},
    "STORE-EWR": {"kind": "store", "name": "Newark", "lat": 40.7357, "lon": -74.1724, "pickup": True,
                  "curbside": False, "ships": False, "pick_cost_per_unit": 0.8},
    "STORE-PHL": {"kind": "store", "name": "Philadelphia", "lat": 39.9526, "lon": -75.1652, "pickup": True,
                  "ships": True},
    "DC-NJ": {"kind": "warehouse", "name": "New Jersey DC", "lat": 40.5, "lon": -74.4, "ships": True,
              "pick_cost_per_unit": 0.3},
}
SKUS = ["SKU-A", "SKU-B", "SKU-C"]


async def build_network(client: AsyncTestClient) -> None:
    for loc_id, body in NETWORK.items():
        r = await client.put(f"/v1/locations/{loc_id}", json=body, headers=ADMIN)
        assert r.status_code in (200, 201), r.text
    r = await client.post("/v1/items/bulk", json={"items": [{"sku": s, "name": s, "weight_kg": 1.0} for s in SKUS]},
                          headers=ADMIN)
    assert r.status_code == 200, r.text


async def receive(client: AsyncTestClient, sku: str, location_id: str, quantity: int, **kw: Any) -> None:
    r = await client.post("/v1/stock/movements", headers=ADMIN, json={
        "movements": [{"sku": sku, "location_id": location_id, "kind": "receipt", "quantity": quantity}], **kw})
    assert r.status_code == 201, r.text


async def make_key(client: AsyncTestClient, role: str, location_id: str | None = None) -> dict[str, str]:
    body: dict[str, Any] = {"role": role}
    if location_id:
        body["location_id"] = location_id
    r = await client.post("/v1/api-keys", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}
