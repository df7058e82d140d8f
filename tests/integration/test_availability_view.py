"""The availability view (engine.services.availability.AvailabilityView) against a real
database and the service's own change feed: it answers exactly as the one-statement path
does, it forgets what changed (writes here at once, writes elsewhere through the feed, hold
expiry by its deadline), and it steps aside when it cannot vouch for itself."""

import asyncio
import gc
import random

import msgspec
from prometheus_client import REGISTRY

from engine.core.model import Caller, Role
from engine.core.reservations import Line
from engine.services import fixtures, reservations
from engine.services.availability import AvailabilityView, availability
from engine.services.reads import Reads
from tests.helpers import ADMIN, build_network, receive

NYC = {"lat": 40.7128, "lon": -74.0060}


def _lookups(result: str) -> float:
    return REGISTRY.get_sample_value("omniroute_availability_cache_lookups_total", {"result": result}) or 0.0


def _view(client) -> AvailabilityView:
    return client.app.state.availability


async def _usable(view: AvailabilityView, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not view.usable():
        assert loop.time() < deadline, "the view did not become usable"
        await asyncio.sleep(0.02)


async def _settled(view: AvailabilityView, pool, within: float = 5.0) -> None:
    """Every event written so far is published and in the view's tail: none still on its
    way that would drop an entry made after it (as a late echo of a local write does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        async with pool.acquire() as conn:
            pending = await conn.fetchval("SELECT count(*) FROM events WHERE seq IS NULL")
            published = await conn.fetchval("SELECT published_through FROM event_feed")
        if pending == 0 and view.feed.head >= published:
            return
        assert loop.time() < deadline, "the feed did not catch up"
        await asyncio.sleep(0.01)


async def _ship(client, sku: str) -> int:
    r = await client.get("/v1/availability", params={"sku": [sku]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["items"][0]["ship_available"]


async def _eventually(check, within: float = 5.0) -> float:
    """Seconds until `check()` (a coroutine function) returns True; fails after `within`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        assert loop.time() - start < within, "the change did not reach the view"
        await asyncio.sleep(0.01)
    return loop.time() - start


async def _hold(client, sku: str, location_id: str, quantity: int, ttl_seconds: int = 900) -> str:
    r = await client.post(
        "/v1/reservations",
        headers=ADMIN,
        json={"lines": [{"sku": sku, "location_id": location_id, "quantity": quantity}], "ttl_seconds": ttl_seconds},
    )
    assert r.status_code == 201, r.text
    return r.json()["reservation_id"]


async def test_the_view_answers_exactly_as_the_statement_on_a_generated_network(client, database_url, db):
    await fixtures.load(database_url, "demo", show_progress=False)
    view = _view(client)
    view.invalidate_sites()  # the load wrote a `reload` event too; do not wait for it
    await _usable(view)
    async with db.acquire() as conn:
        skus = [r["sku"] for r in await conn.fetch("SELECT sku FROM items ORDER BY sku LIMIT 400")]
        sites = await conn.fetch("SELECT location_id, lat, lon FROM locations WHERE active AND pickup")
        positions = await conn.fetch(
            "SELECT sku, location_id FROM stock_positions WHERE sku = ANY($1) AND on_hand > 3", skus
        )
    rng = random.Random(7)
    for sku, location_id in rng.sample([tuple(p) for p in positions], 40):
        await _hold(client, sku, location_id, rng.randint(1, 3))
    statement = Reads(db)  # the one-statement path, on this test's own connections
    hits = _lookups("hit")
    for _ in range(60):
        site = rng.choice(sites)
        kwargs = {
            "lat": round(site["lat"] + rng.uniform(-1, 1), 4),
            "lon": round(site["lon"] + rng.uniform(-1, 1), 4),
            "radius_km": rng.choice([5.0, 40.0, 150.0, 600.0]),
            "pickup_limit": rng.choice([1, 5, 20]),
        }
        if rng.random() < 0.2:
            kwargs["lat"] = kwargs["lon"] = None
        basket = rng.sample(skus, rng.randint(1, 10))
        truth = msgspec.to_builtins(await availability(statement, basket, view=None, **kwargs))
        params = {"sku": basket, **{k: v for k, v in kwargs.items() if v is not None}}
        first = await client.get("/v1/availability", params=params, headers=ADMIN)  # some of it read now
        again = await client.get("/v1/availability", params=params, headers=ADMIN)  # all of it from memory
        assert first.json() == truth
        assert again.json() == truth
    assert _lookups("hit") - hits >= 60  # every `again` was served from memory
    assert len(view.cache) > 0


async def _ten_held_in_memory(client, db) -> None:
    """SKU-A: 10 at DC-NJ, read once and then served from the view's memory."""
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    await _usable(_view(client))
    await _settled(_view(client), db)
    assert await _ship(client, "SKU-A") == 10
    hits = _lookups("hit")
    assert await _ship(client, "SKU-A") == 10
    assert _lookups("hit") == hits + 1


async def test_a_write_through_this_process_is_read_at_once(client, db):
    await _ten_held_in_memory(client, db)
    rid = await _hold(client, "SKU-A", "DC-NJ", 4)
    assert await _ship(client, "SKU-A") == 6  # no wait for the feed
    r = await client.post(f"/v1/reservations/{rid}/release", headers=ADMIN)
    assert r.status_code == 200
    assert await _ship(client, "SKU-A") == 10
    await receive(client, "SKU-A", "DC-NJ", 5)
    assert await _ship(client, "SKU-A") == 15
    r = await client.put(
        "/v1/locations/DC-NJ",
        headers=ADMIN,
        json={"kind": "warehouse", "name": "NJ", "lat": 40.5, "lon": -74.4, "active": False},
    )
    assert r.status_code == 200
    assert await _ship(client, "SKU-A") == 0


async def test_a_write_elsewhere_reaches_the_view_through_the_change_feed(client, db):
    await _ten_held_in_memory(client, db)
    async with db.acquire() as conn:  # another writer: no local invalidation
        await conn.execute(
            "UPDATE stock_positions SET on_hand = on_hand + 7 WHERE sku = 'SKU-A' AND location_id = 'DC-NJ'"
        )

    async def seen() -> bool:
        return await _ship(client, "SKU-A") == 17

    await _eventually(seen)


async def test_a_location_edited_elsewhere_shows_after_the_next_look_at_the_locations(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    await receive(client, "SKU-A", "STORE-NYC", 3)  # safety stock 1
    await _usable(_view(client))
    assert await _ship(client, "SKU-A") == 12
    async with db.acquire() as conn:
        await conn.execute("UPDATE locations SET ships = false WHERE location_id = 'STORE-NYC'")

    async def seen() -> bool:
        return await _ship(client, "SKU-A") == 10

    assert await _eventually(seen) < 3.0  # the view re-reads the locations every second


async def test_an_entry_ends_when_a_hold_on_its_sku_expires(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    await _usable(_view(client))
    await _hold(client, "SKU-A", "DC-NJ", 4, ttl_seconds=1)
    await _settled(_view(client), db)
    assert await _ship(client, "SKU-A") == 6
    hits = _lookups("hit")
    assert await _ship(client, "SKU-A") == 6
    assert _lookups("hit") == hits + 1
    await asyncio.sleep(1.3)  # no sweep runs in tests: no write, no event
    assert await _ship(client, "SKU-A") == 10


async def test_a_sku_whose_expired_hold_is_not_yet_swept_is_read_every_time(client):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    await _usable(_view(client))
    await _hold(client, "SKU-A", "DC-NJ", 4, ttl_seconds=1)
    await asyncio.sleep(1.3)
    misses = _lookups("miss")
    for _ in range(3):
        assert await _ship(client, "SKU-A") == 10
    assert _lookups("miss") == misses + 3


async def test_the_view_steps_aside_while_the_feed_is_not_followed(client):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    view = _view(client)
    await _usable(view)
    feed = view.feed
    synced_at = feed.synced_at
    feed.synced_at = asyncio.get_running_loop().time() - 60  # as if the tail had been cut off
    try:
        assert not view.usable()
        bypass = _lookups("bypass")
        assert await _ship(client, "SKU-A") == 10
        assert _lookups("bypass") == bypass + 1
    finally:
        feed.synced_at = max(synced_at or 0.0, feed.synced_at)
    await _usable(view)


async def test_a_fill_from_a_snapshot_behind_the_tail_is_not_kept(client):
    """A replica's snapshot may lack events the tail has already applied: such a fill
    answers, but is not kept (simulated by a tail ahead of the database's feed)."""
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    view = _view(client)
    await _usable(view)
    head = view.feed.head
    view.feed.head = head + 1_000_000
    try:
        misses = _lookups("miss")
        assert await _ship(client, "SKU-A") == 10
        assert await _ship(client, "SKU-A") == 10
        assert _lookups("miss") == misses + 2
    finally:
        view.feed.head = head


async def test_an_unknown_sku_is_still_a_422_through_the_view(client):
    await build_network(client)
    await _usable(_view(client))
    r = await client.get("/v1/availability", params={"sku": ["SKU-A", "NOPE"]}, headers=ADMIN)
    assert r.status_code == 422
    assert "NOPE" in r.json()["errors"][0]["message"]


class _GatedReads:
    """The view's database reads, counted; the first one waits for `gate` (real reads,
    on the real database: only their timing is held)."""

    def __init__(self, reads: Reads) -> None:
        self.inner = reads
        self.calls = 0
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def run(self, work):
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            await self.gate.wait()
        return await self.inner.run(work)


def _on_the_apps_loop(client, scenario):
    """Run `scenario()` on the app's own event loop: the test client serves the app from a
    thread of its own, so requests sent from the test cannot overlap."""
    return client.blocking_portal.call(scenario)


async def _ship_of(view: AvailabilityView, sku: str) -> int:
    result = await view.answer([sku], lat=None, lon=None, radius_km=50.0, pickup_limit=20)
    return result.items[0].ship_available


async def test_requests_that_miss_the_same_sku_at_once_share_one_read(client, db):
    await _ten_held_in_memory(client, db)
    view = _view(client)

    async def scenario():
        view.cache.touch(["SKU-A"])  # forgotten: the next requests miss it
        gated = view.reads = _GatedReads(view.reads)
        try:
            first = asyncio.create_task(_ship_of(view, "SKU-A"))
            await gated.entered.wait()
            others = [asyncio.create_task(_ship_of(view, "SKU-A")) for _ in range(4)]
            await asyncio.sleep(0.05)  # they miss too, and wait for the first read
            reads_while_held = gated.calls
            gated.gate.set()
            return reads_while_held, await asyncio.gather(first, *others), gated.calls
        finally:
            gated.gate.set()
            view.reads = gated.inner

    reads_while_held, ships, reads = _on_the_apps_loop(client, scenario)
    assert reads_while_held == 1
    assert ships == [10] * 5
    assert reads == 1


async def test_a_request_after_a_write_does_not_wait_for_a_read_begun_before_the_write(client, db):
    await _ten_held_in_memory(client, db)
    view = _view(client)
    pool = client.app.state.pool
    caller = Caller(key_id="test-writer", role=Role.ADMIN)

    async def scenario():
        view.cache.touch(["SKU-A"])
        gated = view.reads = _GatedReads(view.reads)
        try:
            first = asyncio.create_task(_ship_of(view, "SKU-A"))
            await gated.entered.wait()  # a read is under way (held)
            status, _ = await reservations.create(
                pool,
                caller,
                [Line(sku="SKU-A", location_id="DC-NJ", quantity=4)],
                ttl_seconds=900,
                reference=None,
                idem_key=None,
            )
            assert status == 201  # answered: its caller may read it back now
            # Its own read: waiting for the held one would time out here.
            after_write = await asyncio.wait_for(_ship_of(view, "SKU-A"), 5)
            reads = gated.calls
            gated.gate.set()
            return after_write, reads, await first
        finally:
            gated.gate.set()
            view.reads = gated.inner

    after_write, reads, first = _on_the_apps_loop(client, scenario)
    assert after_write == 6
    assert reads == 2  # its own read
    assert first == 6  # the held read ran once the gate opened, after the hold


async def test_the_service_puts_what_it_built_at_start_out_of_the_collectors_way(client):
    """The lifespan freezes the start-up heap (modules, routes, pools), so that a full
    collection under load walks only what came after."""
    assert gc.get_freeze_count() > 10_000
