"""The torch side of the engine: tracing a model into a :class:`~netgraph.LayeredGraph`,
and repairing / compacting the model itself.  Importing this package imports torch.

=============================  ==================================================
``trace_model``                torch.fx trace → :class:`TracedModel` (graph + weight map)
``prune_model``                zero the dead weights in place (function-preserving)
``reconnect_model``            re-spend the freed budget on effective connections
``compact_model``              remove dead units physically → :class:`CompactResult`
``verify``                     outputs before/after agree (float64)
=============================  ==================================================
"""

from ._repair import CompactResult, compact_model, prune_model, reconnect_model, verify
from ._trace import TracedModel, trace_model

__all__ = ["TracedModel", "trace_model", "prune_model", "reconnect_model", "compact_model", "CompactResult", "verify"]
