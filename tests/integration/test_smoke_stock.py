from tests.helpers import ADMIN, build_network, receive


async def test_a_receipt_shows_in_stock_and_availability(client):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    r = await client.get("/v1/stock", params={"sku": "SKU-A"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    [pos] = r.json()
    assert pos["on_hand"] == 5 and pos["safety_stock"] == 1
    r = await client.get("/v1/availability", params={"sku": "SKU-A", "lat": 40.71, "lon": -74.0}, headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["items"][0]["ship_available"] == 4
    assert body["items"][0]["pickup"][0]["location_id"] == "STORE-NYC"
    assert body["items"][0]["pickup"][0]["available"] == 4
