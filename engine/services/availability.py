"""Availability for checkout: ship total and nearby pickup stores per SKU."""

from __future__ import annotations

import msgspec

from engine.core.geo import bounding_box
from engine.errors import BadInput
from engine.services.reads import Reads
from engine.store import availability as store


class PickupOption(msgspec.Struct, kw_only=True):
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


async def availability(
    reads: Reads,
    skus: list[str],
    *,
    lat: float | None,
    lon: float | None,
    radius_km: float,
    pickup_limit: int,
) -> AvailabilityResult:
    """One statement, one round trip, on the read replica when one is in use (see
    engine.services.reads). Pickup lists are nearest first (ties by location id)
    and hold every active pickup location within `radius_km`, up to `pickup_limit`,
    including those with nothing available. Unknown SKUs are a BadInput."""
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
        raise BadInput("unknown sku", errors=[{"field": "sku", "message": f"unknown sku {s}"} for s in sorted(unknown)])
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
    seen = set()
    items = []
    for s in skus:
        if s not in seen:
            seen.add(s)
            entry = by_sku[s]
            entry.pickup.sort(key=lambda p: (p.distance_km, p.location_id))
            items.append(entry)
    return AvailabilityResult(items=items)
