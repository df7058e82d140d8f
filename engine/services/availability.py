"""Availability for checkout: ship total and nearby pickup stores per SKU.

Two paths give the same answer. `availability` without a view runs one statement per request
(engine.store.availability.fetch). With an `AvailabilityView` (the service's default), each
process keeps what it last read of each SKU (engine.core.availability) and asks the
database only for the SKUs it does not hold:

- The change feed's tail tells the view of every stock event (`Feed.listeners`). A SKU's
  entry is dropped when an event for it arrives, and all entries go on a `reload` event.
- A write this process makes drops its SKUs' entries before it answers, through
  `stock_changed` and `locations_changed`, so a caller reads its own writes at once.
- An entry lasts at most until the next hold on its SKU expires. A SKU with an expired hold
  that the sweep has not yet released is never kept.
- The pickup sites (active pickup locations) are re-read every `SITES_SECONDS`. A location
  edit elsewhere therefore shows within that time, and one made here shows at once.
- The view answers only while the tail is live and synced within `BLIND_SECONDS`. Otherwise
  every request takes the one-statement path.

So an answer from another process trails a write by the feed's delivery time (the
`omniroute_event_follow_seconds` histogram), the same kind of bound as a read replica's.
Fills go where `Reads` sends them. A replica's snapshot is kept only if it has every event
the tail had already applied when the fill began.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec
from prometheus_client import Counter

from engine.core.availability import Cache, Entry, Site, Sites
from engine.core.geo import bounding_box
from engine.errors import BadInput
from engine.services.reads import Reads
from engine.store import availability as store
from engine.store.events import Event

if TYPE_CHECKING:  # engine.services.feed imports the jobs, whose writers import this module
    from engine.services.feed import Feed

log = logging.getLogger("omniroute.availability")

SITES_SECONDS = 1.0
BLIND_SECONDS = 2.5  # the tail refreshes at least every FOLLOW_SECONDS (1 s) while healthy

LOOKUPS = Counter(
    "omniroute_availability_cache_lookups_total",
    "SKU lookups by the availability view: hit (from memory), miss (read, then kept or not), "
    "bypass (the view was not usable: one-statement path)",
    ["result"],
)
_HIT, _MISS, _BYPASS = (LOOKUPS.labels(result) for result in ("hit", "miss", "bypass"))


class PickupOption(msgspec.Struct, kw_only=True, gc=False):  # holds no containers: no cycles
    location_id: str
    available: int
    distance_km: float
    curbside: bool


class SkuAvailability(msgspec.Struct, kw_only=True):
    sku: str
    ship_available: int
    pickup: list[PickupOption] = []


class AvailabilityResult(msgspec.Struct, kw_only=True):
    items: list[SkuAvailability]


def _unknown(skus: Iterable[str]) -> BadInput:
    return BadInput("unknown sku", errors=[{"field": "sku", "message": f"unknown sku {s}"} for s in sorted(skus)])


# -- local writes ---------------------------------------------------------------------------

_views: weakref.WeakSet[AvailabilityView] = weakref.WeakSet()


def stock_changed(skus: Iterable[str]) -> None:
    """A write in this process changed (or may have changed) these SKUs' availability and
    has committed: every view here forgets them now, before the writer answers."""
    skus = set(skus)
    for view in _views:
        view.cache.touch(skus)


def locations_changed() -> None:
    """A location was written here: every view re-reads the sites before it answers again."""
    for view in _views:
        view.invalidate_sites()


# -- the view -------------------------------------------------------------------------------


class AvailabilityView:
    def __init__(self, reads: Reads, feed: Feed, *, max_skus: int) -> None:
        self.reads = reads
        self.feed = feed
        self.cache = Cache(max_skus)
        self.sites: Sites | None = None
        self._task: asyncio.Task | None = None
        self._sites_changed = asyncio.Event()
        self._sites_version = 0  # moves on every local location write
        # SKU -> (token, future of its entry) of the fill under way: a request that misses
        # the same SKU meanwhile waits for that fill instead of reading the SKU again.
        self._filling: dict[str, tuple[int, asyncio.Future[Entry | None]]] = {}

    async def start(self) -> None:
        self.feed.listeners.append(self._on_events)
        _views.add(self)
        self._task = asyncio.get_running_loop().create_task(self._follow_sites(), name="omniroute-availability-sites")

    async def stop(self) -> None:
        _views.discard(self)
        if self._on_events in self.feed.listeners:
            self.feed.listeners.remove(self._on_events)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def usable(self) -> bool:
        return self.sites is not None and self.feed.synced_within(BLIND_SECONDS)

    def invalidate_sites(self) -> None:
        """Forget everything and re-read the locations (a location was written here, a bulk
        load happened, or a caller changed the database behind the service)."""
        self.sites = None  # unusable until re-read
        self._sites_version += 1
        self.cache.flush()
        self._sites_changed.set()

    def _on_events(self, events: list[Event]) -> None:
        skus = []
        for e in events:
            if e.kind == "stock" and e.sku is not None:
                skus.append(e.sku)
            elif e.kind == "reload":
                self.invalidate_sites()
                return
        if skus:
            self.cache.touch(skus)

    async def _follow_sites(self) -> None:
        while True:
            self._sites_changed.clear()
            version = self._sites_version
            try:
                async with self.reads.primary.acquire() as conn:
                    rows = await store.sites(conn)
                signature = tuple(tuple(r) for r in rows)
                if version != self._sites_version:
                    continue  # a local write came while reading: these rows may predate it
                if self.sites is None or signature != self.sites.signature:
                    self.cache.flush()
                    self.sites = Sites(
                        [
                            Site(r["location_id"], r["lat"], r["lon"], r["curbside"])
                            for r in rows
                            if r["active"] and r["pickup"]
                        ],
                        signature,
                    )
            except Exception:  # noqa: BLE001 - the view must outlive any one failure
                log.exception("availability view: reading the locations failed")
                self.sites = None
            try:
                async with asyncio.timeout(SITES_SECONDS):
                    await self._sites_changed.wait()
            except TimeoutError:
                pass

    async def answer(
        self, skus: list[str], *, lat: float | None, lon: float | None, radius_km: float, pickup_limit: int
    ) -> AvailabilityResult:
        sites = self.sites
        assert sites is not None
        loop = asyncio.get_running_loop()
        now = loop.time()
        order = list(dict.fromkeys(skus))
        entries: dict[str, Entry] = {}
        missing = []
        for sku in order:
            entry = self.cache.get(sku, now)
            if entry is None:
                missing.append(sku)
            else:
                entries[sku] = entry
        _HIT.inc(len(entries))
        if missing:
            _MISS.inc(len(missing))
            await self._fill(missing, sites, now, entries)
        near = sites.near(lat, lon, radius_km, pickup_limit) if lat is not None and lon is not None else []
        shown = [(i, sites.ids[i], d, sites.sites[i].curbside) for i, d in near]
        items = []
        for sku in order:
            entry = entries[sku]
            pickup = entry.pickup
            items.append(
                SkuAvailability(
                    sku=sku,
                    ship_available=entry.ship,
                    pickup=[
                        PickupOption(location_id=location_id, available=pickup[i], distance_km=d, curbside=curbside)
                        for i, location_id, d, curbside in shown
                    ],
                )
            )
        return AvailabilityResult(items=items)

    async def _fill(self, missing: list[str], sites: Sites, now: float, entries: dict[str, Entry]) -> None:
        """Read the `missing` SKUs into `entries` (and keep what may be kept). A SKU another
        request is reading already is not read twice: this one waits for that read, provided
        no change to the SKU came after that read began (else its answer could predate a
        write whose writer has already answered; such a SKU is read again)."""
        joined: dict[str, asyncio.Future[Entry | None]] = {}
        mine = []
        for sku in missing:
            filling = self._filling.get(sku)
            if filling is not None and self.cache.unchanged_since(filling[0], sku):
                joined[sku] = filling[1]
            else:
                mine.append(sku)
        if mine:
            await self._read(mine, sites, now, entries)
        if joined:
            retry = []
            for sku, future in joined.items():
                entry = await asyncio.shield(future)  # our cancellation must not cancel the shared read
                if entry is None:  # that read failed, or found no such SKU: read it ourselves
                    retry.append(sku)
                else:
                    entries[sku] = entry
            if retry:
                await self._read(retry, sites, now, entries)

    async def _read(self, skus: list[str], sites: Sites, now: float, entries: dict[str, Entry]) -> None:
        loop = asyncio.get_running_loop()
        token, head = self.cache.token(), self.feed.head
        futures = {sku: loop.create_future() for sku in skus}
        for sku, future in futures.items():
            self._filling[sku] = (token, future)
        try:
            rows = await self.reads.run(lambda conn: store.fill(conn, skus, sites.ids))
            unknown = [r["sku"] for r in rows if not r["known"]]
            if unknown:
                raise _unknown(unknown)
            for r in rows:
                expires_in = r["expires_in"]
                until = math.inf if expires_in is None else now + expires_in
                entry = Entry.sparse(r["ship"], len(sites.ids), r["sites"], r["available"], until)
                entries[r["sku"]] = entry
                futures[r["sku"]].set_result(entry)
                if not r["expired"] and r["published_through"] >= head and sites is self.sites:
                    self.cache.put(token, r["sku"], entry)
        finally:
            for sku, future in futures.items():
                if not future.done():
                    future.set_result(None)
                if self._filling.get(sku, (None, None))[1] is future:
                    del self._filling[sku]


async def availability(
    reads: Reads,
    skus: list[str],
    *,
    lat: float | None,
    lon: float | None,
    radius_km: float,
    pickup_limit: int,
    view: AvailabilityView | None = None,
) -> AvailabilityResult:
    """Pickup lists are nearest first (ties by location id) and hold every active pickup
    location within `radius_km`, up to `pickup_limit`, including those with nothing
    available. Unknown SKUs are a BadInput. From the view when it is usable, else one
    statement, one round trip, on the read replica when one is in use (engine.services.reads)."""
    if view is not None and view.usable():
        return await view.answer(skus, lat=lat, lon=lon, radius_km=radius_km, pickup_limit=pickup_limit)
    if view is not None:
        _BYPASS.inc(len(skus))
    box = bounding_box(lat, lon, radius_km) if lat is not None and lon is not None else (0.0, 0.0, 0.0, 0.0)
    rows = await reads.run(
        lambda conn: store.fetch(conn, skus, lat=lat, lon=lon, radius_km=radius_km, box=box, pickup_limit=pickup_limit)
    )
    by_sku: dict[str, SkuAvailability] = {}
    unknown = []
    for r in rows:
        if r["location_id"] is None:
            if not r["known"]:
                unknown.append(r["sku"])
            by_sku[r["sku"]] = SkuAvailability(sku=r["sku"], ship_available=r["available"])
    if unknown:
        raise _unknown(unknown)
    for r in rows:
        if r["location_id"] is not None:
            by_sku[r["sku"]].pickup.append(
                PickupOption(
                    location_id=r["location_id"],
                    available=r["available"],
                    distance_km=round(r["distance_km"], 3),
                    curbside=r["curbside"],
                )
            )
    items = []
    for s in dict.fromkeys(skus):
        entry = by_sku[s]
        entry.pickup.sort(key=lambda p: (p.distance_km, p.location_id))
        items.append(entry)
    return AvailabilityResult(items=items)
