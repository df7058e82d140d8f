"""Request bodies: strict (unknown fields rejected), bounded, checked across fields.

A check across fields raises ValueError("<field>: <message>"); api/errors.py reports it
under that field, so the caller learns which field to change.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from engine.core.feed import KINDS
from engine.core.model import LocationKind, Role

MAX_MOVEMENTS = 1_000
MAX_BULK_ITEMS = 10_000
MAX_AVAILABILITY_SKUS = 100
MAX_QUANTITY = 1_000_000
MAX_PAGE = 1_000  # rows in one page of a list (locations, stock, keys, proposals)
MAX_RUNS_PAGE = 100

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Id = Annotated[str, Meta(pattern=ID_PATTERN, description="1-64 of A-Z a-z 0-9 . _ -")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Lat = Annotated[float, Meta(ge=-90, le=90)]
Lon = Annotated[float, Meta(ge=-180, le=180)]
Reference = Annotated[str, Meta(min_length=1, max_length=200)]


class LocationIn(Struct, forbid_unknown_fields=True, kw_only=True):
    kind: LocationKind
    name: Name
    lat: Lat
    lon: Lon
    postal_code: Annotated[str, Meta(max_length=20)] | None = None
    timezone: Annotated[str, Meta(max_length=64)] | None = None
    ships: bool = True
    pickup: bool = False
    curbside: bool = False
    daily_order_capacity: Annotated[int, Meta(ge=0, le=MAX_QUANTITY)] | None = None
    pick_cost_per_unit: Annotated[float, Meta(ge=0, le=10_000)] = 0.423
    safety_stock: Annotated[int, Meta(ge=0, le=MAX_QUANTITY)] = 0
    active: bool = True

    def __post_init__(self) -> None:
        if self.curbside and not self.pickup:
            raise ValueError("curbside: curbside requires pickup")


class ItemIn(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    weight_kg: Annotated[float, Meta(ge=0, le=100_000)] = 0.0


class BulkItem(ItemIn, forbid_unknown_fields=True, kw_only=True):
    sku: Id


class ItemsBulkIn(Struct, forbid_unknown_fields=True, kw_only=True):
    items: Annotated[list[BulkItem], Meta(min_length=1, max_length=MAX_BULK_ITEMS)]

    def __post_init__(self) -> None:
        duplicates = sorted(sku for sku, n in Counter(i.sku for i in self.items).items() if n > 1)
        if duplicates:
            raise ValueError(f"items: duplicate sku in items: {', '.join(duplicates[:10])}")


class MovementIn(Struct, forbid_unknown_fields=True, kw_only=True):
    sku: Id
    location_id: Id
    kind: Literal["receipt", "sale", "adjustment", "count", "return"]
    quantity: Annotated[int, Meta(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]


class MovementsIn(Struct, forbid_unknown_fields=True, kw_only=True):
    movements: Annotated[list[MovementIn], Meta(min_length=1, max_length=MAX_MOVEMENTS)]
    reference: Reference | None = None


AvailabilitySkus = Annotated[list[Id], Meta(min_length=1, max_length=MAX_AVAILABILITY_SKUS)]
RadiusKm = Annotated[float, Meta(gt=0, le=2_000)]
PickupLimit = Annotated[int, Meta(ge=1, le=100)]


class _AvailabilityWhere(Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the shopper is, and how far and how many pickup stores to list."""

    lat: Lat | None = None
    lon: Lon | None = None
    radius_km: RadiusKm = 50.0
    pickup_limit: PickupLimit = 20

    def __post_init__(self) -> None:
        if (self.lat is None) != (self.lon is None):
            missing = "lon" if self.lon is None else "lat"
            raise ValueError(f"{missing}: give both lat and lon, or neither")


class AvailabilityIn(_AvailabilityWhere, kw_only=True):
    skus: AvailabilitySkus


class AvailabilityQuery(_AvailabilityWhere, kw_only=True):
    """The query of GET /v1/availability: AvailabilityIn, with `sku` given once per SKU."""

    sku: Annotated[AvailabilitySkus, Meta(description="repeat for each SKU")]


class ApiKeyIn(Struct, forbid_unknown_fields=True, kw_only=True):
    role: Role
    location_id: Id | None = None
    name: Name | None = None


MAX_RESERVATION_LINES = 100
TtlSeconds = Annotated[int, Meta(ge=1, le=7 * 24 * 3600, description="seconds until the hold expires (max 7 days)")]


class ReservationLineIn(Struct, forbid_unknown_fields=True, kw_only=True):
    sku: Id
    location_id: Id
    quantity: Annotated[int, Meta(gt=0, le=MAX_QUANTITY)]


class ReservationIn(Struct, forbid_unknown_fields=True, kw_only=True):
    lines: Annotated[list[ReservationLineIn], Meta(min_length=1, max_length=MAX_RESERVATION_LINES)]
    ttl_seconds: TtlSeconds = 900
    reference: Reference | None = None


class ExtendIn(Struct, forbid_unknown_fields=True, kw_only=True):
    ttl_seconds: TtlSeconds


MAX_ORDER_LINES = 100


class DestinationIn(Struct, forbid_unknown_fields=True, kw_only=True):
    lat: Lat
    lon: Lon
    postal_code: Annotated[str, Meta(max_length=20)] | None = None


class OrderLineIn(Struct, forbid_unknown_fields=True, kw_only=True):
    line_id: Annotated[str, Meta(min_length=1, max_length=64)]
    sku: Id
    quantity: Annotated[int, Meta(gt=0, le=MAX_QUANTITY)]


class OrderIn(Struct, forbid_unknown_fields=True, kw_only=True):
    order_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")]
    destination: DestinationIn
    lines: Annotated[list[OrderLineIn], Meta(min_length=1, max_length=MAX_ORDER_LINES)]
    channel: Annotated[str, Meta(max_length=32)] | None = None
    method: Literal["ship", "pickup", "curbside"] = "ship"
    pickup_location_id: Id | None = None
    allow_split: bool = True
    allow_partial: bool = False
    promise_by: date | None = None
    defer: (
        Annotated[bool, Meta(description="true: queue for the next routing run; null: the deployment's rule")] | None
    ) = None

    def __post_init__(self) -> None:
        if self.method == "ship" and self.pickup_location_id is not None:
            raise ValueError("pickup_location_id: only for pickup or curbside")
        if self.method != "ship" and self.pickup_location_id is None:
            raise ValueError(f"pickup_location_id: required for {self.method}")
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("lines: duplicate line_id")


class RoutingRunIn(Struct, forbid_unknown_fields=True, kw_only=True):
    time_limit_s: Annotated[
        float, Meta(gt=0, le=600, description="budget for the whole solve (framing and search)")
    ] = 30.0
    bound_time_limit_s: Annotated[float, Meta(ge=0, le=600, description="budget for the LP lower bound")] = 30.0
    apply: Annotated[bool, Meta(description="false: plan and report, change nothing")] = True


MAX_DEMAND_ROWS = 10_000


class DemandRowIn(Struct, forbid_unknown_fields=True, kw_only=True):
    sku: Id
    location_id: Id
    units_per_day: Annotated[float, Meta(ge=0, le=MAX_QUANTITY)]


class DemandIn(Struct, forbid_unknown_fields=True, kw_only=True):
    demand: Annotated[list[DemandRowIn], Meta(min_length=1, max_length=MAX_DEMAND_ROWS)]

    def __post_init__(self) -> None:
        seen = Counter((r.sku, r.location_id) for r in self.demand)
        twice = sorted(k for k, n in seen.items() if n > 1)
        if twice:
            raise ValueError(f"demand: {twice[0][0]} at {twice[0][1]} listed more than once")


class LaneIn(Struct, forbid_unknown_fields=True, kw_only=True):
    from_location_id: Id
    to_location_id: Id
    unit_cost: Annotated[float, Meta(ge=0, le=1e6)]
    fixed_cost: Annotated[float, Meta(ge=0, le=1e6)] = 0.0


class LaneCostsIn(Struct, forbid_unknown_fields=True, kw_only=True):
    unit_cost: Annotated[float, Meta(ge=0, le=1e6)] = 0.10
    km_cost: Annotated[float, Meta(ge=0, le=1e3)] = 0.0005
    fixed_cost: Annotated[float, Meta(ge=0, le=1e6, description="per transfer; > 0 solves a MIP per SKU")] = 0.0
    overrides: Annotated[list[LaneIn], Meta(max_length=MAX_DEMAND_ROWS)] = []


class RebalancingRunIn(Struct, forbid_unknown_fields=True, kw_only=True):
    target_days_cover: Annotated[float, Meta(gt=0, le=365)] = 14.0
    stockout_cost_per_unit: Annotated[float, Meta(ge=0, le=1e6)] = 10.0
    demand: Annotated[
        Literal["given", "history", "auto"],
        Meta(description="given: PUT /v1/demand; history: sales and commits; auto: given where set, else history"),
    ] = "auto"
    history_days: Annotated[int, Meta(ge=1, le=365)] = 28
    lanes: LaneCostsIn = msgspec.field(default_factory=LaneCostsIn)
    max_sources_per_destination: Annotated[int, Meta(ge=1, le=1000)] = 8
    time_limit_s: Annotated[float, Meta(gt=0, le=60, description="per-SKU MIP limit (fixed lane costs)")] = 1.0
    skus: Annotated[list[Id], Meta(min_length=1, max_length=MAX_DEMAND_ROWS)] | None = None


MAX_FEED_FILTER = 100
EventKind = Literal["stock", "reservation", "order", "fulfillment", "discrepancy", "reload"]


class EventFilterIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """The filters of GET /v1/events (query parameters, each repeatable)."""

    kind: Annotated[list[EventKind], Meta(max_length=len(KINDS))] | None = None
    sku: Annotated[list[Id], Meta(max_length=MAX_FEED_FILTER)] | None = None
    location_id: Annotated[list[Id], Meta(max_length=MAX_FEED_FILTER)] | None = None
