"""What one process remembers of availability, and the rules that keep it true.

An `Entry` is one SKU's availability as one database snapshot saw it: the ship total and
the `available` at every active pickup site, in the order of a `Sites` table. The cache
holds entries until something says they may be stale:

- a change to the SKU (`touch`: a stock event from the change feed, or a write this process
  made), or a change to the sites (`flush`);
- the entry's own deadline: the next expiry of a hold on the SKU, which frees stock without
  any write.

Fills race with changes. A fill takes a `token()` before it reads; `put` refuses an entry
if the SKU was touched, or the cache flushed, after that token: the snapshot may predate
the change, and the change's invalidation has already gone by. Pure: no I/O, no clock (the
caller passes monotonic times).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Iterable

import msgspec

from engine.core.geo import EARTH_RADIUS_KM, bounding_box


class Site:
    """An active pickup location, as the pickup list shows it."""

    __slots__ = ("location_id", "lat", "lon", "curbside")

    def __init__(self, location_id: str, lat: float, lon: float, curbside: bool) -> None:
        self.location_id = location_id
        self.lat = lat
        self.lon = lon
        self.curbside = curbside


def distance_km(
    lat: float,
    lon: float,
    site_lat: float,
    site_lon: float,
    cos_lat: float | None = None,
    cos_site_lat: float | None = None,
) -> float:
    """The haversine distance written as engine.store.availability computes it in SQL (same
    operations in the same order), so that both paths answer the same radius and order.
    `cos_lat` / `cos_site_lat`, when given, are cos(radians(lat)) / cos(radians(site_lat))
    worked out once by the caller: the same values, so the same result."""
    if cos_lat is None:
        cos_lat = math.cos(math.radians(lat))
    if cos_site_lat is None:
        cos_site_lat = math.cos(math.radians(site_lat))
    a = (
        math.sin(math.radians(site_lat - lat) / 2) ** 2
        + cos_lat * cos_site_lat * math.sin(math.radians(site_lon - lon) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


class Sites:
    """The active pickup locations in a fixed order (location id), and the location rows
    they came from (`signature`: any change to them changes what entries mean)."""

    def __init__(self, sites: list[Site], signature: object) -> None:
        self.sites = sites
        self.ids = [s.location_id for s in sites]
        self.signature = signature
        by_lat = sorted(range(len(sites)), key=lambda i: sites[i].lat)
        self._lats = [sites[i].lat for i in by_lat]
        # (index, lat, lon, cos(radians(lat))) by latitude: the per-site half of distance_km.
        self._band = [(i, sites[i].lat, sites[i].lon, math.cos(math.radians(sites[i].lat))) for i in by_lat]

    def near(self, lat: float, lon: float, radius_km: float, limit: int) -> list[tuple[int, float]]:
        """(site index, distance rounded to metres) of the nearest `limit` sites within
        `radius_km`, as the SQL path picks them (`near_in_radius`) and then lists them:
        by rounded distance, ties by location id (each site's cosine worked out once)."""
        min_lat, max_lat, min_lon, max_lon = bounding_box(lat, lon, radius_km)
        band = self._band[bisect.bisect_left(self._lats, min_lat) : bisect.bisect_right(self._lats, max_lat)]
        cos_lat = math.cos(math.radians(lat))
        ids = self.ids
        found = []
        for i, site_lat, site_lon, cos_site_lat in band:
            if min_lon <= site_lon <= max_lon:
                d = distance_km(lat, lon, site_lat, site_lon, cos_lat, cos_site_lat)
                if d <= radius_km:
                    found.append((d, ids[i], i))
        if not found:
            return []
        found.sort()
        shown = sorted((round(d, 3), location_id, i) for d, location_id, i in found[:limit])
        return [(i, d) for d, _, i in shown]


class Entry(msgspec.Struct, gc=False):
    """One SKU: `ship` total, `pickup[i]` available at site i, valid until `until`.

    The garbage collector walks none of it: the entry is untracked (it holds no mutable
    containers, so it is never part of a cycle), and so is a tuple of ints once a young
    collection has seen it. A full cache is 100,000 entries; had each a tracked object in
    it, every full collection would walk them all, a pause of tens of milliseconds."""

    ship: int
    pickup: tuple[int, ...]
    until: float

    @classmethod
    def sparse(cls, ship: int, n_sites: int, sites: list[int], available: list[int], until: float) -> Entry:
        """From the sites (numbered from 1) where something is available, and how much."""
        pickup = [0] * n_sites
        for site, quantity in zip(sites, available, strict=True):
            pickup[site - 1] = quantity
        return cls(ship, tuple(pickup), until)


class Cache:
    """Entries by SKU, least recently used dropped beyond `max_skus`."""

    def __init__(self, max_skus: int) -> None:
        if max_skus < 1:
            raise ValueError("max_skus must be at least 1")
        self.max_skus = max_skus
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._clock = 0  # counts changes: touches and flushes
        self._touched: dict[str, int] = {}  # sku -> clock of its last touch
        self._barrier = 0  # fills whose token is older are refused (a flush, or pruned touches)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sku: str, now: float) -> Entry | None:
        entry = self._entries.get(sku)
        if entry is None:
            return None
        if entry.until <= now:
            del self._entries[sku]
            return None
        self._entries.move_to_end(sku)
        return entry

    def token(self) -> int:
        """Take before reading the database for a fill; give to `put`."""
        return self._clock

    def unchanged_since(self, token: int, sku: str) -> bool:
        """No change to `sku` (and no flush) came after `token`: a read begun at `token`
        still reflects every change this cache has heard of."""
        return token >= self._barrier and self._touched.get(sku, -1) < token + 1

    def put(self, token: int, sku: str, entry: Entry) -> bool:
        """Keep `entry` unless a change it may not reflect came after `token`."""
        if not self.unchanged_since(token, sku):
            return False
        self._entries[sku] = entry
        self._entries.move_to_end(sku)
        while len(self._entries) > self.max_skus:
            self._entries.popitem(last=False)
        return True

    def touch(self, skus: Iterable[str]) -> None:
        """These SKUs changed: drop their entries and refuse fills already under way."""
        self._clock += 1
        for sku in skus:
            self._entries.pop(sku, None)
            self._touched[sku] = self._clock
        if len(self._touched) > 4 * self.max_skus:
            # Forget old touches; refusing every fill under way keeps that safe.
            self._touched.clear()
            self._barrier = self._clock
            self._clock += 1

    def flush(self) -> None:
        """Everything may have changed."""
        self._entries.clear()
        self._touched.clear()
        self._clock += 1
        self._barrier = self._clock
