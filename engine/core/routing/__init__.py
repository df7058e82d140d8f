"""Per-order fulfillment routing: which locations send which units, at what cost and why.

Pure: plain functions over frozen Structs; today's date is passed in. See
`CostModel` for what a plan costs and `route` for how it is chosen.
"""

from engine.core.routing.baselines import nearest_greedy, ranked_rules
from engine.core.routing.cost import plan_cost
from engine.core.routing.model import (
    Cost,
    CostModel,
    Explanation,
    Fulfillment,
    Line,
    LineAllocation,
    Order,
    Plan,
    Site,
)
from engine.core.routing.prune import prune
from engine.core.routing.route import quote, route

__all__ = [
    "Cost",
    "CostModel",
    "Explanation",
    "Fulfillment",
    "Line",
    "LineAllocation",
    "Order",
    "Plan",
    "Site",
    "nearest_greedy",
    "plan_cost",
    "prune",
    "quote",
    "ranked_rules",
    "route",
]
