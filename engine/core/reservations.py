"""Reservation lifecycle rules: pure decisions over a reservation and the current time."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

import msgspec

from engine.core.access import require_locations
from engine.core.model import Caller, Role
from engine.errors import BadInput, Conflict, NotFound

DEFAULT_TTL_SECONDS = 15 * 60
MAX_TTL_SECONDS = 7 * 24 * 3600


class Status(StrEnum):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class Line(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    location_id: str
    quantity: int


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    reservation_id: UUID
    owner: str
    reference: str | None
    status: Status
    expires_at: datetime
    created_at: datetime
    lines: list[Line]

    def status_at(self, now: datetime) -> Status:
        """An active hold past its expiry is expired, whether or not the sweep has run."""
        if self.status is Status.ACTIVE and self.expires_at <= now:
            return Status.EXPIRED
        return self.status


def validate_lines(lines: list[Line]) -> list[Line]:
    """One line per (sku, location); returned in the global lock order (sku, location_id)."""
    seen: set[tuple[str, str]] = set()
    errors = []
    for i, line in enumerate(lines):
        key = (line.sku, line.location_id)
        if key in seen:
            errors.append({"field": f"lines[{i}]", "message": f"duplicate line for {line.sku} at {line.location_id}"})
        seen.add(key)
    if errors:
        raise BadInput("duplicate reservation lines", errors=errors)
    return sorted(lines, key=lambda line: (line.sku, line.location_id))


def check_ttl(ttl_seconds: int) -> None:
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise BadInput(
            f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}",
            errors=[{"field": "ttl_seconds", "message": f"1..{MAX_TTL_SECONDS}"}],
        )


def expiry(now: datetime, ttl_seconds: int) -> datetime:
    check_ttl(ttl_seconds)
    return now + timedelta(seconds=ttl_seconds)


def require_access(caller: Caller, reservation: Reservation | None, reservation_id: UUID) -> Reservation:
    """Only the key that made a reservation (or an admin) sees or acts on it. Another key
    gets NotFound, so reservation ids cannot be probed."""
    if reservation is None or (caller.role is not Role.ADMIN and reservation.owner != caller.key_id):
        raise NotFound(f"no reservation {reservation_id}")
    if caller.role is Role.POS:
        require_locations(caller, (line.location_id for line in reservation.lines))
    return reservation


def require_active(reservation: Reservation, now: datetime, action: str) -> None:
    status = reservation.status_at(now)
    if status is not Status.ACTIVE:
        raise Conflict(
            f"cannot {action} a reservation that is {status.value}",
            reservation_id=str(reservation.reservation_id),
            reservation_status=status.value,
        )


def release_is_noop(reservation: Reservation, now: datetime) -> bool:
    """Releasing twice, or releasing an expired hold, changes nothing and is not an error.
    Releasing a committed reservation is a Conflict: the goods are sold."""
    status = reservation.status_at(now)
    if status is Status.COMMITTED:
        raise Conflict("cannot release a committed reservation", reservation_id=str(reservation.reservation_id))
    return status in (Status.RELEASED, Status.EXPIRED) and reservation.status is not Status.ACTIVE
