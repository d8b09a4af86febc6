"""The torch side of the engine: tracing a model into a :class:`~netgraph.LayeredGraph`,
and repairing / compacting the model itself.  Importing this package imports torch.

=============================  ==================================================
``trace_model``                torch.fx trace → :class:`TracedModel` (graph + weight map);
                               ``TracedModel.audit()`` is exact per kernel tap
``TapAnalysis``                the tap-level pass (``TracedModel.taps()``)
``prune_model``                zero the dead weights in place (function-preserving)
``reconnect_model``            re-spend the freed budget on effective connections
``compact_model``              remove dead units physically → :class:`CompactResult`
``verify``                     outputs before/after agree (float64)
=============================  ==================================================

Files: ``_trace.py`` (entry point, :class:`TracedModel`) · ``_ops.py`` (the table of op
kinds) · ``_builder.py`` (the channel-level graph, one handler per kind) · ``_shapes.py``
(shape propagation) · ``_taps.py`` (positions and taps: accessible / constant /
coaccessible maps, per-weight states) · ``_tapconv.py`` (boolean convolutions over the
distinct channel patterns, or dense / sparse over all channels) · ``_repair.py`` (prune, reconnect, compact).
"""

from ._repair import CompactResult, compact_model, prune_model, reconnect_model, verify
from ._taps import TapAnalysis
from ._trace import TracedModel, trace_model

__all__ = ["TracedModel", "trace_model", "TapAnalysis", "prune_model", "reconnect_model", "compact_model", "CompactResult", "verify"]
