"""Checkpoint files: safe reading and writing, and chain inference from a state_dict.

=============================  ==================================================
``load_checkpoint``            a state_dict file → :class:`Checkpoint` (safe loaders only)
``save_checkpoint``            write tensors (+ netgraph metadata) atomically
``checkpoint_from_state_dict`` an in-memory state_dict → :class:`Checkpoint`
``graph_from_checkpoint``      the stored topology, or a chain inferred from shapes
``repair_checkpoint``          audit → repair → write → re-audit, for a file
=============================  ==================================================
"""

from ._checkpoint import (
    Checkpoint,
    PrunableWeight,
    atomic_write,
    checkpoint_from_state_dict,
    effective_tensor,
    load_checkpoint,
    natural_key,
    save_checkpoint,
)
from ._infer import graph_from_checkpoint, infer_chain
from ._repair import CheckpointRepair, repair_checkpoint

__all__ = [
    "Checkpoint",
    "PrunableWeight",
    "atomic_write",
    "checkpoint_from_state_dict",
    "effective_tensor",
    "load_checkpoint",
    "natural_key",
    "save_checkpoint",
    "graph_from_checkpoint",
    "infer_chain",
    "CheckpointRepair",
    "repair_checkpoint",
]
