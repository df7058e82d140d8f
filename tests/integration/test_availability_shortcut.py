"""GET /v1/availability on its shortcut (api.routes.availability.shortcut): the same answer,
bytes and headers as Litestar's handler gives, and anything out of the ordinary (a refusal,
a query it refuses, an error while answering) answered by Litestar as before, counted and
logged once, with no second rate-limit token spent."""

from __future__ import annotations

import logging
import re

import pytest

from api.routes import availability as routes
from tests.helpers import ADMIN, assert_problem, build_network, make_key, receive, service

NYC = {"lat": "40.7128", "lon": "-74.0060", "radius_km": "50"}


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What the shortcut decided for each request that reached it: True when it answered."""
    decisions: list[bool] = []
    original = routes.shortcut

    async def spy(*args):
        decided = await original(*args)
        decisions.append(decided)
        return decided

    monkeypatch.setattr(routes, "shortcut", spy)
    return decisions


def _requests(metrics: str, status: int) -> float:
    found = re.search(
        rf'^omniroute_http_requests_total{{method="GET",route="/v1/availability",status="{status}"}} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


async def test_the_shortcut_answers_with_the_bytes_and_headers_of_litestars_handler(client, taken):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    await receive(client, "SKU-B", "DC-NJ", 7)
    params = {"sku": ["SKU-B", "SKU-A", "SKU-C"], **NYC}
    short = await client.get("/v1/availability", params=params)
    assert taken == [True]
    # A trailing slash is the same operation to Litestar, and no shortcut.
    full = await client.get("/v1/availability/", params=params)
    assert taken == [True]
    assert short.status_code == full.status_code == 200
    assert short.content == full.content
    assert [i["sku"] for i in short.json()["items"]] == ["SKU-B", "SKU-A", "SKU-C"]
    assert short.json()["items"][1]["pickup"][0] == {
        "location_id": "STORE-NYC",
        "available": 4,
        "distance_km": 0.0,
        "curbside": True,
    }

    def headers(r):
        return sorted((k, v) for k, v in r.headers.items() if k not in ("x-request-id", "date"))

    assert headers(short) == headers(full)
    assert len(short.headers["x-request-id"]) == 32 and short.headers["x-request-id"] != full.headers["x-request-id"]


async def test_an_answer_on_the_shortcut_is_counted_and_logged_once_with_the_callers_request_id(client, taken, caplog):
    await build_network(client)
    before = _requests((await client.get("/metrics")).text, 200)
    caplog.set_level(logging.INFO, logger="omniroute.access")
    r = await client.get(
        "/v1/availability", params={"sku": "SKU-A", **NYC}, headers={**ADMIN, "X-Request-ID": "checkout-42"}
    )
    assert r.status_code == 200 and taken == [True]
    assert r.headers["x-request-id"] == "checkout-42"
    lines = [rec for rec in caplog.records if rec.name == "omniroute.access"]
    assert [(rec.fields["route"], rec.fields["status"], rec.fields["path"]) for rec in lines] == [
        ("/v1/availability", 200, "/v1/availability")
    ]
    assert _requests((await client.get("/metrics")).text, 200) == before + 1


async def test_a_refusal_passes_to_litestar_and_is_counted_once(client, taken, caplog):
    await build_network(client)
    before = _requests((await client.get("/metrics")).text, 401)
    caplog.set_level(logging.INFO, logger="omniroute.access")
    r = await client.get("/v1/availability", params={"sku": "SKU-A"}, headers={"Authorization": "Bearer omr_nope"})
    assert_problem(r, 401)
    assert taken == [False]
    assert len(r.headers["x-request-id"]) == 32
    assert [rec.fields["status"] for rec in caplog.records if rec.name == "omniroute.access"] == [401]
    assert _requests((await client.get("/metrics")).text, 401) == before + 1
    # Without a valid key it is a 401 whatever else is wrong, as on every route.
    assert_problem(await client.get("/v1/availability", params={"nope": "1"}, headers={"Authorization": ""}), 401)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sku": "SKU-A", "radius": "5"}, "radius"),  # unknown parameter
        ({"sku": "SKU-A", "lat": ["40", "41"], "lon": "-74"}, "lat"),  # repeated
        ({"sku": "SKU-A", "lat": "91", "lon": "-74"}, None),  # out of range
        ({"lat": "40", "lon": "-74"}, None),  # no SKU
    ],
)
async def test_a_query_the_shortcut_refuses_is_litestars_400(client, taken, params, field):
    await build_network(client)
    r = await client.get("/v1/availability", params=params)
    body = assert_problem(r, 400)
    assert taken == [False]
    if field is not None:
        assert [e["field"] for e in body["errors"]] == [field]


async def test_an_error_while_answering_is_litestars_problem(client, taken):
    await build_network(client)
    before = _requests((await client.get("/metrics")).text, 422)
    r = await client.get("/v1/availability", params={"sku": ["SKU-A", "SKU-NOPE"]})
    body = assert_problem(r, 422)
    assert "SKU-NOPE" in body["errors"][0]["message"]
    assert taken == [False]
    assert _requests((await client.get("/metrics")).text, 422) == before + 1


async def test_the_shortcut_spends_one_rate_limit_token_a_request_even_when_it_passes(client, database_url):
    await build_network(client)
    checkout = await make_key(client, "checkout")
    async with service(database_url, OMNIROUTE_RATE_LIMIT_PER_SECOND="0.01", OMNIROUTE_RATE_LIMIT_BURST="3") as lim:
        before = {s: _requests((await lim.get("/metrics")).text, s) for s in (200, 400, 429)}
        # A query refused after admission (one token), then two answers (one each): three.
        assert_problem(await lim.get("/v1/availability", params={"sku": "SKU-A", "x": "1"}, headers=checkout), 400)
        for _ in range(2):
            r = await lim.get("/v1/availability", params={"sku": "SKU-A"}, headers=checkout)
            assert r.status_code == 200, r.text
        r = await lim.get("/v1/availability", params={"sku": "SKU-A"}, headers=checkout)
        body = assert_problem(r, 429)
        assert body["type"] == "/problems/too-many-requests" and r.headers["retry-after"]
        metrics = (await lim.get("/metrics")).text
        # (The metrics are the test process's, shared by every app in it: counted as growth.)
        assert {s: _requests(metrics, s) - before[s] for s in before} == {200: 2, 400: 1, 429: 1}
