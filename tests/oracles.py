"""The suite's slow, obviously-correct references: a thin re-export of
:mod:`netgraph.testing` (one implementation, shipped with the library)."""

from netgraph.testing import (
    dense_chain_product,
    gradient_probe,
    influence_probe,
    masked_copy,
    mlp_forward,
    reachability_oracle,
    sinks,
    tap_probe,  # the tap-level probe (netgraph/testing/_probe.py)
    unit_edges,
    unit_graph,
    weight_status_oracle,
)

__all__ = ["dense_chain_product", "gradient_probe", "influence_probe", "masked_copy", "mlp_forward",
           "reachability_oracle", "sinks", "tap_probe", "unit_edges", "unit_graph", "weight_status_oracle"]
