"""netgraph — the truth about the topology of pruned (masked) neural networks.

A pruned network is a layered DAG::

    input(784) --fc1.weight--> fc1(300) --fc2.weight--> fc2(100) --fc3.weight--> fc3(10)

*Groups* are sets of units (neurons, channels, input features); *blocks* are boolean
sparse matrices ``C`` of shape ``(width_src, width_dst)`` joining two groups, either from
a prunable weight's mask or from the architecture (identity, flatten expansion,
all-to-all).  A kept connection ``(i, j)`` is

* **accessible** when some input reaches ``i``,
* **coaccessible** when ``j`` reaches some output,
* **effective** when both, **dead** otherwise, and
* **constant** when dead, fed by a bias / BN shift, and coaccessible.

Public surface
--------------
=============================  ==================================================
``GraphBuilder``, ``chain``    build a :class:`LayeredGraph` (validated on build)
``reachability``               accessible / coaccessible / constant unit vectors
``unit_states``                per unit: unused (0) / dead (1) / effective (2)
``products``                   the papers' S_a, S_c (boolean or path counts)
``audit``                      a frozen :class:`AuditReport` (``.to_dict()``)
``load_checkpoint``            a state_dict file → :class:`Checkpoint` (safe loaders only)
``graph_from_checkpoint``      stored topology, else an order inferred from names and shapes (skips over-approximated)
``prune_masks``                clear dead weights (function-preserving)
``reconnect_masks``            re-spend the freed budget on effective connections
``graph_to_spec``              a graph's topology as plain data (stored in checkpoints)
``to_networkx``                the unit-level graph, for your own analysis
``load_callable``              ``pkg.module:name`` / ``file.py:name`` → the user's callable
=============================  ==================================================

The core imports only numpy and scipy; torch is imported lazily by the checkpoint
reader and the model tracer, networkx only by :func:`to_networkx`.
"""

from ._audit import AuditReport, AuditSummary, LayerAudit, audit
from ._callables import load_callable
from .io._checkpoint import (
    Checkpoint,
    PrunableWeight,
    atomic_write,
    checkpoint_from_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from ._export import to_networkx
from .io._infer import graph_from_checkpoint, infer_chain
from ._repair import RepairResult, prune_masks, reconnect_masks
from ._spec import graph_from_spec, graph_to_spec
from ._graph import Block, GraphBuilder, Group, LayeredGraph, chain, conv_group_index, pair_selector, weight_pairs
from ._reach import DEAD as UNIT_DEAD
from ._reach import EFFECTIVE as UNIT_EFFECTIVE
from ._reach import UNUSED as UNIT_UNUSED
from ._reach import Product, Reachability, WeightStates, products, reachability, unit_states
from .errors import (
    BadCheckpoint,
    ChainNotInferable,
    HasACycle,
    InvalidGraph,
    NetgraphError,
    TraceFailed,
    UnsafeCheckpoint,
    VerificationFailed,
)

__version__ = "0.2.0"

__all__ = [
    "load_callable",
    "Checkpoint",
    "PrunableWeight",
    "atomic_write",
    "checkpoint_from_state_dict",
    "load_checkpoint",
    "save_checkpoint",
    "to_networkx",
    "graph_from_checkpoint",
    "infer_chain",
    "RepairResult",
    "prune_masks",
    "reconnect_masks",
    "graph_from_spec",
    "graph_to_spec",
    "AuditReport",
    "AuditSummary",
    "LayerAudit",
    "audit",
    "Block",
    "GraphBuilder",
    "Group",
    "LayeredGraph",
    "chain",
    "pair_selector",
    "conv_group_index",
    "weight_pairs",
    "Product",
    "Reachability",
    "WeightStates",
    "products",
    "reachability",
    "unit_states",
    "UNIT_UNUSED",
    "UNIT_DEAD",
    "UNIT_EFFECTIVE",
    "BadCheckpoint",
    "ChainNotInferable",
    "HasACycle",
    "InvalidGraph",
    "NetgraphError",
    "TraceFailed",
    "UnsafeCheckpoint",
    "VerificationFailed",
    # torch-based, imported on first use (see __getattr__ below)
    "TracedModel",
    "trace_model",
    "prune_model",
    "reconnect_model",
    "compact_model",
    "CompactResult",
    "verify",
]

# The model tracer and model repair need torch; they are imported on first access so that
# ``import netgraph`` stays torch-free.
_LAZY = {
    "TracedModel": ".torch",
    "trace_model": ".torch",
    "prune_model": ".torch",
    "reconnect_model": ".torch",
    "compact_model": ".torch",
    "CompactResult": ".torch",
    "verify": ".torch",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'netgraph' has no attribute {name!r}")
