"""Repair a checkpoint file, and write any repaired state_dict back *like its input*.

Two parts, used by both ``netgraph repair`` paths (with and without ``--model``):

:func:`repair_checkpoint`
    Without model code: the graph comes from the file's stored topology or an inferred
    chain (:func:`graph_from_checkpoint`); the masks are repaired on the graph
    (:mod:`netgraph._repair`).  Prune-format weights (``X_orig`` + ``X_mask``) change only
    their mask; plain weights get 0 where a weight is removed.  Weights added by
    ``reconnect`` are chosen by the scores (``|X_orig|``, or ``scores=``) and take the
    values the caller chose (``new_values``): ``"orig"`` (the prune format's dense
    ``X_orig``, the default), ``"scores"`` (the score tensor's values) or a mapping of
    value tensors by weight name.

:func:`write_like`
    The output contract for checkpoints: whenever ``model.load_state_dict(torch.load(IN))``
    works, it works on the output too.  Same file format (safetensors in → safetensors
    out; an ``-o`` ending in ``.safetensors`` writes safetensors), same container (the
    wrapper dict and its other entries, an ``OrderedDict`` with its ``_metadata``), same
    keys (prefix included), each tensor in its stored dtype.  netgraph's metadata goes
    where loading does not trip on it: the safetensors header (other ``__metadata__``
    entries kept), the ``netgraph`` entry of a wrapper dict, or — for a bare state_dict —
    a sidecar ``OUT.netgraph.json``.  The file is written through
    :func:`netgraph.io.atomic_write` and checked (read back strictly, audited, compared)
    *before* it replaces anything, so a failed check leaves no output.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .._audit import AuditReport, audit
from .._repair import RepairResult, prune_masks, reconnect_masks
from ..errors import BadCheckpoint, NetgraphError
from ._checkpoint import Checkpoint, checkpoint_from_state_dict, load_checkpoint
from ._infer import graph_from_checkpoint
from ._write import atomic_write, output_path, read_sidecar, sidecar_path, sidecar_payload

__all__ = ["repair_checkpoint", "CheckpointRepair", "write_like", "read_checkpoint", "output_format",
           "NEW_VALUES_HELP"]

NEW_VALUES_HELP = ("orig: the prune format's dense X_orig (prune-format weights only); scores: the score "
                   "tensor's values; FILE: a state_dict of value tensors by weight name (e.g. the dense "
                   "weights before pruning)")


@dataclass(frozen=True)
class CheckpointRepair:
    """What a repair did: the file written, the mode, the audits before and after.

    ``removed`` / ``added`` count weights; ``notes`` are one-line remarks for stderr
    (keys mapped, metadata placed in a sidecar, ...); ``extra`` holds the compaction's
    figures and the verification's largest relative difference when there are any.
    """

    output: str
    mode: str
    before: AuditReport
    after: AuditReport
    removed: int
    added: int
    notes: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    result: RepairResult | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"output": self.output, "mode": self.mode, "removed": self.removed, "added": self.added,
                "kept_before": self.before.summary.kept, "kept_after": self.after.summary.kept,
                "before": self.before.to_dict(), "after": self.after.to_dict(), **dict(self.extra)}


def read_checkpoint(path: str) -> tuple[Checkpoint, list[str]]:
    """:func:`load_checkpoint`, with netgraph's metadata from a sidecar ``path.netgraph.json``
    when the file carries none itself (a repaired bare state_dict).  Returns the checkpoint
    and notes (a sidecar that was ignored, and why)."""
    ckpt = load_checkpoint(path)
    notes: list[str] = []
    if not ckpt.meta:
        meta, note = read_sidecar(path)
        if note:
            notes.append(note)
        if meta:
            ckpt = Checkpoint(ckpt.path, ckpt.format, ckpt.tensors, dict(meta), ckpt.root, ckpt.state_dict_key,
                              ckpt.dtypes)
            ckpt.prunable()
    return ckpt, notes


def output_format(ckpt: Checkpoint, output: str) -> str:
    """``"safetensors"`` when the input is safetensors or ``output`` ends in ``.safetensors``."""
    return "safetensors" if ckpt.format == "safetensors" or output.endswith(".safetensors") else "torch"


# -- values of added weights ---------------------------------------------------------------

def _load_values(source: str | None) -> Mapping[str, np.ndarray] | None:
    if source is None or source in ("orig", "scores"):
        return None
    return load_checkpoint(source).tensors


def _scores_for(ckpt: Checkpoint, names, scores: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    out = {}
    prunable = ckpt.prunable()
    for name in names:
        w = prunable[name]
        if scores is not None and name in scores:
            s = np.asarray(scores[name])
            if s.shape != w.mask.shape:
                raise BadCheckpoint(f"score tensor {name!r} has shape {tuple(s.shape)} but the weight has "
                                    f"{tuple(w.mask.shape)}; scores must match their weights")
            out[name] = s
        elif w.prune_format:
            out[name] = w.values
        else:
            raise NetgraphError(
                f"{ckpt.path}: weight {name!r} stores zeros where it was pruned, so nothing ranks the "
                "connections to re-add; give --scores FILE (a state_dict of tensors by weight name, higher "
                "is better) or a checkpoint in torch's prune format (weight_orig + weight_mask)")
    return out


def new_values_for(name: str, *, prune_format: bool, new_values, scores: Mapping[str, np.ndarray] | None,
                   values: Mapping[str, np.ndarray] | None, shape, where: str) -> np.ndarray | None:
    """The values the weights added to ``name`` take, or ``None`` for "keep ``X_orig``".

    Raises
    ------
    NetgraphError
        A plain weight with no choice made, a missing or mis-shaped value tensor.
    """
    choice = new_values or "orig"
    if choice == "orig":
        if prune_format:
            return None
        raise NetgraphError(
            f"{where}: weight {name!r} is stored plain (no {name}_orig), so the weights reconnect adds have no "
            "values of their own; choose them with --new-values scores (the score tensor's values) or "
            "--new-values FILE (a state_dict of value tensors, e.g. the dense weights before pruning)")
    table = scores if choice == "scores" else values
    if table is None or name not in table:
        src = "the scores" if choice == "scores" else repr(choice)
        raise NetgraphError(f"--new-values: {src} has no tensor {name!r}; it must give one per repaired weight")
    v = np.asarray(table[name])
    if tuple(v.shape) != tuple(shape):
        raise NetgraphError(f"--new-values: tensor {name!r} has shape {tuple(v.shape)} but the weight has "
                            f"{tuple(shape)}")
    return v


# -- the checkpoint path -------------------------------------------------------------------

def repair_checkpoint(path: str, output: str, mode: str = "prune", *, scores_path: str | None = None,
                      new_values: str | None = None, force: bool = False,
                      keep_constant: bool = True) -> CheckpointRepair:
    """Repair the checkpoint at ``path`` into ``output`` without model code.

    Parameters
    ----------
    path, output : str
        Input file; output file (checked with :func:`netgraph.io.output_path` first).
    mode : {"prune", "reconnect"}
        ``prune`` removes the dead weights (outputs unchanged, constant weights kept);
        ``reconnect`` also gives their budget to the best unkept weights that are effective.
    scores_path : str, optional
        For ``reconnect``: a state_dict of score tensors by weight name (higher is better,
        ranked across layers).  Default ``|X_orig|`` for prune-format weights.
    new_values : {"orig", "scores"} or str, optional
        The values of added weights: ``orig`` (default; prune format only), ``scores``, or
        a file of value tensors by weight name.
    force : bool
        Replace an existing ``output`` (never ``path`` itself).

    Returns
    -------
    CheckpointRepair

    Raises
    ------
    NetgraphError
        Bad input, a refused output place, or a written file that does not read back as
        computed (nothing is left at ``output`` then).
    """
    if mode not in ("prune", "reconnect"):
        raise NetgraphError(f"--mode {mode!r} needs the model (--model) or is unknown; without it use prune or reconnect")
    extra_inputs = [p for p in (scores_path, new_values) if p and p not in ("orig", "scores")]
    output = output_path(output, force=force, inputs=[path, *extra_inputs])
    ckpt, notes = read_checkpoint(path)
    graph = graph_from_checkpoint(ckpt)
    before = audit(graph, source=path)
    prunable = ckpt.prunable()
    masks = {b.name: prunable[b.name].mask for b in graph.weighted_blocks}
    tensors = dict(ckpt.tensors)
    if mode == "prune":
        result = prune_masks(graph, masks, keep_constant=keep_constant)
        scores = None
    else:
        score_tensors = load_checkpoint(scores_path).tensors if scores_path else None
        scores = _scores_for(ckpt, list(masks), score_tensors)
        values = _load_values(new_values)
        chosen = {name: new_values_for(name, prune_format=prunable[name].prune_format, new_values=new_values,
                                       scores=score_tensors, values=values, shape=masks[name].shape, where=path)
                  for name in masks}
        result = reconnect_masks(graph, masks, scores)
    for name, new in result.masks.items():
        w = prunable[name]
        added = new & ~w.mask
        if w.prune_format:
            tensors[name + "_mask"] = new.astype(tensors[name + "_mask"].dtype)
            if scores is not None and chosen[name] is not None and added.any():
                orig = np.array(tensors[name + "_orig"])
                orig[added] = chosen[name][added]
                tensors[name + "_orig"] = orig
        else:
            vals = np.where(new, w.values, 0).astype(w.values.dtype)
            if scores is not None and added.any():
                vals[added] = chosen[name][added]
            tensors[name] = vals
    meta = dict(ckpt.meta)
    # audited as the file it becomes: inference reads the format (a safetensors file's keys
    # are sorted, so a BatchNorm's place is not known from the order)
    as_written = checkpoint_from_state_dict(tensors, source=output, meta=meta)
    as_written = dataclasses.replace(as_written, format=output_format(ckpt, output), dtypes=dict(ckpt.dtypes))
    after = audit(graph_from_checkpoint(as_written), source=output)
    if meta:  # the stored audit and rates describe the input; record what the output is
        meta.update({"audit": after.to_dict(), "repair": mode, "repaired_from": os.path.abspath(path)})
        if "achieved_rate" in meta and after.summary.weights:
            meta["achieved_rate"] = float(after.summary.sparsity)

    def same_audit(written: Checkpoint) -> None:  # the file must say what was computed
        check = audit(graph_from_checkpoint(written), source=output)
        if check.to_dict() != after.to_dict():
            raise NetgraphError(f"{output}: the checkpoint as written audits differently from the repaired masks "
                                "(nothing was written)")

    notes += write_like(ckpt, tensors, meta, output, check=same_audit)
    if result.added < result.removed and mode == "reconnect":
        notes.append(f"warning: only {result.added:,} unkept weights join an accessible unit to a coaccessible "
                     f"one; {result.removed - result.added:,} of the budget could not be re-spent")
    if mode == "reconnect" and result.added:
        notes.append(f"the {result.added:,} added weights take their values from "
                     f"{_describe_values(new_values, any(w.prune_format for w in prunable.values()))}")
    return CheckpointRepair(output, mode, before, after, result.removed, result.added, tuple(notes), {}, result)


def _describe_values(new_values, prune_format: bool) -> str:
    if new_values in (None, "orig"):
        return "X_orig (the dense weights the prune format keeps)"
    if new_values == "scores":
        return "the score tensors (--new-values scores)"
    return f"{new_values} (--new-values)"


# -- writing like the input ----------------------------------------------------------------

def _safetensors_metadata(path: str) -> dict[str, str]:
    """The input's own ``__metadata__`` (str → str), read from its already validated header."""
    from ..errors import NetgraphError
    from ._safetensors import read_header

    try:  # the strict reader's own header check (a sharded input's path is its index JSON: no header)
        with open(path, "rb") as fh:
            md = read_header(fh, os.fstat(fh.fileno()).st_size, path, budget=False).metadata
    except (OSError, NetgraphError):
        return {}
    return {str(k): v for k, v in md.items() if isinstance(v, str) and k != "netgraph"}


def _torch_tensor(value, dtype_name: str | None):
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    else:
        t = torch.from_numpy(np.ascontiguousarray(value))
    dtype = getattr(torch, dtype_name, None) if dtype_name else None
    return t.to(dtype) if isinstance(dtype, torch.dtype) and t.dtype != dtype else t


def _with_tensors(container, tensors: Mapping[str, Any]):
    """A shallow copy of ``container`` (dict, OrderedDict with ``_metadata``, ...) whose
    tensors are replaced by ``tensors``, in the container's key order; new keys last."""
    new = copy.copy(container)  # keeps the type and instance attributes (_metadata)
    for k in list(new.keys()):
        if k in tensors:
            new[k] = tensors[k]
    for k, v in tensors.items():
        if k not in new:
            new[k] = v
    return new


def write_like(ckpt: Checkpoint, tensors: Mapping[str, Any], meta: Mapping[str, Any] | None, output: str, *,
               check: Callable[[Checkpoint], None] | None = None, key_prefix: str = "") -> list[str]:
    """Write ``tensors`` (the state_dict's tensors by key, without ``key_prefix``) to
    ``output`` in the same format and container as ``ckpt`` came in.

    Parameters
    ----------
    ckpt : Checkpoint
        The input as read (its root object, state_dict key, format, stored dtypes).
    tensors : mapping of key → numpy array or torch tensor
        The new tensors; keys of the input not in ``tensors`` keep their values.
    meta : mapping, optional
        netgraph's metadata for the output (stored topology, audit, ...).
    check : callable, optional
        ``check(written)`` gets the written temporary read back strictly (with ``meta``)
        and raises to cancel the write.
    key_prefix : str
        Put back in front of every key (the prefix the model's keys were matched without).

    Returns
    -------
    list of str
        Notes for the user (where the metadata went, a container that could not be kept).
    """
    import torch

    notes: list[str] = []
    fmt = output_format(ckpt, output)
    stored = {key_prefix + k: v for k, v in tensors.items()}
    dtypes = dict(ckpt.dtypes)
    sd = {k: _torch_tensor(v, dtypes.get(k)) for k, v in stored.items()}
    meta = dict(meta or {})
    side = sidecar_path(output)
    side_text: list[str] = []

    def read_back(tmp: str) -> Checkpoint:
        written = load_checkpoint(tmp)
        if meta and not written.meta:
            written = Checkpoint(output, written.format, written.tensors, meta, written.root,
                                 written.state_dict_key, written.dtypes)
        if check is not None:
            check(written)
        return written

    if fmt == "safetensors":
        from safetensors.torch import save_file

        full = {k: _torch_tensor(v, dtypes.get(k)) for k, v in ckpt.tensors.items()}
        full.update(sd)
        full = {k: v.contiguous().clone() if not v.is_contiguous() else v for k, v in full.items()}
        if not output.endswith(".safetensors"):
            notes.append(f"{output}: written as safetensors, the input's format (whatever the extension says)")
        md = _safetensors_metadata(ckpt.path) if ckpt.format == "safetensors" else {}
        if meta:
            md["netgraph"] = json.dumps(meta)
        if ckpt.format != "safetensors":
            if ckpt.state_dict_key is not None or _extra_entries(ckpt):
                notes.append(f"{output}: safetensors holds tensors only; the checkpoint's other entries "
                             "were not written")
        atomic_write(output, lambda tmp: save_file(full, tmp, metadata=md or None), check=read_back)
        _remove_stale_sidecar(side)
        return notes

    root = ckpt.root
    if ckpt.format != "torch" or root is None:
        obj = {k: _torch_tensor(v, dtypes.get(k)) for k, v in ckpt.tensors.items()}
        obj.update(sd)
        put_meta_in_sidecar = bool(meta)
    elif ckpt.state_dict_key is not None:
        obj = copy.copy(root)
        obj[ckpt.state_dict_key] = _with_tensors(root[ckpt.state_dict_key], sd)
        if meta:
            obj["netgraph"] = meta
        put_meta_in_sidecar = False
    else:
        obj = _with_tensors(root, sd)
        if "netgraph" in obj and isinstance(obj["netgraph"], Mapping):
            obj["netgraph"] = meta  # the input carried its metadata in the same dict
            put_meta_in_sidecar = False
        else:
            put_meta_in_sidecar = bool(meta)

    def checked(tmp: str) -> None:
        read_back(tmp)
        if put_meta_in_sidecar:
            text = sidecar_payload(tmp, meta)
            atomic_write(side, lambda t: _write_text(t, text))
            side_text.append(side)

    atomic_write(output, lambda tmp: torch.save(obj, tmp), check=checked)
    if put_meta_in_sidecar:
        notes.append(f"netgraph's metadata (stored topology, audit) is in {side}, so that "
                     f"model.load_state_dict(torch.load({os.path.basename(output)!r})) works")
    else:
        _remove_stale_sidecar(side)
    return notes


def _extra_entries(ckpt: Checkpoint) -> bool:
    root = ckpt.root
    if not isinstance(root, Mapping):
        return False
    import torch

    return any(not isinstance(v, torch.Tensor) for k, v in root.items() if k != "netgraph")


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _remove_stale_sidecar(side: str) -> None:
    """A sidecar beside an output that no longer needs one describes an older file."""
    try:
        if os.path.isfile(side) and not os.path.islink(side):
            os.unlink(side)
    except OSError:
        pass
