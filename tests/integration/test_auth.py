"""A key acts only where its role allows; a POS key only at its own store.

Every route x every kind of caller is checked in test_authorization_matrix.py; here are the
finer points: POS store rules, malformed keys, 401 before validation, hashing.

No key or an unknown key is a 401 problem with `WWW-Authenticate: Bearer`; a known key whose
role (or store) does not allow the operation is a 403 problem, and nothing is written.
Probes and the OpenAPI document need no key. Keys are stored hashed.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import ADMIN_KEY
from tests.helpers import ADMIN, assert_problem, build_network, make_key, receive, row_counts

LOCATION = {"kind": "store", "name": "Queens", "lat": 40.72, "lon": -73.79}
ITEM = {"name": "Widget", "weight_kg": 1.5}


def movement(location_id: str, sku: str = "SKU-A", kind: str = "receipt", quantity: int = 2) -> dict[str, Any]:
    return {"sku": sku, "location_id": location_id, "kind": kind, "quantity": quantity}


async def send(client: AsyncTestClient, method: str, path: str, authorization: str | None, **request: Any) -> Any:
    """Send with exactly this Authorization header (None: no header at all)."""
    req = client.build_request(method, path, **request)
    if "authorization" in req.headers:
        del req.headers["authorization"]
    if authorization is not None:
        req.headers["authorization"] = authorization
    return await client.send(req)


@pytest.fixture
async def network(client: AsyncTestClient, db: asyncpg.Pool) -> AsyncTestClient:
    """Four locations, SKU-A..C, 5 SKU-A on hand at STORE-NYC and at STORE-EWR."""
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    await receive(client, "SKU-A", "STORE-EWR", 5)
    return client


# Each operation: method, path, request, the status it answers when allowed.
OPERATIONS: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "read-availability": ("GET", "/v1/availability", {"params": {"sku": "SKU-A", "lat": 40.71, "lon": -74.0}}, 200),
    "query-availability": ("POST", "/v1/availability", {"json": {"skus": ["SKU-A", "SKU-B"]}}, 200),
    "read-stock": ("GET", "/v1/stock", {"params": {"sku": "SKU-A"}}, 200),
    "list-locations": ("GET", "/v1/locations", {}, 200),
    "read-location": ("GET", "/v1/locations/STORE-NYC", {}, 200),
    "read-item": ("GET", "/v1/items/SKU-A", {}, 200),
    "create-location": ("PUT", "/v1/locations/STORE-QNS", {"json": LOCATION}, 201),
    "update-own-location": (
        "PUT",
        "/v1/locations/STORE-NYC",
        {"json": {**LOCATION, "name": "Renamed", "pickup": True}},
        200,
    ),
    "create-item": ("PUT", "/v1/items/SKU-Z", {"json": ITEM}, 201),
    "update-item": ("PUT", "/v1/items/SKU-A", {"json": ITEM}, 200),
    "bulk-items": ("POST", "/v1/items/bulk", {"json": {"items": [{"sku": "SKU-Y", **ITEM}]}}, 200),
    "movements-at-STORE-NYC": (
        "POST",
        "/v1/stock/movements",
        {"json": {"movements": [movement("STORE-NYC")]}, "headers": {"Idempotency-Key": "m1"}},
        201,
    ),
    "sale-at-STORE-NYC": (
        "POST",
        "/v1/stock/movements",
        {"json": {"movements": [movement("STORE-NYC", kind="sale", quantity=1)]}},
        201,
    ),
    "movements-at-STORE-EWR": ("POST", "/v1/stock/movements", {"json": {"movements": [movement("STORE-EWR")]}}, 201),
    "movements-at-both-stores": (
        "POST",
        "/v1/stock/movements",
        {
            "json": {"movements": [movement("STORE-NYC"), movement("STORE-EWR", "SKU-B")]},
            "headers": {"Idempotency-Key": "m2"},
        },
        201,
    ),
    "create-checkout-key": (
        "POST",
        "/v1/api-keys",
        {"json": {"role": "checkout"}, "headers": {"Idempotency-Key": "k"}},
        201,
    ),
    "create-pos-key": ("POST", "/v1/api-keys", {"json": {"role": "pos", "location_id": "STORE-NYC"}}, 201),
    "create-admin-key": ("POST", "/v1/api-keys", {"json": {"role": "admin"}}, 201),
}


async def role_key(client: AsyncTestClient, role: str) -> dict[str, str]:
    return await make_key(client, role, "STORE-NYC" if role == "pos" else None)


async def test_a_pos_key_cannot_book_at_another_store_and_the_refusal_names_it(network, db):
    pos = await make_key(network, "pos", "STORE-NYC")
    before = await row_counts(db)
    r = await network.post(
        "/v1/stock/movements", headers=pos, json={"movements": [movement("STORE-EWR", kind="sale", quantity=1)]}
    )
    body = assert_problem(r, 403)
    assert "STORE-EWR" in body["detail"], body
    assert await row_counts(db) == before


async def test_a_pos_request_mixing_its_own_and_another_store_is_refused_whole(network, db):
    pos = await make_key(network, "pos", "STORE-NYC")
    before = await row_counts(db)
    r = await network.post(
        "/v1/stock/movements",
        headers={**pos, "Idempotency-Key": "mix"},
        json={
            "movements": [
                movement("STORE-NYC", quantity=3),
                movement("STORE-NYC", "SKU-B"),
                movement("DC-NJ", quantity=1),
            ]
        },
    )
    body = assert_problem(r, 403)
    assert "DC-NJ" in body["detail"], body
    assert await row_counts(db) == before
    r = await network.get("/v1/stock", params={"sku": "SKU-A", "location_id": "STORE-NYC"})
    assert [p["on_hand"] for p in r.json()] == [5]


async def test_a_pos_key_books_sales_and_counts_at_its_own_store(network, db):
    pos = await make_key(network, "pos", "STORE-NYC")
    r = await network.post(
        "/v1/stock/movements",
        headers=pos,
        json={
            "movements": [
                movement("STORE-NYC", kind="sale", quantity=2),
                movement("STORE-NYC", "SKU-B", kind="count", quantity=7),
            ]
        },
    )
    assert r.status_code == 201, r.text
    on_hand = {p["sku"]: p["on_hand"] for p in r.json()["positions"]}
    assert on_hand == {"SKU-A": 3, "SKU-B": 7}


async def test_a_pos_key_of_another_store_cannot_book_here(network, db):
    pos_ewr = await make_key(network, "pos", "STORE-EWR")
    before = await row_counts(db)
    r = await network.post("/v1/stock/movements", headers=pos_ewr, json={"movements": [movement("STORE-NYC")]})
    assert_problem(r, 403)
    assert await row_counts(db) == before


@pytest.mark.parametrize("role", ["pos", "checkout", "planner"])
async def test_only_admin_keys_create_keys_not_even_for_their_own_store(network, db, role):
    key = await role_key(network, role)
    before = await row_counts(db)
    for body in ({"role": "admin"}, {"role": role}, {"role": "pos", "location_id": "STORE-NYC"}):
        assert_problem(await network.post("/v1/api-keys", json=body, headers=key), 403)
    assert await row_counts(db) == before


# --- authentication -------------------------------------------------------------------------

PROTECTED = [pytest.param(*OPERATIONS[op][:3], id=op) for op in OPERATIONS]


@pytest.mark.parametrize(("method", "path", "request_"), PROTECTED)
async def test_no_authorization_header_is_a_401_problem_asking_for_a_bearer_token(network, db, method, path, request_):
    before = await row_counts(db)
    r = await send(network, method, path, None, **request_)
    assert_problem(r, 401)
    assert r.headers.get("www-authenticate") == "Bearer"
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer omr_not-a-real-key", id="garbage-key"),
        pytest.param("Bearer " + ADMIN_KEY + "x", id="admin-key-plus-a-char"),
        pytest.param("Bearer " + ADMIN_KEY[:-1], id="admin-key-minus-a-char"),
        pytest.param("Bearer ", id="bearer-without-key"),
        pytest.param("Bearer", id="bare-scheme"),
        pytest.param("", id="empty-header"),
        pytest.param(ADMIN_KEY, id="key-without-scheme"),
        pytest.param("Basic " + ADMIN_KEY, id="basic-scheme"),
        pytest.param("Token " + ADMIN_KEY, id="token-scheme"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "request_"),
    [
        pytest.param(*OPERATIONS["read-stock"][:3], id="read"),
        pytest.param(*OPERATIONS["movements-at-STORE-NYC"][:3], id="write"),
    ],
)
async def test_an_unknown_or_malformed_key_is_a_401_problem_and_writes_nothing(
    network, db, method, path, request_, authorization
):
    before = await row_counts(db)
    r = await send(network, method, path, authorization, **request_)
    assert_problem(r, 401)
    assert r.headers.get("www-authenticate") == "Bearer"
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    ("method", "path", "request_"),
    [
        pytest.param(
            "POST",
            "/v1/stock/movements",
            {"content": b'{"movements": [', "headers": {"content-type": "application/json"}},
            id="malformed-json",
        ),
        pytest.param("POST", "/v1/stock/movements", {"json": {"movements": [{"sku": "SKU-A"}]}}, id="invalid-body"),
        pytest.param(
            "POST",
            "/v1/stock/movements",
            {"json": {"movements": [movement("STORE-NYC", quantity=0)]}},
            id="invalid-quantity",
        ),
        pytest.param("GET", "/v1/availability", {"params": {"lat": 40.7, "lon": -74.0}}, id="missing-query-parameter"),
        pytest.param("GET", "/v1/locations/bad id!", {}, id="invalid-path-id"),
        pytest.param("POST", "/v1/api-keys", {"json": {"role": "root"}}, id="invalid-role"),
    ],
)
async def test_without_a_key_the_answer_is_401_before_the_request_is_validated(network, db, method, path, request_):
    """An anonymous caller learns nothing about the request format: 401 comes first."""
    r = await send(network, method, path, None, **request_)
    assert_problem(r, 401)
    assert r.headers.get("www-authenticate") == "Bearer"


async def test_the_bearer_scheme_is_case_insensitive(network):
    r = await send(network, "GET", "/v1/stock", "bearer " + ADMIN_KEY, params={"sku": "SKU-A"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/schema/openapi.json"])
@pytest.mark.parametrize("authorization", [None, "Bearer omr_not-a-real-key"], ids=["no-key", "garbage-key"])
async def test_probes_metrics_and_the_openapi_document_need_no_key(network, path, authorization):
    r = await send(network, "GET", path, authorization)
    assert r.status_code == 200, r.text
    assert not r.headers["content-type"].startswith("application/problem+json")


async def test_the_openapi_document_declares_bearer_authentication(network):
    r = await send(network, "GET", "/schema/openapi.json", None)
    doc = r.json()
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert {"bearer": []} in doc["security"]


# --- keys -----------------------------------------------------------------------------------


async def test_the_bootstrap_admin_key_is_an_admin_and_is_not_stored(network, db):
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
    r = await send(network, "POST", "/v1/api-keys", f"Bearer {ADMIN_KEY}", json={"role": "admin", "name": "ops"})
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["role"] == "admin" and issued["key"] and issued["key_id"]
    # the key it created is an admin key in turn
    r = await send(network, "PUT", "/v1/items/SKU-Z", f"Bearer {issued['key']}", json=ITEM)
    assert r.status_code == 201, r.text
    async with db.acquire() as conn:
        text = " ".join(str(dict(row)) for row in await conn.fetch("SELECT * FROM api_keys"))
    assert ADMIN_KEY not in text


async def test_created_keys_work_at_once_and_are_stored_only_hashed(network, db):
    issued = []
    for body in (
        {"role": "admin"},
        {"role": "checkout", "name": "web shop"},
        {"role": "planner"},
        {"role": "pos", "location_id": "STORE-NYC"},
    ):
        r = await network.post("/v1/api-keys", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        answer = r.json()
        assert answer["role"] == body["role"] and answer.get("location_id") == body.get("location_id")
        assert answer["key"] and answer["key_id"] and answer["key"] != answer["key_id"]
        issued.append(answer)
    assert len({k["key"] for k in issued}) == len(issued)
    for k in issued:
        r = await send(network, "GET", "/v1/stock", f"Bearer {k['key']}", params={"sku": "SKU-A"})
        assert r.status_code == 200, r.text
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM api_keys")
        as_text = await conn.fetch("SELECT t::text AS t FROM api_keys t")
    assert len(rows) == len(issued)
    dumped = " ".join(str(dict(row)) for row in rows) + " ".join(r["t"] for r in as_text)
    raw = b"".join(v for row in rows for v in row.values() if isinstance(v, bytes | bytearray | memoryview))
    for k in issued:
        assert k["key_id"] in dumped
        assert k["key"] not in dumped, "a plaintext key is stored"
        assert k["key"].encode() not in raw, "a plaintext key is stored"
        assert k["key"].removeprefix("omr_") not in dumped, "the secret part of a key is stored"


async def test_a_refusal_is_logged_and_counted_with_its_own_status_and_carries_a_request_id(network, caplog):
    caplog.set_level(logging.INFO, logger="omniroute.access")
    r = await send(network, "GET", "/v1/stock", "Bearer omr_not-a-real-key", params={"sku": "SKU-A"})
    assert_problem(r, 401)
    assert len(r.headers["x-request-id"]) == 32
    lines = [rec for rec in caplog.records if rec.name == "omniroute.access"]
    assert [rec.fields["status"] for rec in lines] == [401], [rec.getMessage() for rec in lines]
    metrics = (await send(network, "GET", "/metrics", None)).text
    assert 'omniroute_http_requests_total{method="GET",route="/v1/stock",status="401"}' in metrics
