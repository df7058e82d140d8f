"""Days of cover: what a position wants, what it can give, what it will lack."""

from __future__ import annotations

import math

from engine.core.rebalance.model import Need, Policy


def target(need: Need, policy: Policy) -> int:
    """Units that cover `policy.target_days_cover` days of demand: ceil(demand_per_day x
    days), never below 0. A product less than 1e-6 above a whole number counts as that
    number, so float noise ((62 / 30) x 30 = 62.00000000000001) does not add a unit."""
    return _target(need.demand_per_day, policy.target_days_cover)


def surplus(need: Need, policy: Policy) -> int:
    """Units that may leave: what is on hand beyond the target once in-transit stock
    arrives, never more than is available now (in-transit units cannot be sent on)."""
    return _surplus(need, target(need, policy))


def shortfall(need: Need, policy: Policy) -> int:
    """Projected stockout units over the horizon: the target less available (negative
    counts as 0) and in-transit stock."""
    return _shortfall(need, target(need, policy))


def _target(demand_per_day: float, days: float) -> int:
    return max(0, math.ceil(demand_per_day * days - 1e-6))


def _surplus(need: Need, goal: int) -> int:
    return max(0, min(need.available, need.available + need.in_transit_in - goal))


def _shortfall(need: Need, goal: int) -> int:
    return max(0, goal - max(0, need.available) - need.in_transit_in)
