"""Bad input gets a clear 4xx problem, never a 500, never a partial write.

Every case checks the exact status, that the answer is RFC 9457 application/problem+json
with `type`, `title`, `status` (equal to the HTTP status) and `detail`, that validation
problems name the offending field in `errors`, and that no table changed.

Schema violations (types, unknown or missing fields, bounds, patterns) are 400; content
that is well-formed but wrong (unknown SKUs or locations, quantities not allowed for their
kind, duplicate lines, key roles) is 422.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.helpers import assert_problem, build_network, receive, row_counts

JSON = {"content-type": "application/json"}
IDEM = {"Idempotency-Key": "bad-input-1"}

RECEIPT = {"sku": "SKU-A", "location_id": "STORE-NYC", "kind": "receipt", "quantity": 1}
LOCATION = {"kind": "store", "name": "Queens", "lat": 40.72, "lon": -73.79}
ITEM = {"name": "Widget", "weight_kg": 1.5}


def mv(**changes: Any) -> dict[str, Any]:
    """A movements body with one line: the valid receipt with `changes` applied."""
    return {"movements": [{**RECEIPT, **changes}]}


def without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


@pytest.fixture
async def network(client: AsyncTestClient, db: asyncpg.Pool) -> AsyncTestClient:
    """Four locations, SKU-A..C, and 5 SKU-A on hand at STORE-NYC."""
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    return client


async def check(
    client: AsyncTestClient,
    db: asyncpg.Pool,
    method: str,
    path: str,
    request: dict[str, Any],
    status: int,
    field: str | None,
) -> dict[str, Any]:
    before = await row_counts(db)
    r = await client.request(method, path, **request)
    body = assert_problem(r, status, field)
    assert await row_counts(db) == before, "a rejected request changed the database"
    return body


def case(method: str, path: str, status: int, field: str | None = None, *, id: str, **request: Any) -> Any:
    return pytest.param(method, path, request, status, field, id=id)


# --- malformed and non-object bodies --------------------------------------------------------

WRITE_ENDPOINTS = [
    ("POST", "/v1/stock/movements"),
    ("PUT", "/v1/locations/STORE-QNS"),
    ("PUT", "/v1/items/SKU-Z"),
    ("POST", "/v1/items/bulk"),
    ("POST", "/v1/availability"),
    ("POST", "/v1/api-keys"),
]
ENDPOINT_IDS = [f"{m} {p}" for m, p in WRITE_ENDPOINTS]


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize(
    "content",
    [b'{"movements": [', b"not json", b'{"a": 1} trailing', b"\xff\xfe{}", b"{'single': 'quotes'}"],
    ids=["truncated", "not-json", "trailing-garbage", "not-utf8", "single-quotes"],
)
async def test_malformed_json_is_a_400_problem_and_writes_nothing(network, db, method, path, content):
    await check(network, db, method, path, {"content": content, "headers": {**JSON, **IDEM}}, 400, "body")


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize(
    "content", [b"[]", b"null", b"42", b'"text"', b""], ids=["array", "null", "number", "string", "empty"]
)
async def test_a_body_that_is_not_a_json_object_is_a_400_problem_and_writes_nothing(network, db, method, path, content):
    await check(network, db, method, path, {"content": content, "headers": {**JSON, **IDEM}}, 400, "body")


# --- types, unknown fields, missing fields --------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="movement-quantity-word",
            json=mv(quantity="five"),
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="movement-quantity-numeric-string",
            json=mv(quantity="5"),
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="movement-quantity-fraction",
            json=mv(quantity=1.5),
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="movement-quantity-bool",
            json=mv(quantity=True),
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="movement-quantity-null",
            json=mv(quantity=None),
        ),
        case("POST", "/v1/stock/movements", 400, "movements[0].sku", id="movement-sku-number", json=mv(sku=123)),
        case("POST", "/v1/stock/movements", 400, "movements[0].kind", id="movement-kind-unknown", json=mv(kind="gift")),
        case("POST", "/v1/stock/movements", 400, "movements", id="movements-object", json={"movements": RECEIPT}),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0]",
            id="movement-line-not-object",
            json={"movements": ["SKU-A"]},
        ),
        case("POST", "/v1/stock/movements", 400, "reference", id="reference-number", json={**mv(), "reference": 7}),
        case("PUT", "/v1/locations/STORE-QNS", 400, "lat", id="location-lat-word", json={**LOCATION, "lat": "north"}),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "lat",
            id="location-lat-numeric-string",
            json={**LOCATION, "lat": "40.72"},
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "kind",
            id="location-kind-unknown",
            json={**LOCATION, "kind": "kiosk"},
        ),
        case(
            "PUT", "/v1/locations/STORE-QNS", 400, "ships", id="location-ships-word", json={**LOCATION, "ships": "yes"}
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "ships",
            id="location-ships-string-true",
            json={**LOCATION, "ships": "true"},
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "daily_order_capacity",
            id="location-capacity-fraction",
            json={**LOCATION, "daily_order_capacity": 2.5},
        ),
        case("PUT", "/v1/items/SKU-Z", 400, "weight_kg", id="item-weight-word", json={**ITEM, "weight_kg": "heavy"}),
        case("PUT", "/v1/items/SKU-Z", 400, "name", id="item-name-number", json={**ITEM, "name": 5}),
        case(
            "POST",
            "/v1/items/bulk",
            400,
            "items[1].name",
            id="bulk-item-name-null",
            json={"items": [{"sku": "SKU-Y", **ITEM}, {"sku": "SKU-Z", "name": None}]},
        ),
        case("POST", "/v1/items/bulk", 400, "items", id="bulk-items-object", json={"items": {"sku": "SKU-Z", **ITEM}}),
        case("POST", "/v1/availability", 400, "skus", id="availability-skus-string", json={"skus": "SKU-A"}),
        case(
            "POST",
            "/v1/availability",
            400,
            "radius_km",
            id="availability-radius-word",
            json={"skus": ["SKU-A"], "lat": 40.7, "lon": -74.0, "radius_km": "far"},
        ),
        case("POST", "/v1/api-keys", 400, "role", id="api-key-role-unknown", json={"role": "root"}, headers=IDEM),
        case("POST", "/v1/api-keys", 400, "role", id="api-key-role-number", json={"role": 1}, headers=IDEM),
        case("GET", "/v1/stock", 400, "limit", id="stock-limit-word", params={"sku": "SKU-A", "limit": "many"}),
        case(
            "GET",
            "/v1/availability",
            400,
            "radius_km",
            id="availability-query-radius-word",
            params={"sku": "SKU-A", "lat": 40.7, "lon": -74.0, "radius_km": "far"},
        ),
        case(
            "GET",
            "/v1/availability",
            400,
            "pickup_limit",
            id="availability-query-limit-fraction",
            params={"sku": "SKU-A", "pickup_limit": "2.5"},
        ),
    ],
)
async def test_wrong_types_are_a_400_problem_naming_the_field_and_write_nothing(
    network, db, method, path, request_, status, field
):
    await check(network, db, method, path, request_, status, field)


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case(
            "POST", "/v1/stock/movements", 400, "movements[0].note", id="movement-line", json=mv(note="x"), headers=IDEM
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "actor",
            id="movements-top-level",
            json={**mv(), "actor": "me"},
            headers=IDEM,
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "location_id",
            id="location-id-in-body",
            json={**LOCATION, "location_id": "STORE-QNS"},
        ),
        case("PUT", "/v1/locations/STORE-QNS", 400, "colour", id="location", json={**LOCATION, "colour": "red"}),
        case("PUT", "/v1/items/SKU-Z", 400, "sku", id="item-sku-in-body", json={**ITEM, "sku": "SKU-Z"}),
        case(
            "POST",
            "/v1/items/bulk",
            400,
            "items[0].price",
            id="bulk-item",
            json={"items": [{"sku": "SKU-Z", **ITEM, "price": 9.99}]},
        ),
        case(
            "POST", "/v1/availability", 400, "sku", id="availability-singular-sku", json={"skus": ["SKU-A"], "sku": "x"}
        ),
        case(
            "POST", "/v1/api-keys", 400, "admin", id="api-key", json={"role": "checkout", "admin": True}, headers=IDEM
        ),
    ],
)
async def test_unknown_fields_are_a_400_problem_naming_the_field_and_write_nothing(
    network, db, method, path, request_, status, field
):
    await check(network, db, method, path, request_, status, field)


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        *[
            case(
                "POST",
                "/v1/stock/movements",
                400,
                f"movements[0].{f}",
                id=f"movement-{f}",
                json={"movements": [without(RECEIPT, f)]},
                headers=IDEM,
            )
            for f in RECEIPT
        ],
        case("POST", "/v1/stock/movements", 400, "movements", id="movements", json={"reference": "r"}, headers=IDEM),
        *[
            case("PUT", "/v1/locations/STORE-QNS", 400, f, id=f"location-{f}", json=without(LOCATION, f))
            for f in LOCATION
        ],
        case("PUT", "/v1/items/SKU-Z", 400, "name", id="item-name", json={"weight_kg": 1.0}),
        case("POST", "/v1/items/bulk", 400, "items[0].sku", id="bulk-item-sku", json={"items": [ITEM]}),
        case("POST", "/v1/items/bulk", 400, "items", id="bulk-items", json={}),
        case("POST", "/v1/availability", 400, "skus", id="availability-skus", json={"lat": 40.7, "lon": -74.0}),
        case("GET", "/v1/availability", 400, "sku", id="availability-query-sku", params={"lat": 40.7, "lon": -74.0}),
        case("POST", "/v1/api-keys", 400, "role", id="api-key-role", json={}, headers=IDEM),
        case("GET", "/v1/stock", 422, "sku", id="stock-sku-and-location", params={}),
    ],
)
async def test_missing_required_fields_are_a_4xx_problem_naming_the_field_and_write_nothing(
    network, db, method, path, request_, status, field
):
    await check(network, db, method, path, request_, status, field)


# --- quantities -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "quantity"),
    [
        ("receipt", 0),
        ("receipt", -1),
        ("sale", 0),
        ("sale", -1),
        ("return", 0),
        ("return", -3),
        ("adjustment", 0),
        ("count", -1),
    ],
)
async def test_quantities_not_allowed_for_their_kind_are_a_422_problem_and_write_nothing(network, db, kind, quantity):
    await check(
        network,
        db,
        "POST",
        "/v1/stock/movements",
        {"json": mv(kind=kind, quantity=quantity), "headers": IDEM},
        422,
        "movements[0].quantity",
    )


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="receipt-over-a-million",
            json=mv(quantity=1_000_001),
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="adjustment-under-minus-a-million",
            json=mv(kind="adjustment", quantity=-1_000_001),
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="count-beyond-int64",
            json=mv(kind="count", quantity=10**30),
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].quantity",
            id="sale-far-below-int64",
            json=mv(kind="sale", quantity=-(10**30)),
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "body",
            id="number-overflowing-a-double",
            content=b'{"movements": [{"sku": "SKU-A", "location_id": "STORE-NYC", "kind": "receipt", "quantity": 1e400}]}',  # noqa: E501
            headers=JSON,
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "reference",
            id="reference-over-200-chars",
            json={**mv(), "reference": "r" * 201},
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "safety_stock",
            id="location-safety-stock-negative",
            json={**LOCATION, "safety_stock": -1},
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "daily_order_capacity",
            id="location-capacity-over-a-million",
            json={**LOCATION, "daily_order_capacity": 1_000_001},
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "pick_cost_per_unit",
            id="location-pick-cost-negative",
            json={**LOCATION, "pick_cost_per_unit": -0.01},
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "pick_cost_per_unit",
            id="location-pick-cost-nan",
            json={**LOCATION, "pick_cost_per_unit": "nan"},
        ),
        case("PUT", "/v1/locations/STORE-QNS", 400, "name", id="location-name-empty", json={**LOCATION, "name": ""}),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "name",
            id="location-name-over-200-chars",
            json={**LOCATION, "name": "n" * 201},
        ),
        case(
            "PUT",
            "/v1/locations/STORE-QNS",
            400,
            "postal_code",
            id="location-postal-code-over-20-chars",
            json={**LOCATION, "postal_code": "1" * 21},
        ),
        case("PUT", "/v1/items/SKU-Z", 400, "weight_kg", id="item-weight-negative", json={**ITEM, "weight_kg": -1}),
        case(
            "PUT",
            "/v1/items/SKU-Z",
            400,
            "weight_kg",
            id="item-weight-over-100-tonnes",
            json={**ITEM, "weight_kg": 100_001},
        ),
        case("PUT", "/v1/items/SKU-Z", 400, "weight_kg", id="item-weight-inf", json={**ITEM, "weight_kg": "inf"}),
        case(
            "POST",
            "/v1/availability",
            400,
            "radius_km",
            id="availability-radius-zero",
            json={"skus": ["SKU-A"], "lat": 40.7, "lon": -74.0, "radius_km": 0},
        ),
        case(
            "POST",
            "/v1/availability",
            400,
            "radius_km",
            id="availability-radius-over-2000",
            json={"skus": ["SKU-A"], "lat": 40.7, "lon": -74.0, "radius_km": 2000.5},
        ),
        case(
            "POST",
            "/v1/availability",
            400,
            "pickup_limit",
            id="availability-pickup-limit-zero",
            json={"skus": ["SKU-A"], "pickup_limit": 0},
        ),
        case(
            "GET",
            "/v1/availability",
            400,
            "pickup_limit",
            id="availability-query-pickup-limit-101",
            params={"sku": "SKU-A", "pickup_limit": 101},
        ),
        case("GET", "/v1/stock", 400, "limit", id="stock-limit-zero", params={"sku": "SKU-A", "limit": 0}),
        case("GET", "/v1/stock", 400, "limit", id="stock-limit-1001", params={"sku": "SKU-A", "limit": 1001}),
    ],
)
async def test_numbers_and_strings_beyond_their_limits_are_a_400_problem_and_write_nothing(
    network, db, method, path, request_, status, field
):
    await check(network, db, method, path, request_, status, field)


# --- duplicates, unknown references, engine-only kinds -------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case(
            "POST",
            "/v1/stock/movements",
            422,
            "movements[1]",
            id="same-movement-twice",
            json={"movements": [RECEIPT, RECEIPT]},
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/stock/movements",
            422,
            "movements[2]",
            id="same-sku-and-location-with-another-kind",
            json={"movements": [RECEIPT, {**RECEIPT, "sku": "SKU-B"}, {**RECEIPT, "kind": "sale", "quantity": 2}]},
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/items/bulk",
            400,
            "items",
            id="same-sku-twice-in-bulk",
            json={"items": [{"sku": "SKU-Z", **ITEM}, {"sku": "SKU-Y", **ITEM}, {"sku": "SKU-Z", "name": "Other"}]},
        ),
    ],
)
async def test_duplicate_lines_are_rejected_and_write_nothing(network, db, method, path, request_, status, field):
    body = await check(network, db, method, path, request_, status, field)
    assert any("duplicate" in e["message"] and "SKU-" in e["message"] for e in body["errors"]), body


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case("POST", "/v1/stock/movements", 422, "sku", id="unknown-sku-alone", json=mv(sku="SKU-NOPE"), headers=IDEM),
        case(
            "POST",
            "/v1/stock/movements",
            422,
            "location_id",
            id="unknown-location-alone",
            json=mv(location_id="STORE-NOPE"),
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/stock/movements",
            422,
            "sku",
            id="unknown-sku-after-valid-lines",
            json={
                "movements": [
                    RECEIPT,
                    {**RECEIPT, "location_id": "DC-NJ", "quantity": 9},
                    {**RECEIPT, "sku": "SKU-NOPE"},
                ]
            },
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/stock/movements",
            422,
            "location_id",
            id="unknown-location-before-a-valid-line",
            json={"movements": [{**RECEIPT, "location_id": "STORE-NOPE"}, {**RECEIPT, "sku": "SKU-B"}]},
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/stock/movements",
            422,
            "sku",
            id="unknown-sku-and-location-with-a-valid-count",
            json={
                "movements": [
                    {**RECEIPT, "kind": "count", "quantity": 0},
                    {**RECEIPT, "sku": "SKU-NOPE", "location_id": "STORE-NOPE"},
                ]
            },
            headers=IDEM,
        ),
        case(
            "POST", "/v1/availability", 422, "sku", id="availability-unknown-sku", json={"skus": ["SKU-A", "SKU-NOPE"]}
        ),
        case(
            "GET",
            "/v1/availability",
            422,
            "sku",
            id="availability-query-unknown-sku",
            params={"sku": ["SKU-NOPE", "SKU-A"], "lat": 40.7, "lon": -74.0},
        ),
        case(
            "POST",
            "/v1/api-keys",
            422,
            "location_id",
            id="pos-key-for-unknown-store",
            json={"role": "pos", "location_id": "STORE-NOPE"},
            headers=IDEM,
        ),
        case("GET", "/v1/stock", 422, "sku", id="stock-unknown-sku", params={"sku": "SKU-NOPE"}),
        case("GET", "/v1/stock", 422, "location_id", id="stock-unknown-location", params={"location_id": "STORE-NOPE"}),
    ],
)
async def test_unknown_skus_and_locations_are_a_422_problem_and_write_nothing(
    network, db, method, path, request_, status, field
):
    body = await check(network, db, method, path, request_, status, field)
    assert "NOPE" in str(body["errors"]), body


@pytest.mark.parametrize("kind", ["reserve", "release", "commit", "transfer_out", "transfer_in"])
async def test_engine_only_movement_kinds_are_a_400_problem_and_write_nothing(network, db, kind):
    await check(
        network, db, "POST", "/v1/stock/movements", {"json": mv(kind=kind), "headers": IDEM}, 400, "movements[0].kind"
    )


# --- coordinates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case("PUT", "/v1/locations/STORE-QNS", 400, "lat", id="location-lat-91", json={**LOCATION, "lat": 91}),
        case(
            "PUT", "/v1/locations/STORE-QNS", 400, "lat", id="location-lat-minus-90.5", json={**LOCATION, "lat": -90.5}
        ),
        case("PUT", "/v1/locations/STORE-QNS", 400, "lon", id="location-lon-180.01", json={**LOCATION, "lon": 180.01}),
        case("PUT", "/v1/locations/STORE-QNS", 400, "lon", id="location-lon-minus-181", json={**LOCATION, "lon": -181}),
        case("PUT", "/v1/locations/STORE-QNS", 400, "lat", id="location-lat-nan", json={**LOCATION, "lat": "NaN"}),
        case("PUT", "/v1/locations/STORE-QNS", 400, "lon", id="location-lon-inf", json={**LOCATION, "lon": "Infinity"}),
        case(
            "POST",
            "/v1/availability",
            400,
            "lat",
            id="availability-lat-91",
            json={"skus": ["SKU-A"], "lat": 91, "lon": 0},
        ),
        case(
            "POST",
            "/v1/availability",
            400,
            "lon",
            id="availability-lon-minus-181",
            json={"skus": ["SKU-A"], "lat": 0, "lon": -181},
        ),
        case(
            "POST",
            "/v1/availability",
            400,
            "lat",
            id="availability-lat-nan",
            json={"skus": ["SKU-A"], "lat": "nan", "lon": 0},
        ),
        *[
            case(
                "GET",
                "/v1/availability",
                400,
                name,
                id=f"query-{name}={value}",
                params={"sku": "SKU-A", "lat": 40.7, "lon": -74.0, name: value},
            )
            for name, value in [
                ("lat", "91"),
                ("lat", "-91"),
                ("lon", "180.5"),
                ("lon", "-181"),
                ("lat", "nan"),
                ("lat", "NaN"),
                ("lat", "inf"),
                ("lat", "-inf"),
                ("lon", "nan"),
                ("lon", "-Infinity"),
                ("radius_km", "nan"),
                ("radius_km", "inf"),
                ("radius_km", "0"),
                ("radius_km", "-5"),
                ("lat", "1e999"),
            ]
        ],
    ],
)
async def test_coordinates_out_of_range_or_not_finite_are_a_400_problem(
    network, db, method, path, request_, status, field
):
    await check(network, db, method, path, request_, status, field)


@pytest.mark.parametrize(
    ("method", "path", "request_", "missing"),
    [
        pytest.param("POST", "/v1/availability", {"json": {"skus": ["SKU-A"], "lat": 40.7}}, "lon", id="post-lat-only"),
        pytest.param(
            "POST", "/v1/availability", {"json": {"skus": ["SKU-A"], "lon": -74.0}}, "lat", id="post-lon-only"
        ),
        pytest.param(
            "POST",
            "/v1/availability",
            {"json": {"skus": ["SKU-A"], "lat": 40.7, "lon": None}},
            "lon",
            id="post-lon-null",
        ),
        pytest.param("GET", "/v1/availability", {"params": {"sku": "SKU-A", "lat": 40.7}}, "lon", id="query-lat-only"),
        pytest.param("GET", "/v1/availability", {"params": {"sku": "SKU-A", "lon": -74.0}}, "lat", id="query-lon-only"),
    ],
)
async def test_lat_without_lon_or_lon_without_lat_is_a_400_problem(network, db, method, path, request_, missing):
    body = await check(network, db, method, path, request_, 400, missing)
    assert any("lat" in e["message"] and "lon" in e["message"] for e in body["errors"]), body


# --- lists: empty, over the limit; bodies over 1 MB -----------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case("POST", "/v1/stock/movements", 400, "movements", id="no-movements", json={"movements": []}, headers=IDEM),
        case("POST", "/v1/items/bulk", 400, "items", id="no-bulk-items", json={"items": []}),
        case("POST", "/v1/availability", 400, "skus", id="no-availability-skus", json={"skus": []}),
        case("GET", "/v1/availability", 400, "sku", id="no-availability-query-sku", params={"sku": []}),
    ],
)
async def test_empty_lists_are_a_400_problem_and_write_nothing(network, db, method, path, request_, status, field):
    await check(network, db, method, path, request_, status, field)


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements",
            id="1001-movements",
            headers=IDEM,
            json={"movements": [{**RECEIPT, "sku": f"SKU-{i:05d}"} for i in range(1001)]},
        ),
        case(
            "POST",
            "/v1/items/bulk",
            400,
            "items",
            id="10001-bulk-items",
            json={"items": [{"sku": f"SKU-{i:05d}", "name": "n"} for i in range(10_001)]},
        ),
        case(
            "POST",
            "/v1/availability",
            400,
            "skus",
            id="101-availability-skus",
            json={"skus": [f"SKU-{i:05d}" for i in range(101)]},
        ),
        case(
            "GET",
            "/v1/availability",
            400,
            "sku",
            id="101-availability-query-skus",
            params={"sku": [f"S{i}" for i in range(101)]},
        ),
    ],
)
async def test_lists_over_the_limit_are_a_400_problem_and_write_nothing(
    network, db, method, path, request_, status, field
):
    await check(network, db, method, path, request_, status, field)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/stock/movements", {**mv(), "reference": "r" * 1_000_100}),
        ("PUT", "/v1/locations/STORE-QNS", {**LOCATION, "name": "n" * 1_000_100}),
        ("PUT", "/v1/items/SKU-Z", {**ITEM, "name": "n" * 1_000_100}),
        ("POST", "/v1/items/bulk", {"items": [{"sku": f"SKU-{i:05d}", "name": "n" * 150} for i in range(6_000)]}),
        ("POST", "/v1/availability", {"skus": ["SKU-A"], "pad": "p" * 1_000_100}),
        ("POST", "/v1/api-keys", {"role": "checkout", "name": "n" * 1_000_100}),
    ],
    ids=ENDPOINT_IDS,
)
async def test_a_body_over_one_megabyte_is_a_413_problem_and_writes_nothing(network, db, method, path, body):
    await check(network, db, method, path, {"json": body, "headers": IDEM}, 413, None)


# --- ids in paths and queries, and cross-field rules ----------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "field"),
    [
        case("PUT", "/v1/locations/bad id!", 400, "location_id", id="put-location-space-bang", json=LOCATION),
        case("PUT", "/v1/locations/-leading-dash", 400, "location_id", id="put-location-leading-dash", json=LOCATION),
        case("PUT", "/v1/locations/" + "L" * 65, 400, "location_id", id="put-location-65-chars", json=LOCATION),
        case("PUT", "/v1/locations/caf%C3%A9", 400, "location_id", id="put-location-non-ascii", json=LOCATION),
        case("GET", "/v1/locations/bad id!", 400, "location_id", id="get-location-space-bang"),
        case("PUT", "/v1/items/bad id!", 400, "sku", id="put-item-space-bang", json=ITEM),
        case("PUT", "/v1/items/SKU%3BDROP", 400, "sku", id="put-item-semicolon", json=ITEM),
        case("GET", "/v1/items/bad id!", 400, "sku", id="get-item-space-bang"),
        case(
            "POST",
            "/v1/items/bulk",
            400,
            "items[0].sku",
            id="bulk-item-sku-space",
            json={"items": [{"sku": "a b", **ITEM}]},
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].location_id",
            id="movement-location-slash",
            json=mv(location_id="STORE/NYC"),
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/stock/movements",
            400,
            "movements[0].sku",
            id="movement-sku-empty",
            json=mv(sku=""),
            headers=IDEM,
        ),
        case(
            "POST",
            "/v1/api-keys",
            400,
            "location_id",
            id="api-key-location-space",
            json={"role": "pos", "location_id": "STORE NYC"},
            headers=IDEM,
        ),
        case("GET", "/v1/stock", 400, "sku", id="stock-query-sku-space-bang", params={"sku": "bad id!"}),
        case(
            "GET",
            "/v1/stock",
            400,
            "location_id",
            id="stock-query-location-quote",
            params={"location_id": "STORE-NYC'"},
        ),
        case("GET", "/v1/availability", 400, "sku", id="availability-query-sku-space-bang", params={"sku": "bad id!"}),
        case("POST", "/v1/availability", 400, "skus[1]", id="availability-sku-space", json={"skus": ["SKU-A", "a b"]}),
    ],
)
async def test_bad_ids_are_a_400_problem_naming_the_field_and_write_nothing(
    network, db, method, path, request_, status, field
):
    await check(network, db, method, path, request_, status, field)


async def test_curbside_without_pickup_is_a_400_problem_and_writes_nothing(network, db):
    body = await check(
        network,
        db,
        "PUT",
        "/v1/locations/STORE-QNS",
        {"json": {**LOCATION, "pickup": False, "curbside": True}},
        400,
        "curbside",
    )
    assert any("pickup" in e["message"] for e in body["errors"]), body


async def test_turning_pickup_off_while_curbside_stays_on_is_a_400_problem(network, db):
    r = await network.get("/v1/locations/STORE-NYC")
    current = {k: v for k, v in r.json().items() if k != "location_id"}
    assert current["curbside"] is True
    await check(network, db, "PUT", "/v1/locations/STORE-NYC", {"json": {**current, "pickup": False}}, 400, "curbside")
    assert (await network.get("/v1/locations/STORE-NYC")).json()["pickup"] is True


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"role": "pos"}, id="pos-without-location"),
        pytest.param({"role": "pos", "location_id": None}, id="pos-with-null-location"),
        *[
            pytest.param({"role": role, "location_id": "STORE-NYC"}, id=f"{role}-with-location")
            for role in ("admin", "checkout", "planner")
        ],
    ],
)
async def test_an_api_key_takes_a_location_if_and_only_if_it_is_a_pos_key(network, db, body):
    await check(network, db, "POST", "/v1/api-keys", {"json": body, "headers": IDEM}, 422, "location_id")


@pytest.mark.parametrize("value", ["", "k" * 256], ids=["empty", "256-chars"])
async def test_a_bad_idempotency_key_header_is_a_400_problem_and_writes_nothing(network, db, value):
    await check(
        network,
        db,
        "POST",
        "/v1/stock/movements",
        {"json": mv(), "headers": {"Idempotency-Key": value}},
        400,
        "Idempotency-Key",
    )


# --- routing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/stock/movements"),
        ("DELETE", "/v1/locations/STORE-NYC"),
        ("POST", "/v1/locations/STORE-NYC"),
        ("PATCH", "/v1/items/SKU-A"),
        ("DELETE", "/v1/items/SKU-A"),
        ("GET", "/v1/items/bulk"),
        ("PUT", "/v1/availability"),
        ("PUT", "/v1/api-keys"),
        ("GET", "/v1/api-keys/key_000000000000"),
        ("DELETE", "/v1/stock"),
        ("POST", "/healthz"),
    ],
)
async def test_a_wrong_method_is_a_405_problem_and_writes_nothing(network, db, method, path):
    await check(network, db, method, path, {"json": {}} if method in ("POST", "PUT", "PATCH") else {}, 405, None)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nowhere"),
        ("GET", "/v2/stock"),
        ("POST", "/v1/stock/movement"),
        ("GET", "/v1/locations/STORE-NYC/extra"),
        ("GET", "/"),
    ],
)
async def test_an_unknown_path_is_a_404_problem_and_writes_nothing(network, db, method, path):
    await check(network, db, method, path, {"json": mv()} if method == "POST" else {}, 404, None)


@pytest.mark.parametrize(
    ("path", "what"), [("/v1/locations/STORE-NOPE", "STORE-NOPE"), ("/v1/items/SKU-NOPE", "SKU-NOPE")]
)
async def test_reading_an_unknown_location_or_item_is_a_404_problem(network, db, path, what):
    body = await check(network, db, "GET", path, {}, 404, None)
    assert what in body["detail"]


# --- all or nothing -------------------------------------------------------------------------


async def test_an_adjustment_below_zero_fails_the_whole_request_with_409_and_books_nothing(network, db):
    before = await row_counts(db)
    r = await network.post(
        "/v1/stock/movements",
        headers=IDEM,
        json={
            "movements": [
                {"sku": "SKU-B", "location_id": "STORE-NYC", "kind": "receipt", "quantity": 4},
                {"sku": "SKU-A", "location_id": "STORE-NYC", "kind": "adjustment", "quantity": -6},
            ]
        },
    )
    assert_problem(r, 409)
    assert await row_counts(db) == before
    r = await network.get("/v1/stock", params={"location_id": "STORE-NYC"})
    assert r.status_code == 200, r.text
    on_hand = {p["sku"]: p["on_hand"] for p in r.json()}
    assert on_hand.get("SKU-B", 0) == 0, "the valid receipt was booked"
    assert on_hand["SKU-A"] == 5


async def test_a_bulk_upsert_with_one_invalid_item_stores_none_of_them(network, db):
    items = [{"sku": f"SKU-N{i}", **ITEM} for i in range(50)] + [{"sku": "SKU-BAD", "name": "", "weight_kg": 1.0}]
    await check(network, db, "POST", "/v1/items/bulk", {"json": {"items": items}}, 400, "items[50].name")
    assert (await network.get("/v1/items/SKU-N0")).status_code == 404


async def test_a_rejected_write_does_not_use_up_its_idempotency_key(network, db):
    await check(
        network,
        db,
        "POST",
        "/v1/stock/movements",
        {"json": mv(quantity=0), "headers": IDEM},
        422,
        "movements[0].quantity",
    )
    await check(network, db, "POST", "/v1/stock/movements", {"json": mv(sku="SKU-NOPE"), "headers": IDEM}, 422, "sku")
    r = await network.post("/v1/stock/movements", json=mv(quantity=2), headers=IDEM)
    assert r.status_code == 201, r.text
    assert r.json()["positions"][0]["on_hand"] == 7


async def test_requests_exactly_at_the_list_limits_are_accepted(network, db):
    """The limits above are the real ones: 10000 bulk items, 1000 movements and 100 SKUs pass."""
    r = await network.post(
        "/v1/items/bulk", json={"items": [{"sku": f"SKU-{i:05d}", "name": "n"} for i in range(10_000)]}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 10_000, "updated": 0}
    lines = [
        {**RECEIPT, "sku": f"SKU-{i:05d}", "location_id": loc}
        for i in range(250)
        for loc in ("STORE-NYC", "STORE-EWR", "STORE-PHL", "DC-NJ")
    ]
    r = await network.post("/v1/stock/movements", json={"movements": lines}, headers=IDEM)
    assert r.status_code == 201, r.text
    assert r.json()["movements"] == 1000
    r = await network.post("/v1/availability", json={"skus": [f"SKU-{i:05d}" for i in range(100)]})
    assert r.status_code == 200, r.text
    r = await network.get("/v1/availability", params={"sku": [f"SKU-{i:05d}" for i in range(100)]})
    assert r.status_code == 200, r.text


# --- every limit at its boundary: the maximum passes, one more is refused whole ------------

PAGE_LIMITS = [
    ("/v1/locations", 1000),
    ("/v1/stock", 1000),
    ("/v1/api-keys", 1000),
    ("/v1/routing-runs", 100),
    ("/v1/rebalancing-runs/00000000-0000-0000-0000-000000000001", 1000),  # validated before the lookup: 404
]


@pytest.mark.parametrize(("path", "limit"), PAGE_LIMITS, ids=[p for p, _ in PAGE_LIMITS])
async def test_page_sizes_have_a_maximum(network, db, path, limit):
    params = {"location_id": "STORE-NYC"} if path == "/v1/stock" else {}
    r = await network.get(path, params={**params, "limit": limit})
    assert r.status_code == (404 if "rebalancing" in path else 200), r.text
    await check(network, db, "GET", path, {"params": {**params, "limit": limit + 1}}, 400, "limit")
    await check(network, db, "GET", path, {"params": {**params, "limit": 0}}, 400, "limit")


async def many_skus(client: AsyncTestClient, n: int, location: str = "DC-NJ", quantity: int = 5) -> list[str]:
    skus = [f"SKU-{i:05d}" for i in range(n)]
    r = await client.post("/v1/items/bulk", json={"items": [{"sku": s, "name": s} for s in skus]})
    assert r.status_code == 200, r.text
    for start in range(0, n, 1000):
        batch = skus[start : start + 1000]
        lines = [{"sku": s, "location_id": location, "kind": "receipt", "quantity": quantity} for s in batch]
        r = await client.post("/v1/stock/movements", json={"movements": lines})
        assert r.status_code == 201, r.text
    return skus


async def test_a_reservation_takes_at_most_100_lines(network, db):
    skus = await many_skus(network, 101)
    lines = [{"sku": s, "location_id": "DC-NJ", "quantity": 1} for s in skus]
    await check(network, db, "POST", "/v1/reservations", {"json": {"lines": lines}}, 400, "lines")
    r = await network.post("/v1/reservations", json={"lines": lines[:100]})
    assert r.status_code == 201, r.text
    assert len(r.json()["lines"]) == 100


def order_body(order_id: str, skus: list[str]) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "destination": {"lat": 40.71, "lon": -74.0},
        "lines": [{"line_id": str(i), "sku": s, "quantity": 1} for i, s in enumerate(skus)],
    }


async def test_an_order_takes_at_most_100_lines(network, db):
    skus = await many_skus(network, 101)
    for path in ("/v1/orders/quote", "/v1/orders"):
        await check(network, db, "POST", path, {"json": order_body("big-1", skus)}, 400, "lines")
    r = await network.post("/v1/orders/quote", json=order_body("big-1", skus[:100]))
    assert r.status_code == 200, r.text
    r = await network.post("/v1/orders", json=order_body("big-1", skus[:100]))
    assert r.status_code == 201, r.text
    assert sum(len(f["lines"]) for f in r.json()["fulfillments"]) == 100


async def test_demand_takes_at_most_10000_rows(network, db):
    skus = [f"SKU-{i:05d}" for i in range(2501)]
    r = await network.post("/v1/items/bulk", json={"items": [{"sku": s, "name": s} for s in skus]})
    assert r.status_code == 200, r.text
    rows = [
        {"sku": s, "location_id": loc, "units_per_day": 1}
        for s in skus
        for loc in ("STORE-NYC", "STORE-EWR", "STORE-PHL", "DC-NJ")
    ]
    await check(network, db, "PUT", "/v1/demand", {"json": {"demand": rows[:10_001]}}, 400, "demand")
    r = await network.put("/v1/demand", json={"demand": rows[:10_000]})
    assert r.status_code == 200 and r.json() == {"rows": 10_000}, r.text


@pytest.mark.parametrize(
    ("field", "make"),
    [
        ("skus", lambda n: {"skus": [f"SKU-{i:05d}" for i in range(n)]}),
        (
            "lanes.overrides",
            lambda n: {
                "lanes": {
                    "overrides": [
                        {"from_location_id": "DC-NJ", "to_location_id": f"S{i}", "unit_cost": 1} for i in range(n)
                    ]
                }
            },
        ),
    ],
    ids=["skus", "lane-overrides"],
)
async def test_a_rebalancing_run_takes_at_most_10000_skus_and_lane_overrides(network, db, field, make):
    await check(network, db, "POST", "/v1/rebalancing-runs", {"json": make(10_001)}, 400, field)
    r = await network.post("/v1/rebalancing-runs", json=make(10_000))
    assert r.status_code == 202, r.text
    for _ in range(600):  # let it finish before the next test empties the tables
        run = (await network.get(f"/v1/rebalancing-runs/{r.json()['run_id']}")).json()
        if run["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert run["status"] == "proposed", run


async def post_in_chunks(client: AsyncTestClient, path: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST `data` in 64 kB chunks without a Content-Length (as a chunked upload arrives),
    straight through the app's ASGI interface on the client's event loop (the test client
    reads a streamed body whole before the app sees it)."""
    chunks = [data[i : i + 64_000] for i in range(0, len(data), 64_000)]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
            (b"authorization", client.headers["authorization"].encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "state": {},
    }
    sent: list[dict] = []

    async def receive() -> dict:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    with client.portal() as portal:
        portal.call(client.app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


async def test_a_body_of_exactly_one_megabyte_passes_and_one_byte_more_is_a_413(network, db):
    body = b'{"skus": ["SKU-A"]}'
    exact = body + b" " * (1_000_000 - len(body))  # JSON allows trailing whitespace
    r = await network.post("/v1/availability", content=exact, headers=JSON)
    assert r.status_code == 200, r.text
    await check(network, db, "POST", "/v1/availability", {"content": exact + b" ", "headers": JSON}, 413, None)
    status, _, _ = await post_in_chunks(network, "/v1/availability", exact)
    assert status == 200
    before = await row_counts(db)
    lines = (
        b'{"movements": ['
        + b",".join([b'{"sku": "SKU-A", "location_id": "STORE-NYC", "kind": "receipt", "quantity": 1}'] * 5)
        + b"]}"
    )
    status, headers, answer = await post_in_chunks(
        network, "/v1/stock/movements", lines + b" " * (1_000_001 - len(lines))
    )
    assert status == 413 and headers["content-type"].startswith("application/problem+json"), answer
    assert await row_counts(db) == before


# --- query strings are strict too --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "field", "message"),
    [
        ("/v1/stock", b"sku=SKU-A&locaton_id=STORE-NYC", "locaton_id", "unknown query parameter"),
        ("/v1/locations", b"limit=5&limit=6", "limit", "given more than once"),
        ("/v1/availability", b"sku=SKU-A&lat=40.7&lon=-74&lat=41", "lat", "given more than once"),
        ("/v1/items/SKU-A", b"verbose=1", "verbose", "unknown query parameter"),
        ("/v1/api-keys", b"=x", "", "unknown query parameter"),
        ("/v1/routing-runs", b"lim%69t=5&lim%69t=6", "limit", "given more than once"),
    ],
    ids=["typo", "repeated-limit", "repeated-lat", "no-query-params-at-all", "empty-name", "percent-encoded-name"],
)
async def test_an_unknown_or_repeated_query_parameter_is_a_400_problem_naming_it(
    network, db, path, query, field, message
):
    body = await check(network, db, "GET", f"{path}?{query.decode()}", {}, 400, None)
    assert {"field": field, "message": message} in body["errors"], body


async def test_a_list_parameter_may_repeat_and_empty_parts_are_ignored(network, db):
    r = await network.get("/v1/availability?sku=SKU-A&&sku=SKU-B&")
    assert r.status_code == 200, r.text
    assert [a["sku"] for a in r.json()["items"]] == ["SKU-A", "SKU-B"]


async def test_a_write_with_an_unknown_query_parameter_writes_nothing(network, db):
    await check(
        network, db, "POST", "/v1/stock/movements?dry_run=true", {"json": mv(), "headers": IDEM}, 400, "dry_run"
    )
