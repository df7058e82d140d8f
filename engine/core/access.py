"""Who may do what: role checks and the POS key's own-store rule."""

from __future__ import annotations

from collections.abc import Iterable

from engine.core.model import Caller, Role
from engine.errors import Forbidden


def require_role(caller: Caller, *roles: Role) -> None:
    """Admin may do everything; otherwise the caller's role must be listed."""
    if caller.role is Role.ADMIN or caller.role in roles:
        return
    allowed = ", ".join(r.value for r in (Role.ADMIN, *roles))
    raise Forbidden(f"a {caller.role.value} key cannot do this (allowed: {allowed})")


def require_locations(caller: Caller, location_ids: Iterable[str]) -> None:
    """A POS key acts only at its own store; other roles are not bound to a location."""
    if caller.role is not Role.POS:
        return
    others = sorted({loc for loc in location_ids if loc != caller.location_id})
    if others:
        raise Forbidden(
            f"this POS key belongs to {caller.location_id} and cannot act at {', '.join(others)}",
            location_ids=others,
        )
