"""The suite's slow, obviously-correct references: a thin re-export of
:mod:`netgraph.testing` (one implementation, shipped with the library)."""

from netgraph.testing import (  # noqa: F401
    dense_chain_product,
    gradient_probe,
    influence_probe,
    mlp_forward,
    reachability_oracle,
    sinks,
    unit_edges,
    unit_graph,
    weight_status_oracle,
)
from netgraph.testing._probe import tap_probe  # noqa: F401,E402  (the tap-level probe)
