"""Other tools' pruned-model layouts, read into one :class:`~netgraph.io.Checkpoint`.

=====================  ==========================================================================
layout                 how it is recognised and read
=====================  ==========================================================================
sharded safetensors    ``*.index.json`` (Hugging Face): ``{"metadata": {"total_size": N},
                       "weight_map": {tensor: shard file}}``; each shard is read on its own by
                       the strict safetensors reader and must hold exactly the tensors the map
                       gives it; shard names are plain file names in the index's folder.
open_lth               ``model_ep<E>_it<I>.pth`` (the model's state_dict) with ``mask.pth``
                       beside it (``{param name: 0/1 int tensor}``, written by ``Mask.save``):
                       each masked weight is read in torch's prune format (``X_orig`` = the
                       stored weight, ``X_mask`` = the mask).
NNI mask dict          a file holding ``{module name: {"weight": mask, "bias": mask}}`` (what
                       NNI's pruners return from ``compress()`` and ``export_model`` saves as
                       the mask file): read as prune-format masks (values = the mask), and
                       with a model state_dict beside it when given as ``model_path``.
=====================  ==========================================================================

Every file is read with the strict readers (:mod:`._pt`, :mod:`._safetensors`); whatever
does not match the layout it claims is refused in one line.
"""

from __future__ import annotations

import json
import os
import re
from typing import Mapping

import numpy as np

from ..errors import BadCheckpoint, UnsafeCheckpoint, show
from ._limits import MAX_HEADER_BYTES, check_memory

__all__ = ["detect", "read_index", "check_shard", "check_total_size", "load_sharded", "open_lth_mask_path", "merge_masks", "nni_masks", "load_with_masks"]

_OPEN_LTH_MODEL = re.compile(r"model_ep\d+_it\d+\.pth\Z")


def detect(path: str) -> str | None:
    """``"sharded"`` for a safetensors index, ``"open_lth"`` for an open_lth model checkpoint
    with its ``mask.pth`` beside it, else ``None`` (an ordinary file)."""
    if path.endswith(".index.json"):
        return "sharded"
    if open_lth_mask_path(path) is not None:
        return "open_lth"
    return None


def open_lth_mask_path(path: str) -> str | None:
    """The ``mask.pth`` beside an open_lth ``model_ep<E>_it<I>.pth``, when there is one."""
    if not _OPEN_LTH_MODEL.match(os.path.basename(path)):
        return None
    mask = os.path.join(os.path.dirname(path), "mask.pth")
    return mask if os.path.isfile(mask) else None


# -- sharded safetensors ------------------------------------------------------------------

def read_index(index_path: str) -> tuple[dict, str, dict[str, list[str]]]:
    """A sharded checkpoint's ``*.index.json``, checked: ``(index, folder, {shard: [keys]})``.

    The index is bounded in size and depth before parsing; every shard is a plain file name
    in the index's own folder and exists.  Shared by :func:`load_sharded` and the streaming
    audit, so both refuse the same files with the same lines."""
    from ._pt import open_regular
    from ._safetensors import json_depth_ok

    fh, size = open_regular(index_path)
    with fh:
        if size > MAX_HEADER_BYTES:
            raise UnsafeCheckpoint(f"{index_path}: index of {size:,} bytes; at most {MAX_HEADER_BYTES:,} are read")
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
        if json_depth_ok(text) < 0:
            raise BadCheckpoint(f"{index_path}: the shard index nests too deeply")
        index = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadCheckpoint(f"{index_path}: the shard index is not JSON") from None
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not wmap:
        raise BadCheckpoint(f"{index_path}: a shard index needs a non-empty 'weight_map' of tensor -> shard file")
    folder = os.path.dirname(os.path.abspath(index_path))
    shards: dict[str, list[str]] = {}
    for key, shard in wmap.items():
        if not isinstance(shard, str) or not shard or os.path.basename(shard) != shard or shard in (".", ".."):
            raise UnsafeCheckpoint(
                f"{index_path}: tensor {show(key)} maps to shard {show(repr(shard))}; shards are plain file "
                "names in the index's folder"
            )
        shards.setdefault(shard, []).append(key)
    for shard in shards:
        if not os.path.isfile(os.path.join(folder, shard)):
            raise BadCheckpoint(f"{index_path}: shard {show(shard)} is missing")
    return index, folder, shards


def check_shard(index_path: str, shard: str, have, want) -> None:
    """A shard holds exactly the tensors the index maps to it."""
    have, want = set(have), set(want)
    if have != want:
        extra, missing = sorted(have - want), sorted(want - have)
        what = (f"holds {show(extra[0])}, which the index maps elsewhere or not at all" if extra
                else f"lacks {show(missing[0])}, which the index maps to it")
        raise BadCheckpoint(f"{index_path}: shard {show(shard)} {what}")


def check_total_size(index_path: str, index: dict, nbytes: int) -> None:
    """The index's ``metadata.total_size``, when given, is the bytes of tensors the shards hold."""
    md = index.get("metadata", {})
    if isinstance(md, dict) and "total_size" in md:
        ts = md["total_size"]
        if not isinstance(ts, int) or isinstance(ts, bool) or ts != nbytes:
            raise BadCheckpoint(f"{index_path}: the index says total_size {show(repr(ts))} but the shards hold "
                                f"{nbytes} bytes of tensors")


def load_sharded(index_path: str):
    """Read a sharded safetensors model from its ``*.index.json``, one shard at a time."""
    from ._checkpoint import Checkpoint, _validate
    from ._pt import open_regular
    from ._safetensors import DTYPES, read_header, read_tensor

    index, folder, shards = read_index(index_path)
    check_memory(sum(os.path.getsize(os.path.join(folder, shard)) for shard in shards), index_path)
    tensors, dtypes, meta, nbytes, file_md = {}, {}, {}, 0, {}
    for shard, keys in shards.items():
        p = os.path.join(folder, shard)
        sfh, ssize = open_regular(p)
        with sfh:
            header = read_header(sfh, ssize, p)
            check_shard(index_path, shard, header.entries, keys)
            for key, entry in header.entries.items():
                tensors[key] = read_tensor(sfh, entry, key, p)
                dtypes[key] = DTYPES[entry[0]][1]
                nbytes += entry[3] - entry[2]
            if header.netgraph and not meta:
                meta = header.netgraph
            if not file_md:
                file_md = dict(header.metadata)
    check_total_size(index_path, index, nbytes)
    _validate(tensors, index_path)
    ckpt = Checkpoint(index_path, "safetensors", tensors, meta, None, None, dtypes, file_md)
    ckpt.prunable()
    return ckpt


# -- masks beside a checkpoint (open_lth, NNI) ----------------------------------------------

def nni_masks(root) -> dict[str, np.ndarray] | None:
    """An NNI mask dict ``{module: {"weight": mask, "bias": mask}}`` as ``{module.weight: mask,
    module.bias: mask}`` (numpy), or ``None`` when ``root`` is not one."""
    if not isinstance(root, Mapping) or not root:
        return None
    if not all(isinstance(v, Mapping) and v and set(v) <= {"weight", "bias"} for v in root.values()):
        return None
    from ._checkpoint import _to_numpy

    out = {}
    for module, parts in root.items():
        if not isinstance(module, str):
            return None
        for leaf, m in parts.items():
            if type(m).__name__ not in ("Tensor", "Parameter"):
                return None
            out[f"{module}.{leaf}" if module else leaf] = _to_numpy(m, f"mask {show(module + '.' + leaf)}")
    return out


def merge_masks(tensors: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], path: str,
                mask_path: str) -> dict[str, np.ndarray]:
    """The state_dict with each masked tensor in torch's prune format: ``X_orig`` = the stored
    values, ``X_mask`` = the mask (same shape, 0/1).  A mask for a tensor the state_dict lacks
    is refused."""
    out = dict(tensors)
    for key, m in masks.items():
        if key not in tensors:
            raise BadCheckpoint(f"{mask_path}: mask {show(key)} names a tensor that {path} does not hold")
        if tuple(m.shape) != tuple(tensors[key].shape):
            raise BadCheckpoint(f"{mask_path}: mask {show(key)} has shape {tuple(m.shape)} but the tensor has "
                                f"{tuple(tensors[key].shape)}; they must match")
        bad = (m != 0) & (m != 1)
        if bad.any():
            raise BadCheckpoint(f"{mask_path}: mask {show(key)} has values {np.unique(m[bad])[:3].tolist()}; "
                                "masks must be 0 or 1")
        del out[key]
        out[key + "_orig"] = tensors[key]
        out[key + "_mask"] = (m != 0).astype(np.float32)
    return out


def load_with_masks(model_path: str | os.PathLike, mask_path: str | os.PathLike):
    """A model state_dict file and a mask file (open_lth's ``mask.pth`` — ``{param: mask}`` —
    or an NNI mask dict — ``{module: {"weight": mask}}``) read into one prune-format
    :class:`~netgraph.io.Checkpoint`."""
    from ._checkpoint import Checkpoint, _load_plain, _validate

    model_path, mask_path = os.fsdecode(os.fspath(model_path)), os.fsdecode(os.fspath(mask_path))
    base = _load_plain(model_path)
    mask_ck = _load_plain(mask_path, allow_nested=True)
    masks = nni_masks(mask_ck.root) if mask_ck.root is not None else None
    if masks is None:
        masks = dict(mask_ck.tensors)
    tensors = merge_masks(base.tensors, masks, model_path, mask_path)
    _validate(tensors, model_path)
    ckpt = Checkpoint(model_path, base.format, tensors, base.meta, None, None,
                      {k: base.dtypes.get(k[:-5] if k.endswith(("_orig", "_mask")) else k, "float32")
                       for k in tensors})
    ckpt.prunable()
    return ckpt
