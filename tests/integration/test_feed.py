"""The change feed against a real database: which changes write events, exactly-once
consumption while writers commit out of order, filters, long polls, bad input, purge,
publisher election and shutdown."""

import asyncio
import json
import os
import random
import threading
import uuid

import pytest
from prometheus_client import REGISTRY

from engine.core.feed import Filter
from engine.core.model import Caller, Role
from engine.core.reservations import Line
from engine.errors import Gone, OutOfStock
from engine.services import fixtures, jobs
from engine.services import reservations as reservations_service
from engine.services.feed import Feed, KeepAlive, PublisherThread, _wrap
from engine.services.group_commit import ReservationGroups
from engine.services.reservations import sweep_expired
from engine.store import bulk
from engine.store import events as events_store
from engine.store import reservations as reservations_store
from engine.store.db import connect, create_pool
from tests.conftest import fresh_database
from tests.helpers import ADMIN, assert_problem, build_network, make_key, receive
from tests.integration.test_rebalancing import apply, propose

NYC = {"lat": 40.7128, "lon": -74.0060}


async def published(db, limit_s: float = 10.0) -> int:
    """Wait until the publisher has numbered every committed event; the feed's head."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    async with db.acquire() as conn:
        while await conn.fetchval("SELECT count(*) FROM events WHERE seq IS NULL"):
            assert loop.time() < deadline, "events left unpublished"
            await asyncio.sleep(0.02)
        return (await events_store.bounds(conn))[0]


async def cursor_now(client, db) -> int:
    """A cursor past every event written so far: what a consumer gets from a feed with no
    `after` once the publisher and this process's tail have caught up."""
    head = await published(db)
    for _ in range(100):
        r = await client.get("/v1/events", params={"timeout": 0})
        assert r.status_code == 200, r.text
        if r.json() == {"events": [], "next_after": head}:
            return head
        await asyncio.sleep(0.01)
    raise AssertionError(f"the feed did not start at {head}: {r.json()}")


async def drain(client, db, after: int, **params) -> tuple[list[dict], int]:
    """Every event after `after` published by now, read page by page as a consumer would."""
    target = await published(db)
    events = []
    while after < target:
        r = await client.get("/v1/events", params={"after": after, "timeout": 0, "limit": 1000, **params})
        assert r.status_code == 200, r.text
        page = r.json()
        events += page["events"]
        assert page["next_after"] >= after
        if page["next_after"] == after:
            await asyncio.sleep(0.01)  # this process's tail is catching up with the publisher
        after = page["next_after"]
    return events, after


def brief(events: list[dict]) -> list[tuple]:
    """(kind, sku, location_id, status or available) per event, in feed order."""
    out = []
    for e in events:
        p = e["payload"]
        out.append((e["kind"], e["sku"], e["location_id"], p.get("status", p.get("available"))))
    return out


async def test_a_receipt_writes_a_stock_event_with_the_new_numbers(client, db):
    await build_network(client)
    start = await cursor_now(client, db)
    await receive(client, "SKU-A", "STORE-NYC", 5)  # safety stock 1 at STORE-NYC
    events, _ = await drain(client, db, start)
    [e] = events
    assert (e["kind"], e["sku"], e["location_id"]) == ("stock", "SKU-A", "STORE-NYC")
    assert e["payload"] == {
        "on_hand": 5,
        "reserved": 0,
        "safety_stock": 1,
        "in_transit_in": 0,
        "available": 4,
        "delta_on_hand": 5,
        "delta_reserved": 0,
    }
    assert e["seq"] > start and e["created_at"]


async def test_a_change_that_leaves_available_unchanged_writes_no_stock_event(client, db):
    await build_network(client)
    start = await cursor_now(client, db)
    # STORE-NYC keeps 1 unit of safety stock: a first unit received is still 0 available.
    await receive(client, "SKU-A", "STORE-NYC", 1)
    await receive(client, "SKU-A", "STORE-NYC", 1)
    events, _ = await drain(client, db, start)
    assert brief(events) == [("stock", "SKU-A", "STORE-NYC", 1)]


async def test_reserve_release_commit_and_expiry_each_write_their_events(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    checkout = await make_key(client, "checkout")
    start = await cursor_now(client, db)

    def hold(qty, ttl=900):
        return {"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": qty}], "ttl_seconds": ttl}

    released = (await client.post("/v1/reservations", json=hold(1), headers=checkout)).json()["reservation_id"]
    committed = (await client.post("/v1/reservations", json=hold(2), headers=checkout)).json()["reservation_id"]
    expiring = (await client.post("/v1/reservations", json=hold(3, ttl=1), headers=checkout)).json()["reservation_id"]
    assert (await client.post(f"/v1/reservations/{released}/release", headers=checkout)).status_code == 200
    assert (await client.post(f"/v1/reservations/{committed}/commit", headers=checkout)).status_code == 200
    await asyncio.sleep(1.1)
    assert await sweep_expired(db) == 1

    events, _ = await drain(client, db, start)
    stock = [
        (e["payload"]["available"], e["payload"]["delta_on_hand"], e["payload"]["delta_reserved"])
        for e in events
        if e["kind"] == "stock"
    ]
    # A commit takes on_hand and reserved down together: `available` stays, so it writes
    # no stock event (the reservation's `committed` event tells).
    assert stock == [(9, 0, 1), (7, 0, 2), (4, 0, 3), (5, 0, -1), (8, 0, -3)]
    holds = [
        (e["payload"]["reservation_id"], e["payload"]["previous_status"], e["payload"]["status"])
        for e in events
        if e["kind"] == "reservation"
    ]
    assert holds == [
        (released, None, "active"),
        (committed, None, "active"),
        (expiring, None, "active"),
        (released, "active", "released"),
        (committed, "active", "committed"),
        (expiring, "active", "expired"),
    ]


async def test_group_commit_writes_events_only_for_the_holds_it_made(client, db):
    """Reservations sent together in one statement: only the holds made write events, and the
    position's one change (the group's sum) is one stock event."""
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 3)
    start = await cursor_now(client, db)
    groups = ReservationGroups(db, max_in_flight=1)
    caller = Caller(key_id="feed-test", role=Role.CHECKOUT)
    line = [Line(sku="SKU-A", location_id="DC-NJ", quantity=1)]
    outcomes = await asyncio.gather(
        *(
            reservations_service.create(db, caller, line, ttl_seconds=60, reference=None, idem_key=None, groups=groups)
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    held = [json.loads(body)["reservation_id"] for status, body in (o for o in outcomes if isinstance(o, tuple))]
    assert len(held) == 3 and sum(isinstance(o, OutOfStock) for o in outcomes) == 2
    events, _ = await drain(client, db, start)
    assert sorted(e["payload"]["reservation_id"] for e in events if e["kind"] == "reservation") == sorted(held)
    stock = [e["payload"] for e in events if e["kind"] == "stock"]
    assert [(p["available"], p["delta_reserved"], p["reserved"]) for p in stock] == [(0, 3, 3)]


async def test_placing_and_cancelling_an_order_write_order_fulfillment_and_stock_events(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 10)
    checkout = await make_key(client, "checkout")
    start = await cursor_now(client, db)
    body = {"order_id": "web-1", "destination": NYC, "lines": [{"line_id": "1", "sku": "SKU-A", "quantity": 2}]}
    r = await client.post("/v1/orders", json=body, headers=checkout)
    assert r.status_code == 201, r.text
    [f] = r.json()["fulfillments"]
    assert (await client.post("/v1/orders/web-1/cancel", headers=checkout)).status_code == 200

    events, _ = await drain(client, db, start)
    assert [
        (e["kind"], e["payload"].get("status"), e["payload"].get("previous_status"))
        for e in events
        if e["kind"] in ("order", "fulfillment")
    ] == [
        ("order", "allocated", None),
        ("fulfillment", "open", None),
        ("fulfillment", "cancelled", "open"),
        ("order", "cancelled", "allocated"),
    ]
    fulfillment = next(e for e in events if e["kind"] == "fulfillment")
    assert fulfillment["location_id"] == "DC-NJ"
    assert fulfillment["payload"]["order_id"] == "web-1"
    assert fulfillment["payload"]["fulfillment_id"] == f["fulfillment_id"]
    assert fulfillment["payload"]["reservation_id"] == f["reservation_id"]
    assert [e["payload"]["available"] for e in events if e["kind"] == "stock"] == [8, 10]
    assert [e["payload"]["status"] for e in events if e["kind"] == "reservation"] == ["active", "released"]


async def test_a_transfer_and_its_receipt_write_stock_events_at_both_ends(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "DC-NJ", 20)
    r = await client.put(
        "/v1/demand",
        json={"demand": [{"sku": "SKU-A", "location_id": "STORE-NYC", "units_per_day": 3}]},
        headers=ADMIN,
    )
    assert r.status_code == 200
    start = await cursor_now(client, db)
    run = await propose(client, demand="given")
    [p] = (await apply(client, run["run_id"]))["proposals"]
    moved = p["quantity"]
    assert (await client.post(f"/v1/transfers/{p['transfer_id']}/receive", headers=ADMIN)).status_code == 200

    events, _ = await drain(client, db, start, kind="stock")
    # In transit counts nowhere as available: the source drops when it leaves, the
    # destination (safety stock 1) rises only on receipt.
    assert [(e["location_id"], e["payload"]["available"], e["payload"]["in_transit_in"]) for e in events] == [
        ("DC-NJ", 20 - moved, 0),
        ("STORE-NYC", moved - 1, 0),
    ]


async def test_a_locations_safety_stock_change_writes_an_event_per_position_it_moves(client, db):
    await build_network(client)
    await receive(client, "SKU-A", "STORE-PHL", 5)
    await receive(client, "SKU-B", "STORE-PHL", 1)
    start = await cursor_now(client, db)
    body = {"kind": "store", "name": "Philadelphia", "lat": 39.9526, "lon": -75.1652, "pickup": True, "safety_stock": 2}
    assert (await client.put("/v1/locations/STORE-PHL", json=body, headers=ADMIN)).status_code == 200
    events, _ = await drain(client, db, start)
    assert [(e["sku"], e["payload"]["available"], e["payload"]["safety_stock"]) for e in events] == [
        ("SKU-A", 3, 2),
        ("SKU-B", 0, 2),
    ]


async def test_filters_keep_what_was_asked_for_and_a_reload_always_passes(client, db):
    await build_network(client)
    start = await cursor_now(client, db)
    await receive(client, "SKU-A", "DC-NJ", 5)
    await receive(client, "SKU-B", "DC-NJ", 5)
    await receive(client, "SKU-A", "STORE-PHL", 5)
    r = await client.post(
        "/v1/reservations", headers=ADMIN, json={"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 1}]}
    )
    assert r.status_code == 201
    async with db.acquire() as conn, conn.transaction():
        await events_store.record_reload(conn, {"reason": "test"})

    def seen(events):
        return [(e["kind"], e["sku"], e["location_id"]) for e in events]

    by_sku, _ = await drain(client, db, start, sku="SKU-A")
    assert seen(by_sku) == [
        ("stock", "SKU-A", "DC-NJ"),
        ("stock", "SKU-A", "STORE-PHL"),
        ("stock", "SKU-A", "DC-NJ"),
        ("reload", None, None),
    ]
    by_place, _ = await drain(client, db, start, location_id=["STORE-PHL", "DC-NJ"], kind="stock")
    assert seen(by_place) == [
        ("stock", "SKU-A", "DC-NJ"),
        ("stock", "SKU-B", "DC-NJ"),
        ("stock", "SKU-A", "STORE-PHL"),
        ("stock", "SKU-A", "DC-NJ"),
        ("reload", None, None),
    ]
    holds, end = await drain(client, db, start, kind="reservation")
    assert seen(holds) == [("reservation", None, None), ("reload", None, None)]
    # A filtered consumer's cursor moves past what its filter skipped.
    assert end >= max(e["seq"] for e in by_place)


async def test_a_long_poll_answers_as_soon_as_an_event_is_written(client, db, database_url):
    await build_network(client)
    start = await cursor_now(client, db)

    async def receipt() -> None:
        conn = await connect(database_url)
        try:
            await asyncio.sleep(0.3)
            await conn.execute(
                "INSERT INTO stock_movements (sku, location_id, kind, delta_on_hand, actor) "
                "VALUES ('SKU-A', 'DC-NJ', 'receipt', 5, 'test')"
            )
            await conn.execute(
                "UPDATE stock_positions SET on_hand = on_hand + 5 WHERE sku = 'SKU-A' AND location_id = 'DC-NJ'"
            )
        finally:
            await conn.close()

    # The test client blocks this event loop while a request runs: the write comes from a thread.
    async with db.acquire() as conn:
        await conn.execute("INSERT INTO stock_positions (sku, location_id) VALUES ('SKU-A', 'DC-NJ')")
    writer = threading.Thread(target=asyncio.run, args=(receipt(),))
    loop = asyncio.get_running_loop()
    began = loop.time()
    writer.start()
    r = await client.get("/v1/events", params={"after": start, "timeout": 10})
    waited = loop.time() - began
    writer.join()
    assert r.status_code == 200
    assert [e["kind"] for e in r.json()["events"]] == ["stock"], (waited, r.json())
    assert 0.25 < waited < 5, waited


async def test_a_long_poll_with_nothing_new_answers_empty_after_its_timeout(client, db):
    await build_network(client)
    start = await cursor_now(client, db)
    loop = asyncio.get_running_loop()
    began = loop.time()
    r = await client.get("/v1/events", params={"after": start, "timeout": 0.5, "kind": "order"})
    waited = loop.time() - began
    assert r.status_code == 200
    assert r.json() == {"events": [], "next_after": start}
    assert 0.45 < waited < 3, waited


async def test_last_event_id_wins_over_after(client, db):
    await build_network(client)
    start = await cursor_now(client, db)
    await receive(client, "SKU-A", "DC-NJ", 5)
    await receive(client, "SKU-B", "DC-NJ", 5)
    events, _ = await drain(client, db, start)
    first, second = events
    r = await client.get(
        "/v1/events", params={"after": start, "timeout": 0}, headers={"Last-Event-ID": str(first["seq"])}
    )
    assert [e["seq"] for e in r.json()["events"]] == [second["seq"]]


async def test_bad_parameters_are_400_problems(client, db):
    bad = [
        ({"after": "-1"}, {}, "after"),
        ({"after": "ten"}, {}, "after"),
        ({"after": str(2**63)}, {}, "after"),
        ({"limit": "0"}, {}, "limit"),
        ({"limit": "1001"}, {}, "limit"),
        ({"timeout": "61"}, {}, "timeout"),
        ({"timeout": "soon"}, {}, "timeout"),
        ({"kind": "stocks"}, {}, "kind"),
        ({"sku": "no spaces allowed"}, {}, "sku"),
        ({"location_id": ["ok", "x" * 65]}, {}, "location_id"),
        ({}, {"Last-Event-ID": "abc"}, "Last-Event-Id"),
        ({}, {"Last-Event-ID": "-5"}, "Last-Event-Id"),
    ]
    for params, headers, field in bad:
        for accept in ("application/json", "text/event-stream"):
            r = await client.get("/v1/events", params=params, headers={**headers, "Accept": accept})
            assert_problem(r, 400, field)


async def test_a_cursor_ahead_of_the_feed_is_410(client, db):
    head = await published(db)
    for accept in ("application/json", "text/event-stream"):
        r = await client.get("/v1/events", params={"after": head + 1000, "timeout": 0}, headers={"Accept": accept})
        body = assert_problem(r, 410)
        assert body["newest"] == head


async def test_any_role_may_read_the_feed_and_no_key_may_not(client, db):
    await build_network(client)
    for role, loc in (("checkout", None), ("pos", "STORE-NYC"), ("planner", None)):
        key = await make_key(client, role, loc)
        assert (await client.get("/v1/events", params={"timeout": 0}, headers=key)).status_code == 200
    r = await client.get("/v1/events", params={"timeout": 0}, headers={"Authorization": "Bearer nope"})
    assert_problem(r, 401)


async def test_purge_deletes_old_events_as_a_prefix_and_old_cursors_get_410(client, db):
    await build_network(client)
    start = await cursor_now(client, db)
    for qty in (1, 2, 3, 4):
        await receive(client, "SKU-A", "DC-NJ", qty)
    events, _ = await drain(client, db, start)
    seqs = [e["seq"] for e in events]
    assert len(seqs) == 4
    async with db.acquire() as conn:
        # Everything up to the second event is old, and so is the fourth: the prefix rule
        # keeps the fourth (behind a newer one) until the third is old too.
        await conn.execute(
            "UPDATE events SET published_at = now() - interval '100 hours' WHERE seq <= $1 OR seq = $2",
            seqs[1],
            seqs[3],
        )
    assert await jobs.purge_events(72, batch=1)(db) == 2
    async with db.acquire() as conn:
        left = [r[0] for r in await conn.fetch("SELECT seq FROM events WHERE seq > $1 ORDER BY seq", start)]
        published_through, purged_through = await events_store.bounds(conn)
    assert left == seqs[2:]
    assert purged_through == seqs[1]

    # Every process drops purged events from its memory within a second (the tail follows
    # the purge horizon), so the old cursor is refused there too.
    for _ in range(40):
        r = await client.get("/v1/events", params={"after": start, "timeout": 0})
        if r.status_code != 200:
            break
        await asyncio.sleep(0.1)
    body = assert_problem(r, 410)
    assert body["oldest_after"] == purged_through
    r = await client.get("/v1/events", params={"after": purged_through, "timeout": 0})
    assert [e["seq"] for e in r.json()["events"]] == seqs[2:]
    # Nothing younger than the retention goes, however many runs.
    assert await jobs.purge_events(72)(db) == 0


async def test_consumers_see_every_event_once_and_in_order_while_writers_commit_out_of_order(client, db, database_url):
    """32 writers on their own connections hold stock and dawdle a random few ms before
    committing, so transactions commit in another order than their events were inserted.
    A consumer paging `after` over HTTP while they write, and another paging the database
    directly in small windows, must each end with exactly the events in the table."""
    await build_network(client)
    positions = [(s, loc) for s in ("SKU-A", "SKU-B", "SKU-C") for loc in ("DC-NJ", "STORE-PHL", "STORE-EWR")]
    for sku, loc in positions:
        await receive(client, sku, loc, 10_000)
    start = await cursor_now(client, db)

    async def writer(pool, seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(12):
            sku, loc = rnd.choice(positions)
            async with pool.acquire() as conn, conn.transaction():
                await reservations_store.reserve(
                    conn,
                    reservation_id=uuid.uuid4(),
                    owner="feed-test",
                    reference=None,
                    ttl_seconds=900,
                    lines=[Line(sku=sku, location_id=loc, quantity=rnd.randint(1, 3))],
                )
                await asyncio.sleep(rnd.uniform(0, 0.02))

    async def write_all() -> None:
        writers_pool = await create_pool(database_url, min_size=32, max_size=32)
        try:
            await asyncio.gather(*(writer(writers_pool, i) for i in range(32)))
        finally:
            await writers_pool.close()

    # The test client blocks this event loop during each request: the writers get their own.
    writing = threading.Thread(target=asyncio.run, args=(write_all(),))

    async def http_consumer() -> list[dict]:
        seen, after = [], start
        while writing.is_alive():
            r = await client.get("/v1/events", params={"after": after, "timeout": 0.2, "limit": 37})
            assert r.status_code == 200, r.text
            seen += r.json()["events"]
            after = r.json()["next_after"]
            await asyncio.sleep(0.002)  # let the database consumer run
        rest, _ = await drain(client, db, after)
        return seen + rest

    async def database_consumer() -> list[int]:
        seen, after = [], start
        while True:
            # Checked before the page is read: then that page sees every event there will be.
            settled = not writing.is_alive() and not await _unpublished(db)
            async with db.acquire() as conn:
                page = await events_store.page(conn, after, limit=5, upto=after + 7)
            seen += [e.seq for e in page.events]
            after = page.scanned_through
            if settled and after >= page.published_through:
                return seen
            if not page.events:
                await asyncio.sleep(0.005)

    writing.start()
    over_http, over_sql = await asyncio.gather(http_consumer(), database_consumer())
    writing.join()

    async with db.acquire() as conn:
        table = await conn.fetch("SELECT seq, event_id FROM events WHERE seq > $1 ORDER BY seq", start)
    expected = [r["seq"] for r in table]
    assert len(expected) == 32 * 12 * 2  # a stock and a reservation event per hold
    assert [e["seq"] for e in over_http] == expected
    assert over_sql == expected
    # The trap was there: some events committed (and so were numbered) after events
    # inserted later, so a reader paging by insertion id would have skipped them.
    ids = [r["event_id"] for r in table]
    assert any(a > b for a, b in zip(ids, ids[1:], strict=False)), "no out-of-order commit happened"


async def _unpublished(pool) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM events WHERE seq IS NULL")


async def _collect(stream, count: int, limit_s: float = 10.0) -> list:
    got = []
    async with asyncio.timeout(limit_s):
        async for item in stream:
            got.append(item)
            if sum(len(x) for x in got if isinstance(x, list)) >= count:
                return got
    return got


async def next_batch(stream, end=None):
    """The next batch of events (or `end` when the stream ends), past the plain keep-alives
    (every 0.2 s here) that a stream sends while nothing is published: on a busy machine a
    write can take longer than one keep-alive interval to be."""
    while True:
        item = await anext(stream, end)
        if item != KeepAlive(cursor=None):
            return item


async def test_a_stream_starts_with_its_cursor_then_sends_batches_and_keepalives(pool, client, db, database_url):
    await build_network(client)
    feed = Feed(pool, database_url, keepalive=0.2)
    await feed.start()
    try:
        stream = feed.stream(None, Filter(kinds=frozenset({"stock"})))
        first = await anext(stream)
        assert isinstance(first, KeepAlive) and first.cursor is not None
        await receive(client, "SKU-A", "DC-NJ", 5)
        batch = await asyncio.wait_for(next_batch(stream), 10)
        assert [e.kind for e in batch] == ["stock"] and batch[0].seq > first.cursor
        # Then nothing: a keep-alive, carrying no cursor (nothing was skipped).
        idle = await asyncio.wait_for(anext(stream), 5)
        assert idle == KeepAlive(cursor=None)
        # An event the filter skips moves the cursor: the next keep-alive names it.
        r = await client.post(
            "/v1/reservations", headers=ADMIN, json={"lines": [{"sku": "SKU-A", "location_id": "DC-NJ", "quantity": 1}]}
        )
        assert r.status_code == 201
        batch = await asyncio.wait_for(next_batch(stream), 10)
        assert [e.kind for e in batch] == ["stock"]
        skipped = await asyncio.wait_for(anext(stream), 5)
        assert isinstance(skipped, KeepAlive) and skipped.cursor is not None and skipped.cursor > batch[0].seq
        # end_streams ends the stream at once (shutdown must not wait for it).
        waiting = asyncio.create_task(next_batch(stream, end="ended"))
        await asyncio.sleep(0.05)
        feed.end_streams()
        assert await asyncio.wait_for(waiting, 2) == "ended"
    finally:
        await feed.stop()


async def test_a_stream_behind_the_purge_ends_with_gone(pool, client, db, database_url):
    await build_network(client)
    start = await cursor_now(client, db)
    await receive(client, "SKU-A", "DC-NJ", 5)
    await published(db)
    async with db.acquire() as conn:
        await conn.execute("UPDATE events SET published_at = now() - interval '100 hours' WHERE seq > $1", start)
    assert await jobs.purge_events(72)(db) >= 1
    feed = Feed(pool, database_url)
    await feed.start()
    try:
        with pytest.raises(Gone):
            await feed.check(start)
        stream = feed.stream(start, Filter())
        assert await anext(stream) == KeepAlive(cursor=start)
        with pytest.raises(Gone):
            await anext(stream)
    finally:
        await feed.stop()


@pytest.fixture
async def lone_db(server_url):
    """A database of its own, so that no other feed (the test app's) takes part in the election."""
    async with fresh_database(server_url, f"omniroute_feed_election_{os.getpid()}") as url:
        lone_pool = await create_pool(url, min_size=1, max_size=4)
        try:
            yield url, lone_pool
        finally:
            await lone_pool.close()


async def _until(condition, limit_s: float) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()
    while not condition():
        assert loop.time() - began < limit_s, "condition not met in time"
        await asyncio.sleep(0.02)
    return loop.time() - began


async def test_one_process_publishes_and_another_takes_over_when_it_stops(lone_db):
    """Feeds in this process stand in for service processes: each has its own connections,
    and the advisory lock elects one publisher among them."""
    url, lone_pool = lone_db
    feeds = [Feed(lone_pool, url) for _ in range(3)]
    for feed in feeds:
        await feed.start()
    try:
        await _until(lambda: sum(f.is_publisher for f in feeds) == 1, 5)
        await asyncio.sleep(1.5)  # more election rounds: still exactly one
        assert sum(f.is_publisher for f in feeds) == 1
        leader = next(f for f in feeds if f.is_publisher)
        async with lone_pool.acquire() as conn:
            await events_store.record(conn, [("reload", None, None, {"n": 1})])
        # Published, and every process (the followers through the NOTIFY) holds it.
        await _until(lambda: all(f.head >= 1 for f in feeds), 3)

        await leader.stop()
        async with lone_pool.acquire() as conn:
            await events_store.record(conn, [("reload", None, None, {"n": 2})])
        survivors = [f for f in feeds if f is not leader]
        took = await _until(lambda: all(f.head >= 2 for f in survivors), 5)
        assert took < 3, took  # a candidate tries the lock every second
        assert sum(f.is_publisher for f in survivors) == 1
        async with lone_pool.acquire() as conn:
            rows = await conn.fetch("SELECT seq, payload FROM events ORDER BY seq")
        assert [(r["seq"], r["payload"]) for r in rows] == [(1, {"n": 1}), (2, {"n": 2})]
    finally:
        for feed in feeds:
            await feed.stop()


async def _publish_and_listen(lone_db, rows: list[tuple]) -> tuple[events_store.Published, list[str]]:
    """Record `rows`, publish them in one call; what that call numbered, and the payloads
    a listening session received for it."""
    url, lone_pool = lone_db
    async with lone_pool.acquire() as conn:
        await events_store.record(conn, rows)
    publisher, listener = await connect(url), await connect(url)
    got: list[str] = []
    await listener.add_listener(events_store.CHANNEL, lambda *args: got.append(args[3]))
    try:
        batch = await events_store.publish(publisher, 1000)
        await _until(lambda: got, 5)
        await asyncio.sleep(0.1)  # the rest of that transaction's notifications
        return batch, got
    finally:
        await listener.close()
        await publisher.close()


async def test_a_notification_carries_the_batch_as_a_page_would_return_it(lone_db):
    """A batch too large for one notification goes in several, each under PostgreSQL's
    8000-byte limit, each continuing where the one before stopped; decoded, the events are
    the ones a database page returns, down to the bytes a consumer is sent."""
    rows = [("stock", f'SKU-"{i}"-ü\\', f"L-{i % 3}", {"available": i, "note": "x" * 150}) for i in range(80)]
    rows.append(("reservation", None, None, {"reservation_id": str(uuid.uuid4()), "status": "active"}))
    batch, payloads = await _publish_and_listen(lone_db, rows)
    assert len(batch.events) == 81
    assert len(payloads) > 1, "expected the batch to be split"
    assert all(len(p.encode()) < 8000 for p in payloads)
    notices = [events_store.notice(p) for p in payloads]
    assert [n.previous for n in notices] == [batch.previous] + [n.head for n in notices[:-1]]
    assert notices[-1].head == batch.head
    carried = [e for n in notices for e in n.events]
    async with lone_db[1].acquire() as conn:
        page = await events_store.page(conn, batch.previous, limit=1000, upto=batch.head)
    assert carried == page.events == batch.events
    assert [_wrap(e) for e in carried] == [_wrap(e) for e in page.events]


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([("reload", None, None, {"note": "x" * 2000})], id="one-event-too-wide"),
        pytest.param([("stock", f"SKU-{i}", "L", {"note": "x" * 900}) for i in range(100)], id="batch-too-large"),
    ],
)
async def test_a_batch_that_does_not_fit_is_announced_by_its_high_water_mark(lone_db, rows):
    batch, payloads = await _publish_and_listen(lone_db, rows)
    assert len(batch.events) == len(rows)
    assert payloads == [str(batch.head)]
    assert events_store.notice(payloads[0]) == batch.head


def _followed(via: str) -> float:
    return REGISTRY.get_sample_value("omniroute_events_followed_total", {"via": via}) or 0.0


async def test_workers_follow_the_supervisors_publisher_thread_and_one_takes_over_when_it_stops(lone_db):
    """The `serve --workers N` layout: the supervisor's publisher thread (its own event
    loop) is elected before the workers start; the workers stay candidates. Their tails grow
    from what the notifications carry, without reading the database; a batch too large for
    them is read back. When the thread stops, its lock goes with its connection and a
    worker takes over."""
    url, lone_pool = lone_db
    thread = PublisherThread(url)
    assert thread.start()
    feeds = [Feed(lone_pool, url) for _ in range(2)]
    for feed in feeds:
        await feed.start()
    try:
        await _until(lambda: all(f._live for f in feeds), 5)
        noticed, read = _followed("notice"), _followed("read")
        async with lone_pool.acquire() as conn:
            for i in range(20):
                await events_store.record(conn, [("stock", f"SKU-{i}", "L", {"available": i})])
        await _until(lambda: all(f.head >= 20 for f in feeds), 5)
        assert _followed("notice") - noticed == 40
        assert _followed("read") == read

        async with lone_pool.acquire() as conn:
            await events_store.record(conn, [("reload", None, None, {"note": "x" * 2000})])
        await _until(lambda: all(f.head >= 21 for f in feeds), 5)
        assert _followed("read") - read == 2
        for feed in feeds:
            got, cursor, more = await feed.read(0, Filter(), 100)
            assert [e.seq for e in got] == list(range(1, 22)) and cursor == 21 and not more
        assert thread.publisher.is_publisher and not any(f.is_publisher for f in feeds)

        await asyncio.to_thread(thread.stop)
        assert not thread.publisher.is_publisher
        took = await _until(lambda: sum(f.is_publisher for f in feeds) == 1, 5)
        assert took < 3, took  # a candidate tries the lock every second
        async with lone_pool.acquire() as conn:
            await events_store.record(conn, [("stock", "SKU-X", "L", {"available": 1})])
        await _until(lambda: all(f.head >= 22 for f in feeds), 5)
    finally:
        await asyncio.to_thread(thread.stop)
        for feed in feeds:
            await feed.stop()


async def test_a_bulk_load_writes_one_reload_event_not_one_per_position(lone_db):
    url, lone_pool = lone_db
    result = await fixtures.load(url, "demo", show_progress=False)
    async with lone_pool.acquire() as conn:
        rows = await conn.fetch("SELECT kind, payload FROM events")
        enabled = await conn.fetchval(
            "SELECT tgenabled::text FROM pg_trigger WHERE tgname = $1", bulk.POSITION_EVENTS_TRIGGER
        )
    assert [(r["kind"], r["payload"]["positions"]) for r in rows] == [("reload", result["positions"])]
    assert result["positions"] > 80_000
    assert enabled == "O"  # on again for everyone else


async def test_one_statement_over_thousands_of_positions_writes_one_event_each(lone_db):
    """A set-based statement writes its stock events in one go, one per position whose
    available changed, with the numbers after the change."""
    url, lone_pool = lone_db
    await fixtures.load(url, "demo", show_progress=False)
    async with lone_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = '30s'")
        await conn.execute("DELETE FROM events")
        changed = await conn.fetch(
            """UPDATE stock_positions p SET reserved = p.reserved + 1
               FROM (SELECT sku, location_id FROM stock_positions
                     WHERE on_hand - reserved - coalesce(safety_stock, 0) > 5 ORDER BY sku, location_id LIMIT 20000) t
               WHERE p.sku = t.sku AND p.location_id = t.location_id
               RETURNING p.sku, p.location_id, p.reserved"""
        )
        events = await conn.fetch("SELECT sku, location_id, payload FROM events WHERE kind = 'stock'")
    assert len(changed) == 20_000
    assert {(e["sku"], e["location_id"], e["payload"]["reserved"]) for e in events} == {tuple(r) for r in changed}
    assert all(e["payload"]["delta_reserved"] == 1 for e in events)


async def test_a_feed_page_is_planned_as_at_most_one_page_of_rows(db):
    """With event_feed estimated as a table of unknown size (a thousand rows or more), the
    page's plan looked costly enough to be JIT-compiled: 150 ms per call, at every wake-up
    of every process. The plan must expect at most `limit` rows, however big `events` is."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        statement = await conn.prepare("EXPLAIN (FORMAT JSON) " + events_store._PAGE_SQL)
        [plan] = json.loads(await statement.fetchval(100, 0, 2**62, None, None, None))
    assert plan["Plan"]["Plan Rows"] <= 100, plan["Plan"]
