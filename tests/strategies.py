"""The suite's Hypothesis strategies: a thin re-export of :mod:`netgraph.testing` (one
implementation, shipped with the library; see ``docs/testing.md``)."""

from netgraph.testing import (
    CONCAT_OF_DEAD,
    CONSTANT_FED,
    EMPTY_LAYER,
    GRAPH_CORNER_CASES,
    LAYER_KINDS,
    SKIP_AROUND_DEAD,
    WIDTH_ONE,
    Net,
    chain_masks,
    layered_nets,
    masked_conv_nets,
    masked_mlps,
    model_specs,
    net_features,
    pruned_models,
)

__all__ = ["CONCAT_OF_DEAD", "CONSTANT_FED", "EMPTY_LAYER", "GRAPH_CORNER_CASES", "LAYER_KINDS",
           "SKIP_AROUND_DEAD", "WIDTH_ONE", "Net", "chain_masks", "layered_nets", "masked_conv_nets",
           "masked_mlps", "model_specs", "net_features", "pruned_models"]
