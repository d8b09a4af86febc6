"""The streaming audit: a checkpoint file audited chunk by chunk, in constant memory.

Contract
--------
* :func:`stream_audit` gives the same :class:`~netgraph.AuditReport` as
  ``audit(graph_from_checkpoint(load_checkpoint(path)), source=path)`` — the same counts, the
  same warnings, the same refusals (one :class:`~netgraph.errors.BadCheckpoint` /
  :class:`~netgraph.errors.UnsafeCheckpoint` with the same message) — while holding only
  O(total units) state plus one chunk of one tensor.
* The graph's *structure* comes from the same code as the in-memory path
  (:func:`~netgraph.io.graph_from_checkpoint` on a checkpoint whose large tensors are
  shape-only placeholders); the masks are then read in two passes: forward in topological
  order (accessible and constant units; per-unit tap counts; every mask value validated),
  backward (coaccessible units) reading only the rows that the per-unit sums of the forward
  pass cannot answer.  Every other tensor is validated (finite, binary masks) chunk by chunk.
* Every per-chunk quantity is linear in the tap-count matrix ``T[o, c]`` (kept taps of the
  pair output ``o``, input ``c``): ``T @ v`` for the forward vectors, ``coaccᵀ T`` backward,
  row and column sums for the counts.  They are summed exactly (float32 within a chunk of at
  most 2**24 elements, float64 across chunks), so chunk boundaries anywhere — even inside a
  row — give the same integers.
* safetensors files are read with ``os.preadv`` into one reusable buffer and without torch
  (bfloat16 is widened to float32 by a bit shift); torch files are opened with
  ``torch.load(weights_only=True, mmap=True)`` (the strict loader's own checks) and each chunk's
  pages are released after use.
* When the file holds something the stream does not handle (a stored topology of a newer
  spec, a dtype it cannot widen without torch, a non-dense tensor), the in-memory path is used
  and :attr:`StreamResult.fallback` says why.

Use :func:`audit_path` from the CLI; :func:`audit_arrays` runs the same kernels on a
checkpoint already in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from ..errors import BadCheckpoint, NetgraphError, show
from ._checkpoint import Checkpoint, PrunableWeight

__all__ = ["StreamResult", "audit_path", "stream_audit", "audit_arrays", "CHUNK_BYTES"]

CHUNK_BYTES = 1 << 20  # one chunk of raw tensor bytes: fits in L2 with its float32 tap matrix
_EXACT_F32 = 1 << 24  # float32 holds every integer up to 2**24 exactly

class _Fallback(Exception):
    """The stream cannot handle this file; the in-memory path will (the message says why)."""


# -- tensor sources ------------------------------------------------------------------------

@dataclass
class _Entry:
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype  # the dtype the in-memory loader would give (f16/bf16 -> float32)
    stored: str  # the stored dtype's name ("bfloat16", ...)
    ref: Any = None  # source-specific: file offset, torch tensor or numpy array

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class _SafetensorsSource:
    """A safetensors file read with ``preadv`` at the offsets of its header, checked by the
    strict reader's :func:`~netgraph.io._safetensors.read_header` (the same refusals)."""

    format = "safetensors"

    def __init__(self, path: str):
        from . import _safetensors as _st
        from ._pt import open_regular

        self.path = path
        self._fh, size = open_regular(path)
        try:
            header = _st.read_header(self._fh, size, path, budget=False)  # one chunk is held, not the file
        except BaseException:
            self._fh.close()
            raise
        self.meta = dict(header.netgraph)
        self.state_dict_key = None
        self.entries: dict[str, _Entry] = {}
        for key, (dtype, shape, start, end) in header.entries.items():
            stored, name = _st.DTYPES[dtype]
            raw = np.dtype(stored)
            if name in ("float16", "bfloat16"):
                out = np.dtype(np.float32)
            elif name == "bool":
                out = np.dtype(bool)
            else:
                out = raw.newbyteorder("=")
            self.entries[key] = _Entry(key, tuple(shape), out, name, (start, raw))
        self._buf = np.empty(0, np.uint8)

    def read(self, e: _Entry, start: int, count: int) -> np.ndarray:
        """Elements ``start .. start+count`` of the flattened tensor, as the strict reader gives them."""
        offset, raw = e.ref
        nbytes = count * raw.itemsize
        if self._buf.size < nbytes:
            self._buf = np.empty(nbytes, np.uint8)
        view = memoryview(self._buf)[:nbytes]
        got, fd = 0, self._fh.fileno()
        while got < nbytes:
            n = os.preadv(fd, [view[got:]], offset + start * raw.itemsize + got)
            if n <= 0:
                raise BadCheckpoint(f"{self.path}: safetensors tensor {show(e.key)} is truncated")
            got += n
        a = self._buf[:nbytes].view(raw)
        if e.stored == "bfloat16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        if e.stored == "float16":
            return a.astype(np.float32)
        if e.stored == "bool":
            return a != 0
        return a.astype(e.dtype, copy=False)

    def close(self) -> None:
        self._fh.close()


def _madvise_dontneed():
    try:
        import ctypes
        import mmap

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        page = mmap.PAGESIZE
        advice = getattr(mmap, "MADV_DONTNEED", 4)

        def release(addr: int, nbytes: int) -> None:
            lo = (addr + page - 1) // page * page  # whole pages inside the range only
            hi = (addr + nbytes) // page * page
            if hi > lo:
                fn(lo, hi - lo, advice)

        return release
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return lambda addr, nbytes: None


class _TorchSource:
    """A torch.save zip opened by the strict loader with ``mmap=True``; each chunk's pages are
    released (``MADV_DONTNEED`` on the clean, private mapping) once the next one is read."""

    format = "torch"

    def __init__(self, path: str):
        from ._checkpoint import _unwrap
        from ._pt import load_torch_file

        self.path = path
        # the strict reader: zip and pickle checks, then torch.load(weights_only=True, mmap=True);
        # no memory budget for the whole file: pages are mapped and released chunk by chunk
        root = load_torch_file(path, budget=False)
        if isinstance(root, dict) and root and all(isinstance(v, dict) and v and set(v) <= {"weight", "bias"}
                                                   for v in root.values()):
            raise _Fallback("an NNI mask dict ({module: {'weight': mask}}) is read in memory")
        sd, self.meta, self.state_dict_key = _unwrap(root, path)
        import torch

        self._torch = torch
        ok = {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
              torch.int16, torch.int8, torch.uint8, torch.bool}
        self.entries = {}
        for k, v in sd.items():
            if isinstance(v, torch.Tensor):
                if v.layout != torch.strided or v.dtype not in ok or not v.is_contiguous():
                    raise _Fallback(f"tensor {k!r} is {v.layout} {v.dtype}"
                                    + ("" if v.is_contiguous() else " (not contiguous)"))
                stored = str(v.dtype).replace("torch.", "")
                if v.dtype.is_floating_point:
                    out = np.dtype(np.float64 if v.dtype == torch.float64 else np.float32)
                else:
                    out = np.dtype(stored)
                self.entries[k] = _Entry(k, tuple(v.shape), out, stored, v.reshape(-1))
            elif isinstance(v, (int, float, str, bool, type(None))):
                continue  # e.g. a step counter next to the tensors
            else:
                raise BadCheckpoint(f"{path}: entry {k!r} is a {type(v).__name__}, expected a tensor")
        self._release = _madvise_dontneed()
        self._last = None

    def read(self, e: _Entry, start: int, count: int) -> np.ndarray:
        part = e.ref[start:start + count]
        if part.dtype == self._torch.bool:
            arr = part.view(self._torch.uint8).numpy() != 0  # canonical, as the strict reader gives it
        elif part.dtype.is_floating_point and part.dtype not in (self._torch.float32, self._torch.float64):
            arr = part.float().numpy()
        else:
            arr = part.numpy()  # a view of the mapped file
        self._drop()
        self._last = (part.data_ptr(), count * part.element_size())
        return arr

    def _drop(self) -> None:
        if self._last is not None:
            self._release(*self._last)
            self._last = None

    def close(self) -> None:
        self._drop()
        self.entries = {}


class _ArraySource:
    """Tensors already in memory (a :class:`Checkpoint`, whose values its loader validated)."""

    validated = True

    def __init__(self, ckpt: Checkpoint):
        self.path = ckpt.path
        self.format = ckpt.format
        self.meta = dict(ckpt.meta or {})
        self.state_dict_key = ckpt.state_dict_key
        self.entries = {k: _Entry(k, tuple(v.shape), v.dtype, str(v.dtype), v) for k, v in ckpt.tensors.items()}

    def read(self, e: _Entry, start: int, count: int) -> np.ndarray:
        return np.ascontiguousarray(e.ref).reshape(-1)[start:start + count]

    def close(self) -> None:
        pass


def _chunks(src, e: _Entry, chunk_elems: int, rows: tuple[int, int] | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(row, first element within the row, flat values)`` pieces of ``e``, in file order.

    A piece is either several whole rows (first element 0) or part of one row; it never holds
    more than ``chunk_elems`` elements (except one whole row shorter than that).
    """
    n_rows = e.shape[0] if e.shape else 1
    row = int(np.prod(e.shape[1:], dtype=np.int64)) if len(e.shape) > 1 else 1
    r_lo, r_hi = rows if rows is not None else (0, n_rows)
    if row == 0 or r_hi <= r_lo:
        return
    if row <= chunk_elems:
        step = max(1, chunk_elems // row)
        for r in range(r_lo, r_hi, step):
            r2 = min(r + step, r_hi)
            yield r, 0, src.read(e, r * row, (r2 - r) * row)
    else:
        for r in range(r_lo, r_hi):
            for a in range(0, row, chunk_elems):
                yield r, a, src.read(e, r * row + a, min(chunk_elems, row - a))


# -- validation (the same rules and messages as the in-memory loader) ----------------------

class _Checker:
    """Per-tensor value checks, streamed: finite floats, binary ``*_mask`` tensors."""

    def __init__(self, key: str, dtype: np.dtype, path: str):
        self.key, self.path = key, path
        self.float = dtype.kind == "f"
        self.mask = key.endswith("_mask") and dtype != bool
        self.nan = self.inf = False
        self.bad: np.ndarray | None = None

    def update(self, x: np.ndarray) -> bool:
        """Fold in one chunk; True while the tensor is still valid."""
        ok = True
        if self.float and x.size and not np.isfinite(np.add.reduce(x)):  # a sum is NaN/Inf if any term is
            if not np.isfinite(x).all():
                self.nan |= bool(np.isnan(x).any())
                self.inf = True
                ok = False
        if self.mask and ok:
            nz = np.count_nonzero(x)
            if nz and nz != np.count_nonzero(x == 1):
                vals = np.unique(x[(x != 0) & (x != 1)])[:3]
                self.bad = vals if self.bad is None else np.unique(np.concatenate([self.bad, vals]))[:3]
                ok = False
        return ok

    def raise_if_bad(self) -> None:
        if self.inf:
            bad = "NaN" if self.nan else "Inf"
            raise BadCheckpoint(f"{self.path}: tensor {show(self.key)} contains {bad}; weights must be finite")
        if self.bad is not None:
            raise BadCheckpoint(f"{self.path}: mask {show(self.key)} has values {self.bad.tolist()}; masks must be 0 or 1")


class _ValueError(Exception):
    """Internal: a value check failed somewhere; the canonical message comes from a full scan."""


def _validate_all(src, chunk_elems: int) -> None:
    """The in-memory loader's value validation, in file order, streamed; raises the first error."""
    if not src.entries:
        raise BadCheckpoint(f"{src.path}: the state_dict is empty (no tensors)")
    for e in src.entries.values():
        if e.size == 0:
            continue
        chk = _Checker(e.key, e.dtype, src.path)
        if not (chk.float or chk.mask):
            continue
        for _, _, x in _chunks(src, e, chunk_elems):
            chk.update(x)  # whole tensor: the message names NaN over Inf and its smallest bad values
        chk.raise_if_bad()


# -- structure: the in-memory code on shape-only placeholders -------------------------------

def _stub(shape, dtype) -> np.ndarray:
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def _prunable_layout(entries: Mapping[str, _Entry], path: str) -> dict[str, tuple[str, str | None, _Entry]]:
    """:func:`netgraph.io._checkpoint.prunable_layout` on the entries' shapes, with the entry
    that holds each weight's kept set (the mask, or the values of a plain weight)."""
    from ._checkpoint import prunable_layout

    return {name: (values, mask, entries[mask if mask is not None else values])
            for name, (values, mask) in prunable_layout(entries, path).items()}


class _LazyTensors(Mapping):
    """The state_dict as the structure code sees it: prunable tensors are shape-only
    placeholders, every other tensor is read (whole, validated) when its values are asked for."""

    def __init__(self, src, big: set[str], chunk_elems: int):
        self._src, self._big, self._chunk = src, big, chunk_elems
        self._loaded: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        e = self._src.entries[key]
        if key in self._big:
            return _stub(e.shape, e.dtype)
        if key not in self._loaded:
            chk = _Checker(key, e.dtype, self._src.path)
            arr = np.array(self._src.read(e, 0, e.size), copy=True).reshape(e.shape) if e.size else np.zeros(e.shape, e.dtype)
            if not chk.update(arr.reshape(-1)):
                raise _ValueError(key)
            self._loaded[key] = arr
        return self._loaded[key]

    def __iter__(self):
        return iter(self._src.entries)

    def __len__(self) -> int:
        return len(self._src.entries)

    def __contains__(self, key) -> bool:
        return key in self._src.entries

    def items(self):  # shapes only: the structure code reads values through __getitem__
        return [(k, self._loaded.get(k, _stub(e.shape, e.dtype))) for k, e in self._src.entries.items()]

    def values(self):
        return [v for _, v in self.items()]


_SPEC_KEYS = {"version", "inputs", "sinks", "groups", "blocks", "constants", "warnings"}
_BLOCK_KEYS = {"kind", "name", "src", "dst", "conv_groups", "bias", "note", "rows", "cols"}


def _skeleton(src, chunk_elems: int):
    """The graph exactly as the in-memory path builds it, with empty weighted blocks."""
    from ._infer import graph_from_checkpoint

    path = src.path
    if not src.entries:
        raise BadCheckpoint(f"{path}: the state_dict is empty (no tensors)")
    layout = _prunable_layout(src.entries, path)
    topo = src.meta.get("topology") if src.meta else None
    if topo:
        if not isinstance(topo, Mapping) or set(topo) - _SPEC_KEYS or any(
                not isinstance(b, Mapping) or set(b) - _BLOCK_KEYS for b in topo.get("blocks", [])):
            raise _Fallback("the stored topology has fields this streaming reader does not know")
    big = set()
    prunable = {}
    for name, (vkey, mkey, e) in layout.items():
        big.add(vkey)
        if mkey:
            big.add(mkey)
        prunable[name] = PrunableWeight(name, _stub(e.shape, bool), _stub(e.shape, e.dtype), mkey is not None)
    tensors = _LazyTensors(src, big, chunk_elems)
    dtypes = {k: e.stored for k, e in src.entries.items()}
    ckpt = Checkpoint(path, src.format, tensors, dict(src.meta or {}), None, src.state_dict_key, dtypes)
    object.__setattr__(ckpt, "_prunable", prunable)
    graph = graph_from_checkpoint(ckpt)
    for b in graph.weighted_blocks:
        if b.name not in layout:  # pragma: no cover - graph_from_checkpoint names prunable weights only
            raise _Fallback(f"weighted block {b.name!r} is not a prunable tensor")
    return graph, layout, tensors


# -- the kernels -----------------------------------------------------------------------------

class _BlockStats:
    """O(units) sums of one weighted block, from the forward pass."""

    def __init__(self, b):
        out_ch = b.weight_shape[0]
        self.fwd = np.zeros(out_ch)  # T @ accessible(src)
        self.fconst = np.zeros(out_ch)  # T @ constant(src)
        self.cst = np.zeros(out_ch)  # T @ (constant & ~accessible)(src)
        self.rowsum = np.zeros(out_ch)  # kept taps into each output unit
        self.colsum = np.zeros(b.shape[0])  # kept taps out of each input unit
        self.bwd = None  # coaccessible(dst)ᵀ T, set in the backward pass
        self.fwd_plain = np.zeros(out_ch)  # T @ accessible(src) in the graph without possible skips
        self.bwd_plain = None


def _taps(x: np.ndarray, k: int, a: int, mask: bool) -> tuple[np.ndarray, int]:
    """A piece's tap-count matrix ``T`` (rows, pairs) float and the column of its first pair.

    ``x`` is ``(rows, row_len)`` (whole rows, ``a == 0``) or ``(1, n)`` starting at element ``a``
    of its row.  Masks are already validated 0/1, so a float mask is its own tap matrix.
    """
    if k == 1 and mask and x.dtype in (np.float32, np.float64):
        return x, a
    nz = x != 0
    if k == 1:
        return nz.astype(np.float32), a
    lead = a % k
    if lead or nz.shape[1] % k:
        pad_hi = (-(lead + nz.shape[1])) % k
        nz = np.pad(nz, ((0, 0), (lead, pad_hi)))
    t = np.count_nonzero(nz.reshape(nz.shape[0], -1, k), axis=2).astype(np.float32)
    return t, a // k


def _runs(b, r0: int, r1: int):
    """Row runs of one conv group inside rows ``r0 .. r1``: (lo, hi, first input unit of the group)."""
    opg = b.weight_shape[0] // b.conv_groups
    in_pg = b.weight_shape[1]
    r = r0
    while r < r1:
        g = r // opg
        hi = min(r1, (g + 1) * opg)
        yield r, hi, g * in_pg
        r = hi


def _forward_block(src, b, e: _Entry, is_mask: bool, acc, const, acc_plain, chunk_elems: int,
                   check: _Checker) -> _BlockStats:
    st = _BlockStats(b)
    k = int(np.prod(b.weight_shape[2:], dtype=np.int64)) if len(b.weight_shape) > 2 else 1
    row_len = int(np.prod(b.weight_shape[1:], dtype=np.int64))
    targets = [st.fwd, st.fconst, st.cst] + ([st.fwd_plain] if acc_plain is not None else [])
    vectors = [acc, const, const & ~acc] + ([acc_plain] if acc_plain is not None else [])
    # A vector that is all ones gives the row sums, all zeros gives nothing: only the mixed
    # ones need the product (often none: every unit accessible, every bias non-zero).
    ones = [j for j, v in enumerate(vectors) if v.all()]
    mixed = [j for j, v in enumerate(vectors) if v.any() and not v.all()]
    vecs = np.stack([vectors[j] for j in mixed], axis=1).astype(np.float32) if mixed else None
    for r, a, x in _chunks(src, e, chunk_elems):
        if check is not None and not check.update(x):
            raise _ValueError(e.key)
        nr = x.size // row_len if a == 0 and x.size >= row_len else 1
        t, c0 = _taps(x.reshape(nr, -1), k, a, is_mask)
        dt = np.float32 if x.size <= _EXACT_F32 else np.float64  # every partial sum is an exact integer
        t = t.astype(dt, copy=False)
        nc = t.shape[1]
        for lo, hi, base in _runs(b, r, r + nr):
            tt = t[lo - r:hi - r]
            rs = tt @ np.ones(nc, dt)  # BLAS gemv: faster than a reduction along rows
            st.rowsum[lo:hi] += rs
            for j in ones:
                targets[j][lo:hi] += rs
            if mixed:
                f = tt @ vecs[base + c0:base + c0 + nc].astype(dt, copy=False)  # (rows, mixed)
                for i, j in enumerate(mixed):
                    targets[j][lo:hi] += f[:, i]
            st.colsum[base + c0:base + c0 + nc] += np.ones(hi - lo, dt) @ tt
    return st


def _backward_block(src, b, e: _Entry, is_mask: bool, st: _BlockStats, coacc_dst: np.ndarray, chunk_elems: int) -> np.ndarray:
    """``coacc_dstᵀ T`` per input unit, reading only the rows the column sums cannot answer."""
    n_out = int(coacc_dst.sum())
    if n_out == coacc_dst.size:
        return st.colsum.copy()
    if n_out == 0:
        return np.zeros_like(st.colsum)
    # Read the smaller of the two row sets: the coaccessible rows (sum them) or the others
    # (subtract them from the column sums).  Rows with no kept tap contribute nothing.
    has = st.rowsum > 0
    take_in = coacc_dst & has
    take_out = ~coacc_dst & has
    subtract = take_out.sum() < take_in.sum()
    sel = take_out if subtract else take_in
    total = np.zeros_like(st.colsum)
    k = int(np.prod(b.weight_shape[2:], dtype=np.int64)) if len(b.weight_shape) > 2 else 1
    row_len = int(np.prod(b.weight_shape[1:], dtype=np.int64))
    n_rows = b.weight_shape[0]
    window = max(1, chunk_elems // row_len)  # rows per regular chunk
    weight = sel.astype(np.float32)

    def add(lo: int, hi: int) -> None:
        for r, a, x in _chunks(src, e, chunk_elems, rows=(lo, hi)):
            nr = x.size // row_len if a == 0 and x.size >= row_len else 1
            t, c0 = _taps(x.reshape(nr, -1), k, a, is_mask)
            if x.size > _EXACT_F32:
                t = t.astype(np.float64)
            nc = t.shape[1]
            for lo_, hi_, base in _runs(b, r, r + nr):
                w = weight[lo_:hi_].astype(t.dtype)
                total[base + c0:base + c0 + nc] += w @ t[lo_ - r:hi_ - r]  # exact: integer sums < 2**24

    for lo in range(0, n_rows, window):  # a window with many selected rows is read whole
        hi = min(lo + window, n_rows)
        idx = np.flatnonzero(sel[lo:hi])
        if idx.size == 0:
            continue
        if idx.size * 8 >= hi - lo:
            add(lo, hi)
        else:  # a few rows: read just their runs
            breaks = np.flatnonzero(np.diff(idx) != 1) + 1
            for run in np.split(idx, breaks):
                add(lo + int(run[0]), lo + int(run[-1]) + 1)
    return st.colsum - total if subtract else total


# -- the audit -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamResult:
    """A report and how it was made: ``fallback`` is ``None`` when streamed, else the reason
    the in-memory path was used."""

    report: Any
    fallback: str | None = None
    notes: tuple[str, ...] = ()


class _ShardedSource:
    """A sharded safetensors checkpoint (``*.index.json``): the checks and the order of
    :func:`netgraph.io._formats.load_sharded` (same refusals), then each shard streamed like
    a single file, one after the other — without the whole-model memory budget."""

    def __init__(self, path: str):
        from ._formats import check_shard, check_total_size, read_index

        self.path, self.format, self.state_dict_key = path, "safetensors", None
        index, folder, shards = read_index(path)
        self.shards, self.entries, self.meta = [], {}, {}
        nbytes = 0
        try:
            for shard, keys in shards.items():
                src = _SafetensorsSource(os.path.join(folder, shard))
                self.shards.append(src)
                check_shard(path, shard, src.entries, keys)
                for key, e in src.entries.items():
                    self.entries[key] = _Entry(key, e.shape, e.dtype, e.stored, (src, e))
                    nbytes += e.size * e.ref[1].itemsize
                if src.meta and not self.meta:
                    self.meta = dict(src.meta)
            check_total_size(path, index, nbytes)
        except BaseException:
            self.close()
            raise

    def read(self, e: _Entry, start: int, count: int) -> np.ndarray:
        src, inner = e.ref
        return src.read(inner, start, count)

    def close(self) -> None:
        for src in self.shards:
            src.close()


def _open(path: str):
    from ._checkpoint import _sniff

    if path.endswith(".index.json"):
        return _ShardedSource(path)
    if _sniff(path) == "safetensors":  # opened without blocking, regular files only
        return _SafetensorsSource(path)
    return _TorchSource(path)


def _run(src, chunk_elems: int, source: str):
    """Both passes over an open source; returns the report.  The checks run in the strict
    loader's order: structure (shapes), values (streamed; they win over any later refusal),
    the stored topology, prune-format pairs, the graph."""
    from ._checkpoint import check_structure

    stubs = {k: _stub(e.shape, e.dtype) for k, e in src.entries.items()}
    check_structure(stubs, src.path)
    try:
        if src.meta and "topology" in src.meta:
            from .._spec import _spec_limits, validate_spec

            max_width, max_dense = _spec_limits(stubs)
            validate_spec(src.meta["topology"], src.path, max_width=max_width, max_dense=max_dense)
        graph, layout, tensors = _skeleton(src, chunk_elems)
    except (NetgraphError, _ValueError):
        _validate_all(src, chunk_elems)  # a value error earlier in file order wins, as in memory
        raise
    try:
        return _passes(src, graph, layout, tensors, chunk_elems, source)
    except _ValueError:
        _validate_all(src, chunk_elems)
        raise AssertionError("a value check failed in the stream but not in the full scan")  # pragma: no cover


_SKIP = ":possible-skip"  # identity blocks an inferred chain adds where a skip cannot be ruled out


def _passes(src, graph, layout, tensors, chunk_elems: int, source: str):
    """Forward and backward over the blocks; with possible skips, the plain chain alongside
    (for the count of weights only the skips keep alive, as the in-memory inference reports)."""
    from .._reach import Reachability

    path = src.path
    plain = any(not b.weighted and b.name.endswith(_SKIP) for b in graph.blocks)
    fams = (0, 1) if plain else (0,)

    def in_fam(b, f):
        return f == 0 or not b.name.endswith(_SKIP) or b.weighted

    acc = [{g: np.zeros(graph.groups[g].width, bool) for g in graph.order} for _ in fams]
    const = {g: graph.groups[g].constant.copy() for g in graph.order}
    for f in fams:
        for s_ in graph.sources:
            acc[f][s_][:] = True
    stats: dict[str, _BlockStats] = {}
    done: set[str] = set(tensors._loaded)
    for b in graph.blocks:  # forward: blocks are in topological order of their source
        if not b.weighted:
            for f in fams:
                if in_fam(b, f):
                    acc[f][b.dst] |= b.forward(acc[f][b.src])
            const[b.dst] |= b.forward(const[b.src])
            continue
        vkey, mkey, _ = layout[b.name]
        key = mkey or vkey
        e = src.entries[key]
        st = _forward_block(src, b, e, mkey is not None, acc[0][b.src], const[b.src],
                            acc[1][b.src] if plain else None, chunk_elems,
                            None if getattr(src, "validated", False) else _Checker(key, e.dtype, path))
        done.add(key)
        stats[b.name] = st
        acc[0][b.dst] |= st.fwd > 0
        if plain:
            acc[1][b.dst] |= st.fwd_plain > 0
        const[b.dst] |= st.fconst > 0
    for key, e in src.entries.items():  # every other tensor: values validated, streamed
        if key in done or e.size == 0 or getattr(src, "validated", False):
            continue
        chk = _Checker(key, e.dtype, path)
        if chk.float or chk.mask:
            for _, _, x in _chunks(src, e, chunk_elems):
                if not chk.update(x):
                    raise _ValueError(key)
    coacc = [{g: np.zeros(graph.groups[g].width, bool) for g in graph.order} for _ in fams]
    for f in fams:
        for s_ in graph.sinks:
            coacc[f][s_][:] = True
    for b in reversed(graph.blocks):  # backward
        if not b.weighted:
            for f in fams:
                if in_fam(b, f):
                    coacc[f][b.src] |= b.backward(coacc[f][b.dst])
            continue
        vkey, mkey, _ = layout[b.name]
        e = src.entries[mkey or vkey]
        st = stats[b.name]
        st.bwd = _backward_block(src, b, e, mkey is not None, st, coacc[0][b.dst], chunk_elems)
        coacc[0][b.src] |= st.bwd > 0
        if plain:
            st.bwd_plain = _backward_block(src, b, e, mkey is not None, st, coacc[1][b.dst], chunk_elems)
            coacc[1][b.src] |= st.bwd_plain > 0
    reach = Reachability(graph, acc[0], coacc[0], const)
    if plain:
        extra = 0
        for b in graph.weighted_blocks:
            st = stats[b.name]
            extra += int(round(st.fwd[coacc[0][b.dst]].sum())) - int(round(st.fwd_plain[coacc[1][b.dst]].sum()))
        if extra:
            from . import _infer

            message = getattr(_infer, "revived_warning", None)
            if message is None:
                raise _Fallback("the inferred chain's possible-skip warning has no message helper")
            import dataclasses

            graph = dataclasses.replace(graph, warnings=graph.warnings + (message(extra),))
    return _assemble(graph, reach, stats, source)


def _sketch(graph, stats: Mapping[str, _BlockStats]):
    """The graph with each weighted block's pairs replaced by O(units) pairs that touch the
    same source and destination units (what :func:`~netgraph.unit_states` reads of them)."""
    import dataclasses

    blocks = []
    for b in graph.blocks:
        if b.weighted:
            st = stats[b.name]
            rows, cols = np.flatnonzero(st.colsum > 0), np.flatnonzero(st.rowsum > 0)
            n = max(rows.size, cols.size) if rows.size and cols.size else 0
            k = np.arange(n)
            rows = rows[k % rows.size] if n else rows[:0]
            cols = cols[k % cols.size] if n else cols[:0]
            b = dataclasses.replace(b, rows=rows.astype(np.int64), cols=cols.astype(np.int64),
                                    taps=np.ones(n, np.int64))
        blocks.append(b)
    return dataclasses.replace(graph, blocks=tuple(blocks))


def _assemble(graph, r, stats: Mapping[str, _BlockStats], source: str):
    """The report of :func:`netgraph.audit`, from per-unit sums instead of pair arrays."""
    from .._audit import report_from_counts
    from .._reach import unit_states

    counts = {}
    for b in graph.weighted_blocks:
        st = stats[b.name]
        co = r.coaccessible[b.dst]
        counts[b.name] = {"kept": int(round(st.rowsum.sum())), "accessible": int(round(st.fwd.sum())),
                          "coaccessible": int(round(st.rowsum[co].sum())),
                          "effective": int(round(st.fwd[co].sum())), "constant": int(round(st.cst[co].sum()))}
    return report_from_counts(graph, r, counts, unit_states(_sketch(graph, stats), r), source=source)


def _in_memory(path: str, source: str):
    from .._audit import audit
    from ._infer import graph_from_checkpoint
    from ._repair import read_checkpoint

    ckpt, notes = read_checkpoint(path)
    return audit(graph_from_checkpoint(ckpt), source=source), tuple(notes)


def audit_path(path: str | os.PathLike, *, source: str | None = None, chunk_bytes: int = CHUNK_BYTES) -> StreamResult:
    """Audit a checkpoint file by streaming it (see the module contract).

    Parameters
    ----------
    path : str or PathLike
        A torch.save zip or a safetensors file, or the ``*.index.json`` of a sharded
        checkpoint (its shards are streamed one after the other).  When the file carries no netgraph metadata,
        a sidecar ``path.netgraph.json`` that describes it is used (as ``netgraph audit`` does).
    source : str, optional
        The report's ``source`` (default: ``path``).
    chunk_bytes : int
        Raw bytes per chunk (at least one element).  Any value gives the same report.

    Returns
    -------
    StreamResult
        ``.report`` equals the in-memory audit's report; ``.fallback`` is the reason the
        in-memory path was used, or ``None``; ``.notes`` are the sidecar notes.

    Raises
    ------
    BadCheckpoint, UnsafeCheckpoint, ChainNotInferable
        Exactly as :func:`netgraph.load_checkpoint` and :func:`netgraph.graph_from_checkpoint`.

    Examples
    --------
    >>> import tempfile, os
    >>> from safetensors.numpy import save_file
    >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> save_file({"fc1.weight": np.eye(3, dtype=np.float32), "fc2.weight": np.ones((1, 3), np.float32)}, p)
    >>> r = audit_path(p)
    >>> r.fallback, r.report.summary.kept, r.report.summary.effective
    (None, 6, 6)
    """
    path = os.fsdecode(os.fspath(path))  # as the strict loader names it (bytes names included)
    source = path if source is None else source
    from ._formats import detect

    if detect(path) == "open_lth":  # the masks live in mask.pth beside the model: read both in memory
        report, notes = _in_memory(path, source)
        return StreamResult(report, "an open_lth checkpoint with its mask.pth is read in memory", notes)
    try:
        src = _open(path)
    except _Fallback as why:
        if path.endswith(".index.json"):
            raise BadCheckpoint(f"{path}: a shard holds {why}; sharded checkpoints are read by the streaming "
                                "audit only, which does not read that") from None
        report, notes = _in_memory(path, source)
        return StreamResult(report, str(why), notes)
    notes: tuple[str, ...] = ()
    try:
        if not src.meta:
            from ._write import read_sidecar

            meta, note = read_sidecar(path)
            notes = (note,) if note else ()
            if meta:
                src.meta = dict(meta)
        item = max((e.dtype.itemsize for e in src.entries.values()), default=4)
        chunk_elems = max(1, int(chunk_bytes) // item)
        return StreamResult(_run(src, chunk_elems, source), None, notes)
    except _Fallback as why:
        report, notes = _in_memory(path, source)
        return StreamResult(report, str(why), notes)
    finally:
        src.close()


def stream_audit(path: str | os.PathLike, *, source: str | None = None, chunk_bytes: int = CHUNK_BYTES):
    """The :class:`~netgraph.AuditReport` of :func:`audit_path`."""
    return audit_path(path, source=source, chunk_bytes=chunk_bytes).report


def audit_arrays(ckpt: Checkpoint, *, source: str | None = None, chunk_bytes: int = CHUNK_BYTES):
    """The streaming kernels on a checkpoint already in memory: the same report as
    ``audit(graph_from_checkpoint(ckpt))``, without building pair arrays."""
    src = _ArraySource(ckpt)
    item = max((e.dtype.itemsize for e in src.entries.values()), default=4)
    try:
        return _run(src, max(1, int(chunk_bytes) // item), ckpt.path if source is None else source)
    except _Fallback:
        from .._audit import audit
        from ._infer import graph_from_checkpoint

        return audit(graph_from_checkpoint(ckpt), source=ckpt.path if source is None else source)
