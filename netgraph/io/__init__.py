"""Checkpoint files: safe reading and writing, and chain inference from a state_dict.

=============================  ==================================================
``load_checkpoint``            a state_dict file → :class:`Checkpoint` (safe loaders only)
``load_state_file``            a training state (``train --resume``), read as strictly
``save_checkpoint``            write tensors (+ netgraph metadata) atomically
``checkpoint_from_state_dict`` an in-memory state_dict → :class:`Checkpoint`
``graph_from_checkpoint``      the stored topology, or a chain inferred from shapes
``repair_checkpoint``          audit → repair → write → re-audit, for a file
``read_onnx``, ``audit_onnx``  an ONNX file → torch.fx graph → the traced audit
``prune_onnx``                 zero an ONNX file's dead weights, write it back
``output_path``                the output contract: check a destination file first
``output_dir``                 the same for an output folder
``atomic_write``               write via a temporary, check, rename (nothing partial)
``atomic_dir``                 the same for a folder
``read_sidecar``               netgraph metadata from ``<file>.netgraph.json``
=============================  ==================================================
"""

from ._checkpoint import (
    Checkpoint,
    PrunableWeight,
    atomic_write,
    checkpoint_from_state_dict,
    effective_tensor,
    load_checkpoint,
    load_state_file,
    natural_key,
    save_checkpoint,
)
from ._infer import graph_from_checkpoint, infer_chain
from ._onnx import OnnxModel, audit_onnx, is_onnx, prune_onnx, read_onnx, repair_onnx
from ._repair import CheckpointRepair, repair_checkpoint
from ._write import atomic_dir, output_dir, output_path, read_sidecar, remove_stale_temporaries, sidecar_path

__all__ = [
    "Checkpoint",
    "PrunableWeight",
    "atomic_write",
    "checkpoint_from_state_dict",
    "effective_tensor",
    "load_checkpoint",
    "load_state_file",
    "natural_key",
    "save_checkpoint",
    "graph_from_checkpoint",
    "infer_chain",
    "OnnxModel",
    "audit_onnx",
    "is_onnx",
    "prune_onnx",
    "read_onnx",
    "repair_onnx",
    "CheckpointRepair",
    "repair_checkpoint",
    "output_path",
    "output_dir",
    "atomic_dir",
    "read_sidecar",
    "remove_stale_temporaries",
    "sidecar_path",
]
