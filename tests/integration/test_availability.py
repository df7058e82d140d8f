from tests.helpers import ADMIN, build_network, make_key, receive

NYC = {"lat": 40.7128, "lon": -74.0060}


async def _avail(client, skus, headers=ADMIN, **params):
    r = await client.get("/v1/availability", params={"sku": skus, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return {i["sku"]: i for i in r.json()["items"]}


async def test_ship_available_sums_active_shipping_locations_after_reserved_and_safety_stock(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)  # ships, safety 0  -> 10
    await receive(client, "SKU-A", "STORE-NYC", 3)  # ships, safety 1  -> 2
    await receive(client, "SKU-A", "STORE-EWR", 50)  # does not ship    -> 0
    await receive(client, "SKU-A", "STORE-PHL", 4)  # ships, 3 reserved -> 1
    async with db.acquire() as conn:
        await conn.execute("UPDATE stock_positions SET reserved = 3 WHERE location_id = 'STORE-PHL'")
    assert (await _avail(client, ["SKU-A"]))["SKU-A"]["ship_available"] == 13
    r = await client.put(
        "/v1/locations/DC-NJ",
        headers=ADMIN,
        json={"kind": "warehouse", "name": "NJ", "lat": 40.5, "lon": -74.4, "active": False},
    )
    assert r.status_code == 200
    assert (await _avail(client, ["SKU-A"]))["SKU-A"]["ship_available"] == 3


async def test_pickup_lists_stores_within_the_radius_nearest_first(client):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-EWR", 5)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    await receive(client, "SKU-A", "STORE-PHL", 5)
    item = (await _avail(client, ["SKU-A"], radius_km=50, **NYC))["SKU-A"]
    assert [p["location_id"] for p in item["pickup"]] == ["STORE-NYC", "STORE-EWR"]
    nyc, ewr = item["pickup"]
    assert nyc["distance_km"] < 1 and 13 < ewr["distance_km"] < 16
    assert (nyc["available"], nyc["curbside"]) == (4, True)  # safety stock 1
    assert (ewr["available"], ewr["curbside"]) == (5, False)
    wide = (await _avail(client, ["SKU-A"], radius_km=200, **NYC))["SKU-A"]
    assert [p["location_id"] for p in wide["pickup"]] == ["STORE-NYC", "STORE-EWR", "STORE-PHL"]


async def test_a_pickup_store_without_the_sku_shows_zero(client):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    item = await _avail(client, ["SKU-A", "SKU-B"], radius_km=50, **NYC)
    assert [p["available"] for p in item["SKU-B"]["pickup"]] == [0, 0]
    assert item["SKU-B"]["ship_available"] == 0


async def test_post_answers_like_get_and_keeps_the_basket_order(client):
    await build_network(client)
    await receive(client, "SKU-B", "DC-NJ", 2)
    r = await client.post(
        "/v1/availability", headers=ADMIN, json={"skus": ["SKU-C", "SKU-B", "SKU-A"], **NYC, "radius_km": 20}
    )
    assert r.status_code == 200, r.text
    assert [i["sku"] for i in r.json()["items"]] == ["SKU-C", "SKU-B", "SKU-A"]
    assert r.json()["items"][1]["ship_available"] == 2


async def test_without_coordinates_there_is_no_pickup_list(client):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    assert (await _avail(client, ["SKU-A"]))["SKU-A"]["pickup"] == []


async def test_any_role_may_read_availability(client):
    await build_network(client)
    for role, loc in (("checkout", None), ("pos", "STORE-NYC"), ("planner", None)):
        key = await make_key(client, role, loc)
        assert "SKU-A" in await _avail(client, ["SKU-A"], headers=key)


async def test_an_unknown_sku_is_a_422_naming_it(client):
    await build_network(client)
    r = await client.get("/v1/availability", params={"sku": ["SKU-A", "NOPE"]}, headers=ADMIN)
    assert r.status_code == 422
    assert "NOPE" in r.json()["errors"][0]["message"]


async def test_the_query_is_read_as_a_browser_encodes_it(client):
    """GET reads its own query string (api.query.values): percent-escapes and `+` decode as
    Litestar would decode them, and an empty part or a trailing `&` is no parameter."""
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    plain = await client.get(
        "/v1/availability", params={"sku": ["SKU-A", "SKU-B"], "radius_km": 50, **NYC}, headers=ADMIN
    )
    assert plain.status_code == 200, plain.text
    encoded = await client.get(
        "/v1/availability?sku=SKU%2DA&&sku=SKU-%42&lat=40.7128&lon=%2D74.0060&radius_km=5%30&", headers=ADMIN
    )
    assert encoded.status_code == 200, encoded.text
    assert encoded.json() == plain.json()


async def test_a_bad_query_value_is_a_400_naming_the_parameter(client):
    await build_network(client)
    for query, field in (
        ("sku=SKU-A&lat=&lon=1", "lat"),
        ("sku=SKU-A&radius_km=far", "radius_km"),
        ("sku=SKU-A&pickup_limit=2.5", "pickup_limit"),
        ("sku=SKU-A&lat=nan&lon=1", "lat"),
        ("sku=SKU%20A", "sku[0]"),
        ("sku=SKU-A&sku=SKU+B", "sku[1]"),  # "+" is a space
    ):
        r = await client.get(f"/v1/availability?{query}", headers=ADMIN)
        assert r.status_code == 400, (query, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == [field], (query, r.json())
