"""Stock rebalancing: transfer proposals that move surplus to where stockouts loom.

Pure: plain functions over frozen Structs, no IO and no clock. Per SKU (SKUs are
independent) a location with more than `Policy.target_days_cover` days of demand can give
its `surplus`, one with less will lack its `shortfall`; `plan_sku` picks transfers that
minimise transfer cost - `Policy.stockout_cost_per_unit` x units moved, over the given
lanes only, each short location considering only its `Policy.max_sources_per_destination`
cheapest lanes from surplus locations. Per-unit lanes: exact min-cost flow; fixed lane
costs: CP-SAT. `rebalance` plans a whole network SKU by SKU.
"""

from engine.core.rebalance.cover import shortfall, surplus, target
from engine.core.rebalance.lanes import distance_lanes
from engine.core.rebalance.model import Basis, Lane, Need, Policy, Proposal, SkuPlan, explain
from engine.core.rebalance.plan import plan_sku, rebalance

__all__ = [
    "Basis",
    "Lane",
    "Need",
    "Policy",
    "Proposal",
    "SkuPlan",
    "distance_lanes",
    "explain",
    "plan_sku",
    "rebalance",
    "shortfall",
    "surplus",
    "target",
]
