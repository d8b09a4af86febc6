"""Repair a checkpoint file without model code: the graph comes from its topology spec or
an inferred chain (:func:`graph_from_checkpoint`); the masks are repaired on the graph
(:mod:`netgraph._repair`) and written back in the input's own format.

* prune-format weights (``X_orig`` + ``X_mask``): only ``X_mask`` changes;
* plain weights: removed weights are set to 0; weights added by ``reconnect`` take the
  value of the score tensor (the dense weights, when that is what the scores are).

The output is written atomically and read back with the strict loader; the input is
never overwritten unless ``force=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .._audit import AuditReport, audit
from ._checkpoint import Checkpoint, atomic_write, checkpoint_from_state_dict, load_checkpoint
from ._infer import graph_from_checkpoint
from .._repair import RepairResult, prune_masks, reconnect_masks
from ..errors import BadCheckpoint, NetgraphError

__all__ = ["repair_checkpoint", "CheckpointRepair"]


@dataclass(frozen=True)
class CheckpointRepair:
    output: str
    mode: str
    result: RepairResult
    before: AuditReport
    after: AuditReport


def _scores_for(ckpt: Checkpoint, names, scores: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    out = {}
    prunable = ckpt.prunable()
    for name in names:
        w = prunable[name]
        if scores is not None and name in scores:
            s = np.asarray(scores[name])
            if s.shape != w.mask.shape:
                raise BadCheckpoint(f"score tensor {name!r} has shape {tuple(s.shape)} but the weight has {tuple(w.mask.shape)}")
            out[name] = s
        elif w.prune_format:
            out[name] = w.values
        else:
            raise NetgraphError(
                f"{ckpt.path}: weight {name!r} stores zeros where it was pruned, so nothing ranks the "
                "connections to re-add; give scores (--scores FILE, a state_dict of tensors by weight name) "
                "or a checkpoint in torch's prune format (weight_orig + weight_mask)"
            )
    return out


def repair_checkpoint(path: str, output: str, mode: str = "prune", *, scores_path: str | None = None,
                      force: bool = False, keep_constant: bool = True) -> CheckpointRepair:
    """Repair the checkpoint at ``path`` into ``output`` (``mode``: ``prune`` or ``reconnect``)."""
    if mode not in ("prune", "reconnect"):
        raise NetgraphError(f"mode {mode!r} needs the model (--model) or is unknown; without it use prune or reconnect")
    if os.path.exists(output) and os.path.samefile(path, output) and not force:
        raise NetgraphError(f"{output}: refusing to overwrite the input; choose another -o or pass --force")
    ckpt = load_checkpoint(path)
    graph = graph_from_checkpoint(ckpt)
    before = audit(graph, source=path)
    prunable = ckpt.prunable()
    masks = {b.name: prunable[b.name].mask for b in graph.weighted_blocks}
    if mode == "prune":
        result = prune_masks(graph, masks, keep_constant=keep_constant)
        scores = None
    else:
        scores = _scores_for(ckpt, list(masks), load_checkpoint(scores_path).tensors if scores_path else None)
        result = reconnect_masks(graph, masks, scores)
    tensors = dict(ckpt.tensors)
    for name, new in result.masks.items():
        w = prunable[name]
        if w.prune_format:
            old = tensors[name + "_mask"]
            tensors[name + "_mask"] = new.astype(old.dtype)
        else:
            vals = np.where(new, w.values, 0).astype(w.values.dtype)
            if scores is not None:
                added = new & ~w.mask
                vals[added] = scores[name][added]
            tensors[name] = vals
    meta = dict(ckpt.meta)
    after = audit(graph_from_checkpoint(checkpoint_from_state_dict(tensors, source=output, meta=meta)), source=output)
    if meta:  # the stored audit and rates describe the input; record what the output is
        meta.update({"audit": after.to_dict(), "repair": mode, "repaired_from": os.path.abspath(path)})
        if "achieved_rate" in meta and after.summary.weights:
            meta["achieved_rate"] = float(after.summary.sparsity)
    new_ckpt = _write_like(ckpt, tensors, meta, output)
    check = audit(graph_from_checkpoint(new_ckpt), source=output)
    if check.to_dict() != after.to_dict():  # the file must say what was computed
        raise NetgraphError(f"{output}: the written checkpoint audits differently from the repaired masks")
    return CheckpointRepair(output, mode, result, before, after)


def _write_like(ckpt: Checkpoint, tensors: dict[str, np.ndarray], meta: dict, output: str) -> Checkpoint:
    """Write ``tensors`` in the same container and format as ``ckpt`` came in."""
    import torch

    def as_stored(key, value):  # keep each tensor's stored dtype (bf16 stays bf16)
        t = torch.from_numpy(np.ascontiguousarray(value))
        dtype = getattr(torch, ckpt.dtypes.get(key, ""), None)
        return t.to(dtype) if isinstance(dtype, torch.dtype) else t

    sd = {k: as_stored(k, v) for k, v in tensors.items()}
    if ckpt.format == "safetensors":
        import json

        from safetensors.torch import save_file

        md = {"netgraph": json.dumps(meta)} if meta else None
        atomic_write(output, lambda tmp: save_file(sd, tmp, metadata=md))
    else:
        root = ckpt.root
        if isinstance(root, dict) and ckpt.state_dict_key is not None:
            obj = dict(root)
            inner = dict(root[ckpt.state_dict_key])
            inner.update(sd)
            obj[ckpt.state_dict_key] = inner
            if meta:
                obj["netgraph"] = meta
        elif isinstance(root, dict):
            obj = dict(root)
            obj.update(sd)
        else:
            obj = {"state_dict": sd, "netgraph": meta} if meta else sd
        atomic_write(output, lambda tmp: torch.save(obj, tmp))
    return load_checkpoint(output)
