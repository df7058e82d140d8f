"""Rules for booking caller movements (receipt, sale, adjustment, count, return).

`plan_movements` is pure: given the current (locked) positions it returns the ledger
deltas to write, or raises. The store applies them in the same transaction.
"""

from __future__ import annotations

import msgspec

from engine.core.model import MovementKind
from engine.errors import BadInput, Conflict

CALLER_KINDS = frozenset(
    {MovementKind.RECEIPT, MovementKind.SALE, MovementKind.ADJUSTMENT, MovementKind.COUNT, MovementKind.RETURN}
)


class MovementLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    location_id: str
    kind: MovementKind
    quantity: int


class Current(msgspec.Struct, frozen=True, kw_only=True):
    on_hand: int
    reserved: int


class Delta(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    location_id: str
    kind: MovementKind
    delta_on_hand: int
    new_on_hand: int
    reserved: int

    @property
    def discrepancy(self) -> bool:
        """On hand fell below what is promised: a sale or count showed stock was missing."""
        return self.delta_on_hand < 0 and self.new_on_hand < self.reserved


def validate_lines(lines: list[MovementLine]) -> None:
    """Quantities by kind, and one line per (sku, location): raise BadInput otherwise."""
    errors = []
    seen: set[tuple[str, str]] = set()
    for i, line in enumerate(lines):
        key = (line.sku, line.location_id)
        if key in seen:
            errors.append(
                {"field": f"movements[{i}]", "message": f"duplicate line for {line.sku} at {line.location_id}"}
            )
        seen.add(key)
        if line.kind not in CALLER_KINDS:
            errors.append({"field": f"movements[{i}].kind", "message": f"{line.kind.value} is booked by the engine"})
        elif line.kind == MovementKind.COUNT:
            if line.quantity < 0:
                errors.append({"field": f"movements[{i}].quantity", "message": "a count must be >= 0"})
        elif line.kind == MovementKind.ADJUSTMENT:
            if line.quantity == 0:
                errors.append({"field": f"movements[{i}].quantity", "message": "an adjustment must be non-zero"})
        elif line.quantity <= 0:
            errors.append({"field": f"movements[{i}].quantity", "message": f"a {line.kind.value} quantity must be > 0"})
    if errors:
        raise BadInput("invalid stock movements", errors=errors)


def plan_movements(lines: list[MovementLine], current: dict[tuple[str, str], Current]) -> list[Delta]:
    """Deltas for each line against `current` (every line's position must be present).

    A sale or return always books; a sale may take on_hand below reserved (or below zero),
    which the caller reports as a discrepancy. An adjustment may not take on_hand below
    zero (that is a correction, and a negative count of goods is never a correct one).
    A count books the difference to the counted quantity.
    """
    validate_lines(lines)
    deltas = []
    for line in lines:
        cur = current[(line.sku, line.location_id)]
        match line.kind:
            case MovementKind.RECEIPT | MovementKind.RETURN:
                d = line.quantity
            case MovementKind.SALE:
                d = -line.quantity
            case MovementKind.ADJUSTMENT:
                d = line.quantity
                if cur.on_hand + d < 0:
                    raise Conflict(
                        f"adjustment of {d} would take on_hand of {line.sku} at {line.location_id} "
                        f"below zero (on_hand {cur.on_hand})",
                        sku=line.sku,
                        location_id=line.location_id,
                        on_hand=cur.on_hand,
                    )
            case MovementKind.COUNT:
                d = line.quantity - cur.on_hand
            case _:  # pragma: no cover - validate_lines rejects engine kinds
                raise BadInput(f"{line.kind.value} is booked by the engine")
        deltas.append(
            Delta(
                sku=line.sku,
                location_id=line.location_id,
                kind=line.kind,
                delta_on_hand=d,
                new_on_hand=cur.on_hand + d,
                reserved=cur.reserved,
            )
        )
    return deltas
