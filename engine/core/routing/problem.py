"""The decision every strategy (exact solve, baselines) makes: which site sends how many
units of each line. Costs are not part of it; strategies that need them ask `Pricing`."""

from __future__ import annotations

import msgspec

from engine.core.routing.model import Line, Site

# location_id -> {index into Problem.lines: units}
Allocation = dict[str, dict[int, int]]


class Source(msgspec.Struct, frozen=True):
    """A site as it would serve this order: by `method`, over `km` (0 for pickup at it)."""

    site: Site
    method: str
    km: float


class Problem(msgspec.Struct, frozen=True):
    """Lines to serve from `sources` (nearest first, ties by location_id)."""

    lines: list[Line]
    sources: list[Source]
    allow_split: bool
    allow_partial: bool


class Ledger:
    """Stock left per (location, sku) while a strategy allocates."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, str], int] = {}

    def left(self, site: Site, sku: str) -> int:
        return site.stock.get(sku, 0) - self.used.get((site.location_id, sku), 0)

    def take(self, site: Site, sku: str, units: int) -> None:
        key = (site.location_id, sku)
        self.used[key] = self.used.get(key, 0) + units


def needs(lines: list[Line]) -> dict[str, int]:
    """Units needed per SKU (lines of the same SKU share a site's stock)."""
    out: dict[str, int] = {}
    for line in lines:
        out[line.sku] = out.get(line.sku, 0) + line.quantity
    return out


def fills_all(site: Site, need: dict[str, int]) -> bool:
    return all(site.stock.get(sku, 0) >= n for sku, n in need.items())


def stocks_any(site: Site, lines: list[Line]) -> bool:
    return any(site.stock.get(line.sku, 0) > 0 for line in lines)
