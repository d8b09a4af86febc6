"""Reading and writing checkpoints safely.

Contract
--------
* The format is decided from the file's first bytes, never its extension: a zip archive
  (``PK\\x03\\x04``) is a ``torch.save`` file, an 8-byte header length followed by ``{`` is
  safetensors.  Legacy (non-zip) pickles and TorchScript archives are refused.
* torch files are read by :mod:`netgraph.io._pt`: the zip directory is checked (unique
  members, no overlaps, stored), ``data.pkl`` is scanned on a non-executing pickle machine
  against an allow-list (dense strided tensors of real dtypes only, every element stored once,
  containers bounded), and only then loaded with ``torch.load(weights_only=True)`` passed
  explicitly (an environment variable can otherwise turn the unsafe unpickler back on).
* safetensors files are read by :mod:`netgraph.io._safetensors` (header depth, entries,
  exact byte ranges and metadata types checked before any value is read; no torch needed).
* Every tensor is checked: finite values, binary masks, ``*_orig``/``*_mask`` shapes equal,
  no empty weight, no tensor both plain and in prune format, BatchNorm widths agree; keys are
  strings.  Any exception while reading becomes one :class:`BadCheckpoint`.
* Writing goes to a temp file in the destination folder, flush + fsync, ``os.replace``;
  the result is read back with the same strict loader.

torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import BadCheckpoint, UnsafeCheckpoint, show
from . import _formats, _pt
from . import _safetensors as _st
from ._pt import open_regular

__all__ = [
    "Checkpoint",
    "PrunableWeight",
    "load_checkpoint",
    "load_state_file",
    "checkpoint_from_state_dict",
    "save_checkpoint",
    "atomic_write",
    "natural_key",
    "effective_tensor",
]

MIN_TORCH = _pt.MIN_TORCH  # CVE-2025-32434 (fixed in 2.6) and CVE-2026-24747 (fixed in 2.10)
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass(frozen=True)
class PrunableWeight:
    """One prunable weight as the user knows it.

    ``name`` is the key without the prune suffix (``fc1.weight``); ``mask`` is bool (kept);
    ``values`` are the dense weights (``weight_orig`` in prune format, else the weight);
    ``prune_format`` says whether the file stores ``_orig`` + ``_mask``.
    """

    name: str
    mask: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    prune_format: bool = False


@dataclass(frozen=True)
class Checkpoint:
    """A validated state_dict.

    ``tensors`` maps every key of the state_dict (as stored) to a numpy array;
    ``meta`` is the ``"netgraph"`` metadata dict when the file has one (topology,
    method, rates, ...); ``root`` the loaded top-level object and ``state_dict_key``
    the key under which the state_dict sits (``None`` when the file is the state_dict).
    """

    path: str
    format: str  # "torch" | "safetensors" | "memory"
    tensors: Mapping[str, np.ndarray] = field(repr=False)
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)
    root: Any = field(default=None, repr=False)
    state_dict_key: str | None = None
    dtypes: Mapping[str, str] = field(default_factory=dict, repr=False)  # stored dtype, e.g. "bfloat16"
    # safetensors ``__metadata__`` as read and checked (str -> str; ``netgraph`` included)
    file_metadata: Mapping[str, str] = field(default_factory=dict, repr=False)

    def prunable(self) -> dict[str, PrunableWeight]:
        """Prunable weights by user name, in natural key order: prune-format pairs and
        plain weights with two or more dimensions.  Computed once."""
        cached = self.__dict__.get("_prunable")
        if cached is None:
            cached = _prunable(self.tensors, self.path)
            object.__setattr__(self, "_prunable", cached)
        return dict(cached)


def effective_tensor(tensors: Mapping[str, np.ndarray], key: str) -> np.ndarray | None:
    """The tensor ``key`` as the model uses it: stored plain, or ``key_orig * key_mask`` when
    it is in torch's prune format (a pruned bias, say); ``None`` when absent."""
    if key in tensors:
        return tensors[key]
    orig, mask = tensors.get(key + "_orig"), tensors.get(key + "_mask")
    if orig is not None and mask is not None:
        return orig * (mask != 0)
    return None


def natural_key(name: str) -> tuple:
    """Sort key that orders ``net.2`` before ``net.10``.

    Only ASCII digit runs are numbers (``'fc²'`` and ``'fc٣'`` are plain text), so the key
    alternates text, number, text, … and any two keys compare without error.

    >>> sorted(["net.10", "net.2", "fc²", "fc1"], key=natural_key)
    ['fc1', 'fc²', 'net.2', 'net.10']
    """
    parts = re.split(r"([0-9]+)", name)
    return tuple(int(t) if i % 2 else t for i, t in enumerate(parts))


# -- reading ------------------------------------------------------------------------------
# The format readers live in _pt.py (torch zip archives) and _safetensors.py; the limits and
# the strided-view rule in _limits.py.  This module picks the format and turns what they read
# into one validated state_dict.

def _sniff_open(fh, size: int, path: str) -> str:
    """The format of the open file ``fh`` from its first bytes: ``"torch"`` or ``"safetensors"``."""
    if size == 0:
        raise BadCheckpoint(f"{path}: the file is empty (0 bytes)")
    fh.seek(0)
    head = fh.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < n <= size - 8:
            return "safetensors"
        if head[8:9] == b"{":
            raise BadCheckpoint(
                f"{path}: safetensors header claims {n} bytes but the file has {size}; truncated or corrupt"
            )
    if head[:1] == b"\x80":
        raise UnsafeCheckpoint(
            f"{path}: a legacy (non-zip) pickle; netgraph reads only zip torch.save files "
            "and safetensors (re-save it with a current torch, or as safetensors)"
        )
    raise BadCheckpoint(
        f"{path}: neither a torch.save zip archive nor a safetensors file (first bytes {head[:8]!r})"
    )


def _sniff(path: str) -> str:
    """The format of the file at ``path`` (opened without blocking; regular files only)."""
    fh, size = open_regular(path)
    with fh:
        return _sniff_open(fh, size, path)


def _require_torch():
    return _pt._require_torch()


def _to_numpy(value, where: str, cache: dict | None = None) -> np.ndarray:
    """A torch tensor as numpy: float16/bfloat16 widened to float32, bool canonical.  Only
    plain dense CPU tensors of an allowed dtype are read; ``cache`` shares the array between
    tensors that are the same view of the same storage (tied weights)."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise BadCheckpoint(f"{where} is a {type(value).__name__}, expected a tensor")
    t = value.detach()
    if t.layout != torch.strided or t.is_quantized or t.is_meta or t.is_nested:
        kind = ("quantized" if t.is_quantized else "meta" if t.is_meta else "nested" if t.is_nested
                else f"{t.layout}".replace("torch.", ""))
        raise BadCheckpoint(f"{where} is a {kind} tensor; netgraph reads dense (strided) real tensors only")
    if t.is_complex():
        raise BadCheckpoint(f"{where}: complex tensor; netgraph reads real weights")
    dtype = str(t.dtype).replace("torch.", "")
    if dtype not in _pt.ALLOWED_DTYPES:
        raise BadCheckpoint(f"{where} has dtype {dtype}; netgraph reads {', '.join(_pt.ALLOWED_DTYPES)}")
    t = t.cpu()
    key = None
    if cache is not None and t.numel():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), dtype)
        if key in cache:
            return cache[key]
    if t.dtype == torch.bool:
        out = (t.view(torch.uint8) != 0).numpy()
    elif t.dtype.is_floating_point and t.dtype != torch.float64:
        out = t.float().numpy()
    else:
        out = t.numpy()
    if key is not None:
        cache[key] = out
    return out


def _load_torch(path: str):
    """The object in a torch.save archive, read by the strict reader (:mod:`._pt`)."""
    return _pt.load_torch_file(path)


def _unwrap(obj, path: str) -> tuple[dict, dict, str | None]:
    """Find the state_dict inside a loaded object: ``(state_dict, meta, key)``.

    A wrapper (``state_dict`` / ``model_state_dict`` / ``model``) is used when exactly one
    holds a state_dict, or when several hold the same one; wrappers that disagree and a
    ``netgraph`` entry that is not a dict are refused: netgraph never picks one of two
    readings silently.  (Other entries beside a wrapper — an optimizer, an RNG state — are
    kept in ``root`` and not read as weights.)
    """
    if not isinstance(obj, Mapping):
        raise BadCheckpoint(f"{path}: holds a {type(obj).__name__}, expected a state_dict (a dict of tensors)")
    _string_keys(obj, path, "the top level")
    meta = obj.get("netgraph", {})
    if not isinstance(meta, Mapping):
        raise BadCheckpoint(
            f"{path}: entry 'netgraph' is a {type(meta).__name__}; that key is reserved for netgraph's "
            "metadata (a dict): rename the tensor"
        )
    wrappers = [k for k in _STATE_DICT_KEYS if isinstance(obj.get(k), Mapping) and obj.get(k)]
    if not wrappers:
        return {k: v for k, v in obj.items() if k != "netgraph"}, dict(meta), None
    key = wrappers[0]
    inner = obj[key]
    for other in wrappers[1:]:
        diff = _first_difference(inner, obj[other])
        if diff is not None:
            raise BadCheckpoint(
                f"{path}: the wrappers {key!r} and {other!r} hold different state_dicts ({diff}); "
                "netgraph will not choose one: keep one of them"
            )
    _string_keys(inner, path, repr(key))
    return dict(inner), dict(meta), key


def _is_tensor(v) -> bool:
    return type(v).__name__ in ("Tensor", "Parameter", "ndarray")


def _string_keys(d: Mapping, path: str, where: str) -> None:
    for k in d:
        if not isinstance(k, str):
            raise BadCheckpoint(
                f"{path}: key {show(repr(k))} in {where} is a {type(k).__name__}; state_dict keys must be strings"
            )


def _first_difference(a: Mapping, b: Mapping) -> str | None:
    if a is b:
        return None
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b), key=str)[0]
        return f"{show(only)} is in only one of them"
    for k in a:
        x, y = a[k], b[k]
        if x is y:
            continue
        if _is_tensor(x) and _is_tensor(y):
            import torch

            if x.shape != y.shape or x.dtype != y.dtype or not torch.equal(x, y):
                return f"{show(k)} differs"
        elif type(x) is not type(y) or (not _is_tensor(x) and x != y):
            return f"{show(k)} differs"
    return None


def _load_safetensors(path: str, fh=None, size: int | None = None) -> tuple[dict[str, np.ndarray], dict, dict[str, str]]:
    """``(tensors, netgraph meta, stored dtypes)`` of a safetensors file (:mod:`._safetensors`)."""
    if fh is None:
        fh, size = open_regular(path)
        with fh:
            return _load_safetensors(path, fh, size)
    tensors, meta, dtypes, _ = _st.load_safetensors(path, fh, size)
    return tensors, meta, dtypes


def check_structure(tensors: Mapping[str, Any], path: str) -> None:
    """The checks of a state_dict that need shapes only, no values (the streaming audit calls
    this on shape-only placeholders): keys are printable strings; no tensor is stored both
    plain and in prune format; BatchNorm tensors agree on one width."""
    if not tensors:
        raise BadCheckpoint(f"{path}: the state_dict is empty (no tensors)")
    for key in tensors:
        if not isinstance(key, str) or not key.isprintable():
            raise BadCheckpoint(
                f"{path}: key {show(key)} holds control characters (newline, ANSI escape, ...); "
                "state_dict keys are printable module paths"
            )
        if key + "_orig" in tensors or key + "_mask" in tensors:
            pair = key + "_orig" if key + "_orig" in tensors else key + "_mask"
            raise BadCheckpoint(
                f"{path}: holds both a plain {show(key)} and the prune-format {show(pair)} for the same "
                "tensor; which one the model uses is ambiguous: keep one (prune.remove() makes it plain)"
            )
    _check_batchnorms(tensors, path)


def check_values(key: str, t: np.ndarray, path: str) -> None:
    """The checks of one tensor's values (a chunk of it is fine): finite; a ``*_mask`` is 0/1."""
    if t.dtype.kind == "f" and t.size and not np.isfinite(t).all():
        bad = "NaN" if np.isnan(t).any() else "Inf"
        raise BadCheckpoint(f"{path}: tensor {show(key)} contains {bad}; weights must be finite")
    if key.endswith("_mask"):
        if t.dtype != bool and not ((t == 0) | (t == 1)).all():
            found = np.unique(t[(t != 0) & (t != 1)])[:3].tolist()
            raise BadCheckpoint(f"{path}: mask {show(key)} has values {found}; masks must be 0 or 1")


def _validate(tensors: Mapping[str, np.ndarray], path: str) -> None:
    check_structure(tensors, path)
    for key, t in tensors.items():
        check_values(key, t, path)


def _check_batchnorms(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """Every ``P.running_mean`` comes with 1-D statistics and affine parameters of one width."""
    for key in tensors:
        if not key.endswith(".running_mean"):
            continue
        prefix = key[: -len(".running_mean")]
        mean = tensors[key]
        if len(mean.shape) != 1:
            raise BadCheckpoint(
                f"{path}: BatchNorm {show(prefix)}: running_mean has shape {tuple(mean.shape)}; it must be 1-D "
                "(one value per channel)"
            )
        width = mean.shape[0]
        for leaf in ("running_var", "weight", "bias"):
            t = effective_tensor(tensors, f"{prefix}.{leaf}")
            if t is None:
                if leaf == "running_var":
                    raise BadCheckpoint(f"{path}: BatchNorm {show(prefix)} has running_mean but no running_var")
                continue
            if t.shape != (width,):
                raise BadCheckpoint(
                    f"{path}: BatchNorm {show(prefix)}: {leaf} has shape {tuple(t.shape)} but running_mean has "
                    f"({width},); a BatchNorm's tensors have one value per channel"
                )


def prunable_layout(tensors: Mapping[str, Any], path: str) -> dict[str, tuple[str, str | None]]:
    """Prunable weights by user name → ``(values key, mask key or None)``, in natural key order:
    prune-format pairs and plain weights with two or more dimensions.  Reads shapes and dtypes
    only (values may be placeholders), so the in-memory reader and the streaming audit share
    it and refuse the same files with the same lines."""
    out: dict[str, tuple[str, str | None]] = {}
    for key in sorted(tensors, key=natural_key):
        t = tensors[key]
        if key.endswith("_mask"):
            base = key[: -len("_mask")]
            orig = tensors.get(base + "_orig")
            if orig is None:
                raise BadCheckpoint(f"{path}: mask {show(key)} has no {show(base + '_orig')}; prune format stores both")
            if orig.shape != t.shape:
                raise BadCheckpoint(
                    f"{path}: mask {show(key)} has shape {tuple(t.shape)} but {show(base + '_orig')} has "
                    f"{tuple(orig.shape)}; they must match"
                )
            if t.size == 0:
                raise BadCheckpoint(f"{path}: weight {show(base)} has shape {tuple(t.shape)}: it is empty")
            if base in out:
                raise BadCheckpoint(f"{path}: {show(base)} is stored both plain and in prune format; keep one")
            out[base] = (base + "_orig", key)
        elif key.endswith("_orig"):
            if key[: -len("_orig")] + "_mask" not in tensors:
                raise BadCheckpoint(f"{path}: {show(key)} has no matching _mask; prune format stores both")
        elif len(t.shape) >= 2 and t.dtype.kind in "fiu":
            if t.size == 0:
                raise BadCheckpoint(f"{path}: weight {show(key)} has shape {tuple(t.shape)}: it is empty")
            if key in out:
                raise BadCheckpoint(f"{path}: {show(key)} is stored both plain and in prune format; keep one")
            out[key] = (key, None)
    return out


def _prunable(tensors: Mapping[str, np.ndarray], path: str) -> dict[str, PrunableWeight]:
    out: dict[str, PrunableWeight] = {}
    for name, (values, mask) in prunable_layout(tensors, path).items():
        v = tensors[values]
        out[name] = (PrunableWeight(name, tensors[mask].astype(bool), v, True) if mask is not None
                     else PrunableWeight(name, v != 0, v, False))
    return out


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a state_dict file (torch zip or safetensors).

    The file is opened once, without blocking (FIFOs and devices are refused), and read by
    the strict readers (:mod:`netgraph.io._pt`, :mod:`netgraph.io._safetensors`); see their
    contracts for every rule.  Other tools' layouts are recognised (:mod:`netgraph.io._formats`):
    a sharded safetensors ``*.index.json`` (read shard by shard), an open_lth
    ``model_ep<E>_it<I>.pth`` with ``mask.pth`` beside it, and an NNI mask dict
    (``{module: {"weight": mask}}``, read as masks).

    Raises
    ------
    BadCheckpoint
        Unreadable, truncated, corrupt, NaN/Inf, non-binary masks, mismatched shapes, keys that
        are not strings, an ambiguous reading (wrappers that disagree, a tensor both plain and
        in prune format), BatchNorm tensors of different widths.
    UnsafeCheckpoint
        Would need code execution (pickled objects, TorchScript), unbounded memory (a zip bomb,
        stride-0 expansion, sparse tensors, sizes past the file or past available memory), or
        a zip archive that different readers would read differently.
    """
    path = os.fsdecode(os.fspath(path))
    kind = _formats.detect(path)
    if kind == "sharded":
        return _formats.load_sharded(path)
    if kind == "open_lth":
        return _formats.load_with_masks(path, _formats.open_lth_mask_path(path))
    ckpt = _load_plain(path, allow_nested=True)
    masks = _formats.nni_masks(ckpt.root) if not ckpt.tensors else None
    if masks is None:
        return ckpt
    # An NNI mask dict alone: the masks are the kept sets; the values are not in the file.
    tensors, dtypes = {}, {}
    for key, m in masks.items():
        check_values(key + "_mask", m, path)  # 0/1 only
        tensors[key + "_orig"] = (m != 0).astype(np.float32)
        tensors[key + "_mask"] = (m != 0).astype(np.float32)
        dtypes[key + "_orig"] = dtypes[key + "_mask"] = "float32"
    _validate(tensors, path)
    out = Checkpoint(path, "torch", tensors, {}, None, None, dtypes)
    out.prunable()
    return out


def _load_plain(path: str, *, allow_nested: bool = False) -> Checkpoint:
    """One torch or safetensors file read strictly into a :class:`Checkpoint`.  With
    ``allow_nested``, a torch file whose state_dict values are all dicts (an NNI mask dict) is
    returned unread (``tensors`` empty, ``root`` set) for the caller to interpret."""
    fh, size = open_regular(path)
    with fh:
        fmt = _sniff_open(fh, size, path)
        if fmt == "torch":
            root = _pt.load_torch_file(path, fh, size)
            if allow_nested and _formats.nni_masks(root) is not None:
                return Checkpoint(path, "torch", {}, {}, root, None, {})
            sd, meta, key = _unwrap(root, path)
            tensors, dtypes, file_md = {}, {}, {}
            cache: dict = {}
            for k, v in sd.items():
                if _is_tensor(v):
                    tensors[k] = _to_numpy(v, f"{path}: tensor {show(k)}", cache)
                    dtypes[k] = str(v.dtype).replace("torch.", "")
                elif isinstance(v, (int, float, str, bool, type(None))):
                    continue  # e.g. a step counter next to the tensors
                else:
                    raise BadCheckpoint(f"{path}: entry {show(k)} is a {type(v).__name__}, expected a tensor")
        else:
            tensors, meta, dtypes, file_md = _st.load_safetensors(path, fh, size)
            root, key = None, None
    _validate(tensors, path)
    if "topology" in meta:  # untrusted like the rest of the file: checked before anything uses it
        from .._spec import _spec_limits, validate_spec

        max_width, max_dense = _spec_limits(tensors)
        validate_spec(meta["topology"], path, max_width=max_width, max_dense=max_dense)
    ckpt = Checkpoint(path, fmt, tensors, meta, root, key, dtypes, file_md)
    ckpt.prunable()  # validates prune-format pairs once, at the boundary
    return ckpt


def load_state_file(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict:
    """Read a training-state file (``train --resume``) with the same strict reader as any
    checkpoint; return the loaded dict (torch tensors on the CPU).

    Parameters
    ----------
    path : str or PathLike
    required : tuple of str
        Top-level keys the state must hold; a file without them is refused as foreign.

    Raises
    ------
    BadCheckpoint, UnsafeCheckpoint
        Everything :func:`load_checkpoint` refuses for a torch file (malicious, truncated,
        corrupt, sparse/quantized tensors, ...), a safetensors file, a top level that is not a
        dict with string keys, or one that lacks a ``required`` key.  One line each.
    """
    path = os.fsdecode(os.fspath(path))
    fh, size = open_regular(path)
    with fh:
        if _sniff_open(fh, size, path) != "torch":
            raise BadCheckpoint(f"{path}: a safetensors file, not a training state (those are torch.save files)")
        obj = _pt.load_torch_file(path, fh, size)
    if not isinstance(obj, dict):
        raise BadCheckpoint(f"{path}: holds a {type(obj).__name__}, not a training state (a dict)")
    _string_keys(obj, path, "the top level")
    missing = [k for k in required if k not in obj]
    if missing:
        raise BadCheckpoint(
            f"{path}: not a netgraph training state (no {show(missing[0])} among its {len(obj)} top-level "
            "keys); it was written by something else: start afresh without --resume"
        )
    return obj


def checkpoint_from_state_dict(state_dict: Mapping[str, Any], *, source: str = "<state_dict>",
                               meta: Mapping | None = None) -> Checkpoint:
    """Validate an in-memory state_dict (torch tensors or numpy arrays) into a :class:`Checkpoint`."""
    _string_keys(state_dict, source, "the state_dict")
    tensors = {}
    cache: dict = {}
    for k, v in state_dict.items():
        tensors[k] = np.asarray(v) if isinstance(v, np.ndarray) else _to_numpy(v, f"{source}: tensor {show(k)}", cache)
    _validate(tensors, source)
    ckpt = Checkpoint(source, "memory", tensors, dict(meta or {}), None, None)
    ckpt.prunable()
    return ckpt


# -- writing ------------------------------------------------------------------------------
# Writing lives in netgraph.io._write (the one output contract); re-exported here.

from ._write import atomic_write, save_checkpoint  # noqa: E402
