import asyncio
from uuid import uuid4

import asyncpg
import pytest

from engine.config import Settings
from engine.core.model import Caller, Role
from engine.core.reservations import Line
from engine.errors import OutOfStock
from engine.services import jobs
from engine.services import reservations as service
from engine.services.reservations import sweep_expired
from engine.services.stock import check_ledger
from engine.store import reservations as store
from tests.helpers import ADMIN, build_network, make_key, receive


async def _position(db, sku, loc):
    async with db.acquire() as conn:
        return await conn.fetchrow(
            "SELECT on_hand, reserved FROM stock_positions WHERE sku = $1 AND location_id = $2", sku, loc
        )


async def _available(client, sku, loc):
    r = await client.get("/v1/stock", params={"sku": sku, "location_id": loc}, headers=ADMIN)
    p = r.json()[0]
    return p["on_hand"] - p["reserved"] - p["safety_stock"]


def _batch_item(owner, *lines, ttl_seconds=60):
    """A group-commit item holding (sku, location_id, quantity) lines."""
    return store.BatchItem(
        reservation_id=uuid4(),
        owner=owner,
        reference=None,
        ttl_seconds=ttl_seconds,
        lines=[Line(sku=s, location_id=loc, quantity=q) for s, loc, q in lines],
    )


def _hold(sku="SKU-A", loc="DC-NJ", qty=1, **extra):
    return {"lines": [{"sku": sku, "location_id": loc, "quantity": qty}], **extra}


async def test_a_reservation_holds_stock_and_commit_turns_it_into_a_sale(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    checkout = await make_key(client, "checkout")
    r = await client.post("/v1/reservations", json=_hold(qty=3, reference="cart-1"), headers=checkout)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "active" and body["reference"] == "cart-1"
    assert await _position(db, "SKU-A", "DC-NJ") == (10, 3)
    rid = body["reservation_id"]
    r = await client.post(f"/v1/reservations/{rid}/commit", headers=checkout)
    assert r.status_code == 200 and r.json()["status"] == "committed"
    assert await _position(db, "SKU-A", "DC-NJ") == (7, 0)
    assert (await client.get(f"/v1/reservations/{rid}", headers=checkout)).json()["status"] == "committed"
    r = await client.post(f"/v1/reservations/{rid}/commit", headers=checkout)
    assert r.status_code == 409
    assert (await check_ledger(db))[1] == 0


async def test_a_shortage_is_a_409_listing_every_short_line_and_holds_nothing(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 5)
    await receive(client, "SKU-B", "STORE-NYC", 2)  # safety stock 1: one available
    r = await client.post(
        "/v1/reservations",
        headers=ADMIN,
        json={
            "lines": [
                {"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 5},
                {"sku": "SKU-B", "location_id": "STORE-NYC", "quantity": 2},
                {"sku": "SKU-C", "location_id": "DC-NJ", "quantity": 1},
            ]
        },
    )
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert sorted(r.json()["shortages"], key=lambda s: s["sku"]) == [
        {"sku": "SKU-B", "location_id": "STORE-NYC", "requested": 2, "available": 1},
        {"sku": "SKU-C", "location_id": "DC-NJ", "requested": 1, "available": 0},
    ]
    assert (await _position(db, "SKU-A", "DC-NJ"))["reserved"] == 0
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM reservations") == 0


async def test_unknown_sku_or_location_is_a_422(client, db):
    await build_network(client)
    r = await client.post("/v1/reservations", headers=ADMIN, json=_hold(sku="NOPE"))
    assert r.status_code == 422 and "NOPE" in r.text
    r = await client.post("/v1/reservations", headers=ADMIN, json=_hold(loc="STORE-NOPE"))
    assert r.status_code == 422 and "STORE-NOPE" in r.text


async def test_a_hot_sku_never_oversells_under_hundreds_of_concurrent_holds(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 37)
    checkout = await make_key(client, "checkout")
    answers = await asyncio.gather(
        *(client.post("/v1/reservations", json=_hold(), headers=checkout) for _ in range(300))
    )
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 37 and codes.count(409) == 263
    assert await _position(db, "SKU-A", "DC-NJ") == (37, 37)
    assert (await check_ledger(db))[1] == 0


async def test_many_connections_racing_straight_at_the_database_never_oversell(database_url, client, db):
    """Below the HTTP layer: 120 real connections, one service call each, 50 units."""
    await build_network(client)
    await receive(client, "SKU-A", "STORE-PHL", 50)
    caller = Caller(key_id="racer", role=Role.CHECKOUT)
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=1) for _ in range(120)]
    try:

        async def one(pool):
            try:
                await service.create(
                    pool,
                    caller,
                    [Line(sku="SKU-A", location_id="STORE-PHL", quantity=1)],
                    ttl_seconds=60,
                    reference=None,
                    idem_key=None,
                )
                return True
            except OutOfStock:
                return False

        results = await asyncio.gather(*(one(p) for p in pools))
    finally:
        await asyncio.gather(*(p.close() for p in pools))
    assert sum(results) == 50
    assert await _position(db, "SKU-A", "STORE-PHL") == (50, 50)
    assert (await check_ledger(db))[1] == 0


async def test_carts_racing_over_the_same_skus_in_opposite_orders_neither_deadlock_nor_oversell(client, db):
    await build_network(client)
    skus = ["SKU-A", "SKU-B", "SKU-C"]
    for s in skus:
        await receive(client, s, "DC-NJ", 40)
    forward = {"lines": [{"sku": s, "location_id": "DC-NJ", "quantity": 1} for s in skus]}
    backward = {"lines": list(reversed(forward["lines"]))}
    answers = await asyncio.gather(
        *(client.post("/v1/reservations", json=forward if i % 2 else backward, headers=ADMIN) for i in range(100))
    )
    codes = [a.status_code for a in answers]
    assert set(codes) <= {201, 409}, [a.text for a in answers if a.status_code not in (201, 409)][:3]
    assert codes.count(201) == 40
    for s in skus:
        assert await _position(db, s, "DC-NJ") == (40, 40)
    assert (await check_ledger(db))[1] == 0


async def test_an_idempotent_retry_returns_the_first_hold_and_holds_nothing_more(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    headers = {**ADMIN, "Idempotency-Key": "cart-9-try"}
    first = await client.post("/v1/reservations", json=_hold(qty=2), headers=headers)
    again = await client.post("/v1/reservations", json=_hold(qty=2), headers=headers)
    assert first.status_code == again.status_code == 201 and first.content == again.content
    assert (await _position(db, "SKU-A", "DC-NJ"))["reserved"] == 2
    other = await client.post("/v1/reservations", json=_hold(qty=3), headers=headers)
    assert other.status_code == 409
    assert (await _position(db, "SKU-A", "DC-NJ"))["reserved"] == 2


async def test_an_expired_hold_stops_counting_before_the_sweep_and_cannot_be_committed(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 5)
    r = await client.post("/v1/reservations", json=_hold(qty=5, ttl_seconds=1), headers=ADMIN)
    rid = r.json()["reservation_id"]
    assert await _available(client, "SKU-A", "DC-NJ") == 0
    await asyncio.sleep(1.1)
    # The sweep has not run (the test app has no scheduler): readers already ignore the hold.
    assert (await _position(db, "SKU-A", "DC-NJ"))["reserved"] == 5
    assert await _available(client, "SKU-A", "DC-NJ") == 5
    r = await client.get("/v1/availability", params={"sku": "SKU-A"}, headers=ADMIN)
    assert r.json()["items"][0]["ship_available"] == 5
    assert (await client.get(f"/v1/reservations/{rid}", headers=ADMIN)).json()["status"] == "expired"
    r = await client.post(f"/v1/reservations/{rid}/commit", headers=ADMIN)
    assert r.status_code == 409 and r.json()["reservation_status"] == "expired"
    # A new reservation at that position may take the expired units at once.
    r = await client.post("/v1/reservations", json=_hold(qty=5), headers=ADMIN)
    assert r.status_code == 201, r.text
    assert await _position(db, "SKU-A", "DC-NJ") == (5, 5)
    assert (await check_ledger(db))[1] == 0


async def test_the_sweep_releases_expired_holds_and_books_the_release(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 5)
    await receive(client, "SKU-B", "DC-NJ", 5)
    short = await client.post(
        "/v1/reservations",
        json={
            "ttl_seconds": 1,
            "lines": [
                {"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 2},
                {"sku": "SKU-B", "location_id": "DC-NJ", "quantity": 1},
            ],
        },
        headers=ADMIN,
    )
    long = await client.post("/v1/reservations", json=_hold(qty=1, ttl_seconds=600), headers=ADMIN)
    await asyncio.sleep(1.1)
    assert await sweep_expired(db, batch=1) == 2
    assert await _position(db, "SKU-A", "DC-NJ") == (5, 1)
    assert await _position(db, "SKU-B", "DC-NJ") == (5, 0)
    async with db.acquire() as conn:
        statuses = dict(await conn.fetch("SELECT reservation_id::text, status FROM reservations"))
        kinds = await conn.fetch("SELECT kind, delta_reserved FROM stock_movements WHERE actor = 'expiry'")
    assert statuses == {short.json()["reservation_id"]: "expired", long.json()["reservation_id"]: "active"}
    assert sorted(k["delta_reserved"] for k in kinds) == [-2, -1]
    assert await sweep_expired(db) == 0
    assert (await check_ledger(db))[1] == 0


async def test_release_gives_the_units_back_once(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 4)
    rid = (await client.post("/v1/reservations", json=_hold(qty=4), headers=ADMIN)).json()["reservation_id"]
    for _ in range(2):
        r = await client.post(f"/v1/reservations/{rid}/release", headers=ADMIN)
        assert r.status_code == 200 and r.json()["status"] == "released"
    assert await _position(db, "SKU-A", "DC-NJ") == (4, 0)
    assert (await client.post(f"/v1/reservations/{rid}/commit", headers=ADMIN)).status_code == 409
    assert (await check_ledger(db))[1] == 0


async def test_extend_moves_the_expiry_of_an_active_hold(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 4)
    r = await client.post("/v1/reservations", json=_hold(ttl_seconds=1), headers=ADMIN)
    rid = r.json()["reservation_id"]
    r = await client.post(f"/v1/reservations/{rid}/extend", json={"ttl_seconds": 3600}, headers=ADMIN)
    assert r.status_code == 200
    await asyncio.sleep(1.1)
    assert await sweep_expired(db) == 0
    r = await client.get(f"/v1/reservations/{rid}", headers=ADMIN)
    assert r.json()["status"] == "active"
    assert (await client.post(f"/v1/reservations/{rid}/commit", headers=ADMIN)).status_code == 200


async def test_only_the_owner_or_an_admin_may_act_on_a_reservation(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 4)
    mine, other = await make_key(client, "checkout"), await make_key(client, "checkout")
    rid = (await client.post("/v1/reservations", json=_hold(), headers=mine)).json()["reservation_id"]
    for path in ("", "/commit", "/release"):
        call = client.get if not path else client.post
        assert (await call(f"/v1/reservations/{rid}{path}", headers=other)).status_code == 404
    assert (await client.get(f"/v1/reservations/{rid}", headers=ADMIN)).status_code == 200
    planner = await make_key(client, "planner")
    assert (await client.post("/v1/reservations", json=_hold(), headers=planner)).status_code == 403


async def test_a_pos_key_reserves_only_at_its_own_store(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-NYC", 5)
    await receive(client, "SKU-A", "STORE-PHL", 5)
    till = await make_key(client, "pos", "STORE-NYC")
    assert (await client.post("/v1/reservations", json=_hold(loc="STORE-NYC"), headers=till)).status_code == 201
    r = await client.post("/v1/reservations", json=_hold(loc="STORE-PHL"), headers=till)
    assert r.status_code == 403
    assert (await _position(db, "SKU-A", "STORE-PHL"))["reserved"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"lines": []},
        {"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 0}]},
        {"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 1}], "ttl_seconds": 0},
        {"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 1}], "ttl_seconds": 7 * 24 * 3600 + 1},
        {"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": "1"}]},
        {"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 1}], "extra": 1},
        {"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 1}] * 2},
        {"lines": [{"sku": f"SKU-{i}", "location_id": "DC-NJ", "quantity": 1} for i in range(101)]},
    ],
)
async def test_bad_reservation_bodies_are_4xx_and_hold_nothing(client, db, body):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 5)
    r = await client.post("/v1/reservations", json=body, headers=ADMIN)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM reservations") == 0
        assert await conn.fetchval("SELECT sum(reserved) FROM stock_positions") == 0


async def test_a_scheduled_job_runs_in_one_process_at_a_time(database_url, db):
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=2) for _ in range(3)]
    running = 0
    peak = 0

    async def job(_pool):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.2)
        running -= 1
        return 0

    try:
        ran = await asyncio.gather(*(jobs.run_exclusively(p, "expire-reservations", job) for p in pools))
    finally:
        await asyncio.gather(*(p.close() for p in pools))
    assert sorted(ran) == [False, False, True] and peak == 1


async def test_the_scheduler_releases_expired_holds_within_seconds(database_url, client, db):
    from litestar.testing import AsyncTestClient

    from api.app import create_app
    from tests.conftest import ADMIN_KEY

    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 3)
    await client.post("/v1/reservations", json=_hold(qty=3, ttl_seconds=1), headers=ADMIN)
    settings = Settings.from_env({"OMNIROUTE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "OMNIROUTE_EXPIRY_SWEEP_SECONDS": "0.2"})
    async with AsyncTestClient(app=create_app(database_url, settings)):
        for _ in range(50):
            if (await _position(db, "SKU-A", "DC-NJ"))["reserved"] == 0:
                break
            await asyncio.sleep(0.1)
    assert (await _position(db, "SKU-A", "DC-NJ"))["reserved"] == 0
    assert (await check_ledger(db))[1] == 0


async def test_group_commit_keeps_each_reservation_all_or_nothing(client, db):
    """Many holds in one statement: a short one is undone alone, the others stay."""
    from engine.services.group_commit import ReservationGroups

    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    await receive(client, "SKU-B", "DC-NJ", 10)

    class CountingGroups(ReservationGroups):
        sizes: list[int] = []

        async def _send(self, items):
            self.sizes.append(len(items))
            return await super()._send(items)

    groups = CountingGroups(db, max_in_flight=1)

    def item(*lines):
        return _batch_item("group-test", *((s, "DC-NJ", q) for s, q in lines))

    # Each asks for 1 SKU-A and 2 SKU-B: SKU-B runs out after five, so SKU-A must stay at 5 held.
    results = await asyncio.gather(*(groups.reserve(item(("SKU-A", 1), ("SKU-B", 2))) for _ in range(12)))
    held = [r for r in results if not isinstance(r, store.Shortage)]
    assert len(held) == 5
    assert max(groups.sizes) > 1, groups.sizes
    assert await _position(db, "SKU-A", "DC-NJ") == (10, 5)
    assert await _position(db, "SKU-B", "DC-NJ") == (10, 10)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM reservations WHERE owner = 'group-test'") == 5
    assert (await check_ledger(db))[1] == 0


async def test_one_group_decides_in_arrival_order_and_a_short_reservation_gives_its_units_back(client, db):
    """One statement, judged hold by hold as if they ran one by one: a reservation short on
    one line leaves its other lines' units to those after it; unknown positions are named."""
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 2)
    await receive(client, "SKU-B", "DC-NJ", 1)

    def item(*lines):
        return _batch_item("group-order", *lines)

    items = [
        item(("SKU-A", "DC-NJ", 1), ("SKU-B", "DC-NJ", 2)),  # short on B: its A unit goes back
        item(("SKU-A", "DC-NJ", 2)),  # so both A units are there for this one
        item(("SKU-B", "DC-NJ", 1)),
        item(("SKU-B", "DC-NJ", 1)),  # B is gone by now
        item(("SKU-NOPE", "DC-NJ", 1)),
    ]
    async with db.acquire() as conn, conn.transaction():
        results = await store.reserve_batch(conn, items)
    assert [isinstance(r, store.Shortage) for r in results] == [True, False, False, True, True]
    assert results[0].shortages == [
        {
            "sku": "SKU-B",
            "location_id": "DC-NJ",
            "requested": 2,
            "available": 1,
            "unknown_sku": False,
            "unknown_location": False,
        }
    ]
    assert [(s["sku"], s["available"]) for s in results[3].shortages] == [("SKU-B", 0)]
    assert [(s["sku"], s["unknown_sku"], s["unknown_location"]) for s in results[4].shortages] == [
        ("SKU-NOPE", True, False)
    ]
    created, expires = results[1]
    assert 59 <= (expires - created).total_seconds() <= 60
    assert await _position(db, "SKU-A", "DC-NJ") == (2, 2)
    assert await _position(db, "SKU-B", "DC-NJ") == (1, 1)
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT r.reservation_id, l.sku, l.quantity FROM reservations r "
            "JOIN reservation_lines l USING (reservation_id) WHERE r.owner = 'group-order' ORDER BY l.sku"
        )
    assert [(r["reservation_id"], r["sku"], r["quantity"]) for r in rows] == [
        (items[1].reservation_id, "SKU-A", 2),
        (items[2].reservation_id, "SKU-B", 1),
    ]
    assert (await check_ledger(db))[1] == 0


async def test_a_group_releases_expired_holds_at_its_positions_before_it_judges(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 1)
    checkout = await make_key(client, "checkout")
    r = await client.post("/v1/reservations", json=_hold(ttl_seconds=1), headers=checkout)
    assert r.status_code == 201
    await asyncio.sleep(1.2)
    item = _batch_item("group-expiry", ("SKU-A", "DC-NJ", 1))
    async with db.acquire() as conn, conn.transaction():
        [result] = await store.reserve_batch(conn, [item])
    assert not isinstance(result, store.Shortage)
    assert await _position(db, "SKU-A", "DC-NJ") == (1, 1)
    r = await client.get(f"/v1/reservations/{r.json()['reservation_id']}", headers=checkout)
    assert r.json()["status"] == "expired"
    assert (await check_ledger(db))[1] == 0


async def test_groups_in_many_processes_racing_carts_in_opposite_orders_never_oversell(database_url, client, db):
    """Eight group-commit instances, each on its own pool (as eight service processes would
    be), send carts over the same positions, lines in opposite orders, and single holds,
    all at once: every outcome is a hold or a shortage (no deadlock reaches anyone) and the
    positions hold exactly what the holds say, never more than they have."""
    from engine.services.group_commit import ReservationGroups

    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 400)  # more than the carts can take: B decides
    await receive(client, "SKU-B", "DC-NJ", 45)  # 200 carts ask for one each
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=3) for _ in range(8)]
    try:
        sizes: list[int] = []

        class Groups(ReservationGroups):
            async def _send(self, items):
                sizes.append(len(items))
                return await super()._send(items)

        groups = [Groups(p, max_in_flight=2) for p in pools]
        carts = []
        for i in range(240):
            lines = [("SKU-A", "DC-NJ", 1 + i % 2), ("SKU-B", "DC-NJ", 1)][:: 1 if i % 3 else -1]
            carts.append(_batch_item("racer", *(lines if i % 4 else lines[:1])))
        results = await asyncio.gather(*(groups[i % 8].reserve(item) for i, item in enumerate(carts)))
    finally:
        await asyncio.gather(*(p.close() for p in pools))
    assert max(sizes) > 1, sizes  # holds really went together
    held = [item for item, r in zip(carts, results, strict=True) if not isinstance(r, store.Shortage)]
    assert all(isinstance(r, (tuple, store.Shortage)) for r in results)
    want = {"SKU-A": 0, "SKU-B": 0}
    for item in held:
        for line in item.lines:
            want[line.sku] += line.quantity
    assert await _position(db, "SKU-A", "DC-NJ") == (400, want["SKU-A"])
    assert await _position(db, "SKU-B", "DC-NJ") == (45, want["SKU-B"])
    assert want["SKU-B"] == 45  # each cart with B needs one and A never runs short: B runs out exactly
    refused = [item for item, r in zip(carts, results, strict=True) if isinstance(r, store.Shortage)]
    assert refused and all(any(line.sku == "SKU-B" for line in item.lines) for item in refused)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM reservations WHERE owner = 'racer'") == len(held)
    assert (await check_ledger(db))[1] == 0
