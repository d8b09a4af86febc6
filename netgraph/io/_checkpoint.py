"""Reading and writing checkpoints safely.

Contract
--------
* The format is decided from the file's first bytes, never its extension: a zip archive
  (``PK\\x03\\x04``) is a ``torch.save`` file, an 8-byte header length followed by ``{`` is
  safetensors.  Legacy (non-zip) pickles and TorchScript archives are refused.
* torch files are read with ``torch.load(weights_only=True)`` passed explicitly (an
  environment variable can otherwise turn the unsafe unpickler back on), after checking
  the zip members are stored (not deflated: a zip bomb) and lie within the file.
* safetensors headers are parsed first: duplicate keys and offsets outside the file are
  refused; values are validated after loading (safetensors checks layout, not values).
* Every tensor is checked: finite values, binary masks, ``*_orig``/``*_mask`` shapes equal,
  no empty weight.  Any exception while reading becomes one :class:`BadCheckpoint`.
* Writing goes to a temp file in the destination folder, flush + fsync, ``os.replace``;
  the result is read back with the same strict loader.

torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import BadCheckpoint, UnsafeCheckpoint

__all__ = [
    "Checkpoint",
    "PrunableWeight",
    "load_checkpoint",
    "checkpoint_from_state_dict",
    "save_checkpoint",
    "atomic_write",
    "natural_key",
    "effective_tensor",
]

MIN_TORCH = (2, 10)  # CVE-2025-32434 (fixed in 2.6) and CVE-2026-24747 (fixed in 2.10)
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

def _sniff(path: str) -> str:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(9)
    except FileNotFoundError:
        raise BadCheckpoint(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadCheckpoint(f"{path}: is a directory, expected a checkpoint file") from None
    except OSError as exc:
        raise BadCheckpoint(f"{path}: cannot be read ({exc.strerror})") from None
    if size == 0:
        raise BadCheckpoint(f"{path}: the file is empty (0 bytes)")
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


def _check_zip(path: str) -> None:
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadCheckpoint(f"{path}: corrupt or truncated zip archive ({exc})") from None
    names = [i.filename for i in infos]
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        raise UnsafeCheckpoint(
            f"{path}: a TorchScript archive (it contains code); give a state_dict saved with torch.save"
        )
    if not any(n.endswith("data.pkl") for n in names):
        raise BadCheckpoint(f"{path}: a zip archive without data.pkl, not a torch.save file")
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise UnsafeCheckpoint(
                f"{path}: member {info.filename!r} is compressed; torch.save stores members "
                "uncompressed, and a compressed one can inflate without bound"
            )
        total += info.file_size
    if total > size:
        raise UnsafeCheckpoint(f"{path}: members claim {total} bytes in a {size}-byte file")


def _require_torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        raise BadCheckpoint("reading torch checkpoints needs torch; pip install torch") from None
    version = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if version < MIN_TORCH:
        raise BadCheckpoint(
            f"torch {torch.__version__} is too old to load checkpoints safely; "
            f"netgraph needs torch >= {MIN_TORCH[0]}.{MIN_TORCH[1]}"
        )
    return torch


def _to_numpy(value, where: str) -> np.ndarray:
    import torch

    t = value.detach().cpu()
    if t.is_sparse or t.layout != torch.strided:
        t = t.to_dense()
    if t.is_complex():
        raise BadCheckpoint(f"{where}: complex tensor; netgraph reads real weights")
    if t.dtype in (torch.bfloat16, torch.float16) or t.dtype.is_floating_point and t.dtype != torch.float64:
        t = t.float()
    return t.numpy()


def _load_torch(path: str):
    torch = _require_torch()
    _check_zip(path)
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except Exception as exc:  # corrupt files raise many types; map every one to one refusal
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "Weights only" in str(exc):
            raise UnsafeCheckpoint(
                f"{path}: refused: loading it would need to run code or build objects other than "
                f"tensors ({type(exc).__name__}); netgraph never unpickles code"
            ) from None
        raise BadCheckpoint(f"{path}: cannot be read as a torch checkpoint ({type(exc).__name__}: {msg})") from None
    return obj


def _unwrap(obj, path: str) -> tuple[dict, dict, str | None]:
    """Find the state_dict inside a loaded object: (state_dict, meta, key)."""
    if not isinstance(obj, Mapping):
        raise BadCheckpoint(f"{path}: holds a {type(obj).__name__}, expected a state_dict (a dict of tensors)")
    meta = obj.get("netgraph", {}) if isinstance(obj.get("netgraph", {}), Mapping) else {}
    for key in _STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner:
            return dict(inner), dict(meta), key
    return {k: v for k, v in obj.items() if k != "netgraph"}, dict(meta), None


def _load_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict, dict[str, str]]:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        raw = fh.read(n)
    dupes: list[str] = []

    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen:
                dupes.append(k)
            seen[k] = v
        return seen

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadCheckpoint(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if dupes:
        raise BadCheckpoint(f"{path}: safetensors header repeats key {dupes[0]!r}; keys must be unique")
    data_len = size - 8 - n
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(info, Mapping) or "data_offsets" not in info:
            raise BadCheckpoint(f"{path}: safetensors entry {key!r} has no data_offsets")
        start, end = info["data_offsets"]
        if not (0 <= start <= end <= data_len):
            raise BadCheckpoint(
                f"{path}: safetensors tensor {key!r} claims bytes {start}..{end} but the data is {data_len} bytes"
            )
    meta = {}
    raw_meta = header.get("__metadata__") or {}
    if isinstance(raw_meta, Mapping) and "netgraph" in raw_meta:
        try:
            meta = json.loads(raw_meta["netgraph"])
        except (TypeError, json.JSONDecodeError):
            raise BadCheckpoint(f"{path}: safetensors metadata 'netgraph' is not JSON") from None
    try:
        from safetensors import safe_open

        try:
            import torch  # noqa: F401  (bf16 needs the torch framework)

            framework = "pt"
        except ImportError:  # pragma: no cover
            framework = "numpy"
        out, dtypes = {}, {}
        with safe_open(path, framework=framework) as f:
            for key in f.keys():
                t = f.get_tensor(key)
                out[key] = _to_numpy(t, f"{path}: tensor {key!r}") if framework == "pt" else np.asarray(t)
                dtypes[key] = str(t.dtype).replace("torch.", "")
    except BadCheckpoint:
        raise
    except Exception as exc:
        raise BadCheckpoint(f"{path}: cannot be read as safetensors ({type(exc).__name__}: {exc})") from None
    return out, meta, dtypes


def _validate(tensors: Mapping[str, np.ndarray], path: str) -> None:
    if not tensors:
        raise BadCheckpoint(f"{path}: the state_dict is empty (no tensors)")
    for key, t in tensors.items():
        if t.dtype.kind == "f" and t.size and not np.isfinite(t).all():
            bad = "NaN" if np.isnan(t).any() else "Inf"
            raise BadCheckpoint(f"{path}: tensor {key!r} contains {bad}; weights must be finite")
        if key.endswith("_mask"):
            if t.dtype != bool and not ((t == 0) | (t == 1)).all():
                found = np.unique(t[(t != 0) & (t != 1)])[:3].tolist()
                raise BadCheckpoint(f"{path}: mask {key!r} has values {found}; masks must be 0 or 1")


def _prunable(tensors: Mapping[str, np.ndarray], path: str) -> dict[str, PrunableWeight]:
    out: dict[str, PrunableWeight] = {}
    for key in sorted(tensors, key=natural_key):
        t = tensors[key]
        if key.endswith("_mask"):
            base = key[: -len("_mask")]
            orig = tensors.get(base + "_orig")
            if orig is None:
                raise BadCheckpoint(f"{path}: mask {key!r} has no {base + '_orig'!r}; prune format stores both")
            if orig.shape != t.shape:
                raise BadCheckpoint(
                    f"{path}: mask {key!r} has shape {tuple(t.shape)} but {base + '_orig'!r} has "
                    f"{tuple(orig.shape)}; they must match"
                )
            if t.size == 0:
                raise BadCheckpoint(f"{path}: weight {base!r} has shape {tuple(t.shape)}: it is empty")
            out[base] = PrunableWeight(base, t.astype(bool), orig, True)
        elif key.endswith("_orig"):
            if key[: -len("_orig")] + "_mask" not in tensors:
                raise BadCheckpoint(f"{path}: {key!r} has no matching _mask; prune format stores both")
        elif t.ndim >= 2 and t.dtype.kind in "fiu":
            if t.size == 0:
                raise BadCheckpoint(f"{path}: weight {key!r} has shape {tuple(t.shape)}: it is empty")
            out[key] = PrunableWeight(key, t != 0, t, False)
    return out


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a state_dict file (torch zip or safetensors).

    Raises
    ------
    BadCheckpoint
        Unreadable, truncated, corrupt, NaN/Inf, non-binary masks, mismatched shapes.
    UnsafeCheckpoint
        Would need code execution (pickled objects, TorchScript) or a zip bomb.
    """
    path = os.fspath(path)
    fmt = _sniff(path)
    if fmt == "torch":
        root = _load_torch(path)
        sd, meta, key = _unwrap(root, path)
        tensors, dtypes = {}, {}
        import torch

        for k, v in sd.items():
            if isinstance(v, torch.Tensor):
                tensors[k] = _to_numpy(v, f"{path}: tensor {k!r}")
                dtypes[k] = str(v.dtype).replace("torch.", "")
            elif isinstance(v, (int, float, str, bool, type(None))):
                continue  # e.g. a step counter next to the tensors
            else:
                raise BadCheckpoint(f"{path}: entry {k!r} is a {type(v).__name__}, expected a tensor")
    else:
        tensors, meta, dtypes = _load_safetensors(path)
        root, key = None, None
    _validate(tensors, path)
    ckpt = Checkpoint(path, fmt, tensors, meta, root, key, dtypes)
    ckpt.prunable()  # validates prune-format pairs once, at the boundary
    return ckpt


def checkpoint_from_state_dict(state_dict: Mapping[str, Any], *, source: str = "<state_dict>",
                               meta: Mapping | None = None) -> Checkpoint:
    """Validate an in-memory state_dict (torch tensors or numpy arrays) into a :class:`Checkpoint`."""
    tensors = {}
    for k, v in state_dict.items():
        tensors[k] = np.asarray(v) if isinstance(v, np.ndarray) else _to_numpy(v, f"{source}: tensor {k!r}")
    _validate(tensors, source)
    ckpt = Checkpoint(source, "memory", tensors, dict(meta or {}), None, None)
    ckpt.prunable()
    return ckpt


# -- writing ------------------------------------------------------------------------------
# Writing lives in netgraph.io._write (the one output contract); re-exported here.

from ._write import atomic_write, save_checkpoint  # noqa: E402
