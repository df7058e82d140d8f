"""Domain values: frozen msgspec Structs shared by every layer."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Role(StrEnum):
    ADMIN = "admin"
    CHECKOUT = "checkout"
    POS = "pos"
    PLANNER = "planner"


class LocationKind(StrEnum):
    STORE = "store"
    WAREHOUSE = "warehouse"


class MovementKind(StrEnum):
    """Ledger kinds. The first five are booked by callers; the rest by the engine."""

    RECEIPT = "receipt"
    SALE = "sale"
    ADJUSTMENT = "adjustment"
    COUNT = "count"
    RETURN = "return"
    RESERVE = "reserve"
    RELEASE = "release"
    COMMIT = "commit"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"


class Location(msgspec.Struct, frozen=True, kw_only=True):
    location_id: str
    kind: LocationKind
    name: str
    lat: float
    lon: float
    postal_code: str | None = None
    timezone: str | None = None
    ships: bool = True
    pickup: bool = False
    curbside: bool = False
    daily_order_capacity: int | None = None
    pick_cost_per_unit: float = 0.423
    safety_stock: int = 0
    active: bool = True


class Item(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    name: str
    weight_kg: float = 0.0


class Position(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    location_id: str
    on_hand: int
    reserved: int
    safety_stock: int
    in_transit_in: int = 0

    @property
    def available(self) -> int:
        return available(self.on_hand, self.reserved, self.safety_stock)


def available(on_hand: int, reserved: int, safety_stock: int) -> int:
    """What every caller sees as ATP: never negative."""
    return max(0, on_hand - reserved - safety_stock)


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: an API key's id, role and (for POS keys) its store."""

    key_id: str
    role: Role
    location_id: str | None = None
