"""The change feed in one process: the publisher (when elected), the tail that follows the
published feed, and its readers (long-poll pages and event streams).

Publisher. Every process runs one candidate (`Publisher`); `omniroute serve --workers N`
also runs one in its supervisor (`PublisherThread`), elected first. The candidate holding
the `publish-events` advisory lock numbers committed events
(engine.store.events.publish). Each publishing transaction notifies the other processes
with the batch itself when it fits in a few notifications, else with its high-water mark,
and a publisher in a serving process also hands the batch straight to that process's tail.

Tail. Every process keeps one LISTEN connection. A notification that carries the batch
continuing the tail is appended as it is; any other (a high-water mark, or a gap after a
lost connection) makes the tail read the events published since its own high-water mark:
one query per process, however many streams are open. It reads anyway every
`FOLLOW_SECONDS`, in case a notification was lost with a connection. It keeps the newest
`tail_size` events in memory; the tail holds every published event with seq in
(tail_from, head], so a reader whose cursor falls in that range is served from memory,
and any other reader reads the database (one windowed page at a time).

Readers never hold a connection while they wait, and end when `end_streams` is called (the
server is shutting down) so that they never hold up a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import msgspec
from prometheus_client import Counter, Histogram

from engine.core.feed import Filter, check_cursor
from engine.services.jobs import LOCKS
from engine.store import events as store
from engine.store import meta
from engine.store.db import connect

log = logging.getLogger("omniroute.feed")

PUBLISH_BATCH = 5_000
REFRESH_BATCH = 5_000
TAIL_SIZE = 20_000
WINDOW = 50_000  # seq numbers one database page looks ahead
MAX_SEQ = 2**63 - 1
IDLE_AFTER = 1.0  # seconds without events before the publisher looks less often
IDLE_FACTOR = 4
ELECTION_SECONDS = 1.0
FOLLOW_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
COMMAND_TIMEOUT = 30.0

PUBLISHED = Counter("omniroute_events_published_total", "events numbered by this process's publisher")
FOLLOWED = Counter(
    "omniroute_events_followed_total",
    "events added to this process's tail, by how they came: the publisher's hand-off in its "
    "own process, a notification that carried them, or a read of the database",
    ["via"],
)
_FOLLOWED_VIA = {via: FOLLOWED.labels(via) for via in ("hand-off", "notice", "read")}  # looked up once
FOLLOW_LAG = Histogram(
    "omniroute_event_follow_seconds",
    "from an event's write to this process holding it in its tail (publication and wake-up)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

_encoder = msgspec.json.Encoder()


class FeedEvent(msgspec.Struct, frozen=True):
    """A published event and its JSON (encoded once, shared by every reader)."""

    seq: int
    kind: str
    sku: str | None
    location_id: str | None
    data: bytes


class KeepAlive(msgspec.Struct, frozen=True):
    """Nothing new for a while. `cursor`, when set, is a position past every event the
    stream sent that the consumer may resume from (its filter skipped what lies between)."""

    cursor: int | None


def _wrap(event: store.Event) -> FeedEvent:
    return FeedEvent(event.seq, event.kind, event.sku, event.location_id, _encoder.encode(event))


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, or less if `stop` is set."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass


class Publisher:
    """A publisher candidate: it waits for the `publish-events` advisory lock and, while it
    holds it, numbers committed events (engine.store.events.publish) again at once after a
    pass that found some, else after `interval` seconds (IDLE_FACTOR times that once none
    came for IDLE_AFTER seconds). `on_batch` hears of every batch it numbered.

    The lock is a session lock on the candidate's own connection: if its process dies, the
    connection closes, the lock is released and another candidate takes over within
    ELECTION_SECONDS."""

    def __init__(
        self, url: str, *, interval: float = 0.005, on_batch: Callable[[store.Published], None] | None = None
    ) -> None:
        self._url = url
        self._interval = interval
        self._on_batch = on_batch
        self.is_publisher = False

    async def run(self, stop: asyncio.Event) -> None:
        """Stand for election and publish until `stop` is set."""
        while not stop.is_set():
            conn = None
            try:
                conn = await connect(self._url, command_timeout=COMMAND_TIMEOUT)
                while not await meta.try_lock(conn, LOCKS["publish-events"]):
                    await _sleep(stop, ELECTION_SECONDS)
                    if stop.is_set():
                        return
                self.is_publisher = True
                log.info("this process publishes the change feed", extra={"fields": {"pid": os.getpid()}})
                loop = asyncio.get_running_loop()
                last_event = loop.time()
                while not stop.is_set():
                    batch = await store.publish(conn, PUBLISH_BATCH)
                    if batch.events:  # while a pass finds events, the next starts at once
                        last_event = loop.time()
                        PUBLISHED.inc(len(batch.events))
                        if self._on_batch is not None:
                            self._on_batch(batch)
                    else:
                        idle = loop.time() - last_event > IDLE_AFTER
                        await _sleep(stop, self._interval * (IDLE_FACTOR if idle else 1))
            except Exception:  # noqa: BLE001 - the publisher must outlive any one failure
                log.exception("change feed publisher failed; reconnecting")
            finally:
                self.is_publisher = False
                if conn is not None:
                    conn.terminate()  # ends the session, and with it the advisory lock
            await _sleep(stop, RECONNECT_SECONDS)


class PublisherThread:
    """A publisher candidate on a thread of its own, with its own event loop: for the
    supervisor of several worker processes (`omniroute serve --workers N`). That process
    serves no requests, so the publisher's passes never wait behind a busy event loop; the
    workers get each batch from its notifications. It stands before the workers start, so
    it wins the election; the workers' own candidates take over only if it goes away."""

    def __init__(self, url: str, *, interval: float = 0.005) -> None:
        self.publisher = Publisher(url, interval=interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="omniroute-feed-publisher", daemon=True)

    def start(self, elected_within: float = ELECTION_SECONDS * 5) -> bool:
        """Start the thread and wait until its candidate holds the lock, or `elected_within`
        seconds (another process, of another instance, may hold it). Whether it does."""
        self._thread.start()
        self._started.wait()
        deadline = time.monotonic() + elected_within
        while not self.publisher.is_publisher and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        return self.publisher.is_publisher

    def _main(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._started.set()
            await self.publisher.run(self._stop)

        asyncio.run(main())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop publishing (the lock goes with the connection) and wait for the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)


class Feed:
    def __init__(
        self,
        pool: asyncpg.Pool,
        url: str,
        *,
        publish: bool = True,
        publish_interval: float = 0.005,
        keepalive: float = 15.0,
        tail_size: int = TAIL_SIZE,
        window: int = WINDOW,
    ) -> None:
        self._pool = pool
        self._url = url
        self._keepalive = keepalive
        self._tail_size = tail_size
        self._window = window
        self._publisher = (
            Publisher(url, interval=publish_interval, on_batch=lambda batch: self._offer(batch, "hand-off"))
            if publish
            else None
        )
        self.head = 0  # highest seq this process holds (every event up to it is published)
        self._live = False  # the tail follows the feed
        self.synced_at: float | None = None  # loop time a complete refresh of the tail began
        self.listeners: list[Callable[[list[store.Event]], None]] = []  # told of every event, in order
        self._tail_from = 0
        self._seqs: list[int] = []
        self._items: list[FeedEvent] = []
        self._ending = False
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()  # something was published beyond `head`
        self._wake = asyncio.Event()  # replaced each time `head` moves; readers wait on it
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def is_publisher(self) -> bool:
        return self._publisher is not None and self._publisher.is_publisher

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow())]
        if self._publisher is not None:
            self._tasks.append(loop.create_task(self._publisher.run(self._stop)))

    def end_streams(self) -> None:
        """Every open stream and long poll ends at once (the server is shutting down)."""
        self._ending = True
        self._notify()

    async def stop(self) -> None:
        self.end_streams()
        self._stop.set()
        self._dirty.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def _sleep(self, seconds: float) -> None:
        await _sleep(self._stop, seconds)

    def _offer(self, batch: store.Published, via: str) -> None:
        """A batch the publisher numbered, from its hand-off in this process or from a
        notification: appended at once if it continues the tail (no read back, no waiting
        for a notification a busy event loop would get to a turn or two later); after a gap
        (a notification missed, or the tail not live yet) the tail reads what it lacks."""
        if self._live and batch.previous == self.head:
            self._append(batch.events, batch.head, via)
        elif batch.head > self.head:
            self._dirty.set()

    # -- tail ----------------------------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            if store.notice_head(payload) <= self.head:
                return  # held already: the publisher's hand-off here, or a read, came first
            notice = store.notice(payload)
        except ValueError:
            log.warning("ignored a notification the change feed does not understand: %.80s", payload)
            self._dirty.set()  # read whatever was published instead
            return
        if isinstance(notice, int):
            self._dirty.set()  # the batch did not fit in the notification
        else:
            self._offer(notice, "notice")

    async def _follow(self) -> None:
        while not self._stop.is_set():
            conn = None
            try:
                conn = await connect(self._url, command_timeout=COMMAND_TIMEOUT)
                await conn.add_listener(store.CHANNEL, self._on_notify)
                if not self._live:
                    self.head, _ = await store.bounds(conn)
                    self._tail_from = self.head
                    self._live = True
                while not self._stop.is_set():
                    self._dirty.clear()
                    await self._refresh(conn)
                    try:
                        async with asyncio.timeout(FOLLOW_SECONDS):
                            await self._dirty.wait()
                    except TimeoutError:
                        pass
            except Exception:  # noqa: BLE001 - the tail must outlive any one failure
                log.exception("change feed follower failed; reconnecting")
            finally:
                if conn is not None:
                    conn.terminate()
            await self._sleep(RECONNECT_SECONDS)

    async def _refresh(self, conn: asyncpg.Connection) -> None:
        """Append everything published after `head` to the tail (contiguously: each page
        continues where the last one stopped), then wake the readers."""
        began = asyncio.get_running_loop().time()
        moved = False
        while True:
            page = await store.page(conn, self.head, limit=REFRESH_BATCH, upto=MAX_SEQ)
            moved = self._take(page.events, page.scanned_through, "read") or moved
            if len(page.events) < REFRESH_BATCH:
                break
        self._trim()
        if page.purged_through > self._tail_from:
            # Follow the purge, so that every process answers an old cursor alike (410).
            gone = bisect.bisect_right(self._seqs, page.purged_through)
            del self._seqs[:gone]
            del self._items[:gone]
            self._tail_from = page.purged_through
        self.synced_at = began
        if moved:
            self._notify()

    def _take(self, events: list[store.Event], through: int, via: str) -> bool:
        """Add `events` (every published event with seq in (head, through], in order) to the
        tail and tell the listeners. Events at or below `head` are skipped: a refresh may
        have read, in a snapshot taken before the publisher's hand-off, what that hand-off
        brought meanwhile. Returns whether `head` moved."""
        if events and events[0].seq <= self.head:
            events = [e for e in events if e.seq > self.head]
        if events:
            _FOLLOWED_VIA[via].inc(len(events))
            for listener in self.listeners:
                listener(events)
            now = time.time()
            for event in events:
                FOLLOW_LAG.observe(max(0.0, now - event.created_at.timestamp()))
            self._seqs.extend(e.seq for e in events)
            self._items.extend(_wrap(e) for e in events)
        if through > self.head:
            self.head = through
            return True
        return False

    def _append(self, events: list[store.Event], through: int, via: str) -> None:
        """A batch that continues this process's tail, handed over by the publisher in this
        process or carried by a notification."""
        if self._take(events, through, via):
            self._trim()
            self._notify()

    def _trim(self) -> None:
        excess = len(self._seqs) - self._tail_size
        if excess > self._tail_size // 4:  # trim in chunks, not on every refresh
            self._tail_from = self._seqs[excess - 1]
            del self._seqs[:excess]
            del self._items[:excess]

    def synced_within(self, seconds: float) -> bool:
        """The tail holds every event published up to `seconds` ago (listeners heard them)."""
        if not self._live or self.synced_at is None:
            return False
        return asyncio.get_running_loop().time() - self.synced_at < seconds

    # -- readers -------------------------------------------------------------------------

    async def head_now(self) -> int:
        """A cursor at the newest event (what "start from now" means)."""
        if self._live:
            return self.head
        async with self._pool.acquire() as conn:
            return (await store.bounds(conn))[0]

    async def read(self, after: int, flt: Filter, limit: int) -> tuple[list[FeedEvent], int, bool]:
        """Up to `limit` matching events after `after`: (events, next cursor, more known).

        From the tail when it covers `after`, else one database page (which raises Gone if
        events after `after` were purged, or if `after` is ahead of the feed)."""
        if self._live and self._tail_from <= after <= self.head:
            start = bisect.bisect_right(self._seqs, after)
            found = []
            for i in range(start, len(self._items)):
                item = self._items[i]
                if flt.matches(item.kind, item.sku, item.location_id):
                    found.append(item)
                    if len(found) == limit:
                        return found, item.seq, True
            return found, self.head, False
        async with self._pool.acquire() as conn:
            page = await store.page(
                conn,
                after,
                limit=limit,
                upto=min(after + self._window, MAX_SEQ),
                kinds=sorted(flt.kinds) if flt.kinds else None,
                skus=sorted(flt.skus) if flt.skus else None,
                locations=sorted(flt.locations) if flt.locations else None,
            )
        check_cursor(after, page.published_through, page.purged_through)
        return [_wrap(e) for e in page.events], page.scanned_through, page.scanned_through < page.published_through

    async def check(self, after: int) -> None:
        """Raise Gone now, before a stream starts, if `after` cannot be served."""
        if not (self._live and self._tail_from <= after <= self.head):
            async with self._pool.acquire() as conn:
                published, purged = await store.bounds(conn)
            check_cursor(after, published, purged)

    async def _wait(self, wake: asyncio.Event, seconds: float) -> bool:
        if seconds <= 0 or self._ending:
            return False
        try:
            async with asyncio.timeout(seconds):
                await wake.wait()
        except TimeoutError:
            return False
        return not self._ending

    async def poll(self, after: int | None, flt: Filter, *, limit: int, wait: float) -> tuple[list[FeedEvent], int]:
        """A long-poll page: the matching events after `after` as soon as there is at least
        one, or none once `wait` seconds pass. Returns (events, cursor for the next call)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        cursor = await self.head_now() if after is None else after
        while True:
            wake = self._wake  # taken before reading, so a batch published meanwhile still wakes us
            found, cursor, more = await self.read(cursor, flt, limit)
            if found or self._ending:
                return found, cursor
            if more and loop.time() < deadline:
                continue  # a filtered read stopped at a window edge: read on
            if not await self._wait(wake, deadline - loop.time()):
                return [], cursor

    async def stream(
        self, after: int | None, flt: Filter, *, batch: int = 500
    ) -> AsyncIterator[list[FeedEvent] | KeepAlive]:
        """Batches of matching events, in order, from `after` on, until `end_streams`.

        Starts with a KeepAlive naming the starting cursor, so that a consumer that began
        "from now" resumes from there rather than from a later "now"; then a KeepAlive every
        `keepalive` seconds without events. Gone mid-stream (events purged under a consumer
        that fell that far behind) propagates to the caller."""
        cursor = await self.head_now() if after is None else after
        yield KeepAlive(cursor=cursor)
        sent = cursor
        while not self._ending:
            wake = self._wake
            found, cursor, more = await self.read(cursor, flt, batch)
            if found:
                sent = found[-1].seq
                yield found
            if found or more:
                continue
            if not await self._wait(wake, self._keepalive) and not self._ending:
                yield KeepAlive(cursor=cursor if cursor != sent else None)
                sent = cursor
