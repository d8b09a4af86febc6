"""Limits every reader applies before it allocates anything, and the one rule for a strided
tensor's geometry.

Contract
--------
* Element counts are never trusted: a tensor is read only when its bytes are in the file
  (its storage is a zip member / safetensors range of exactly the claimed size) and its view
  neither expands (stride 0) nor reads an element twice, so what is allocated is bounded by
  the file's size.  :func:`check_memory` then compares that bound with the memory available.
* Containers (pickled dicts/lists/tuples, JSON headers) are bounded in nesting depth and in
  number of objects; every walk over them is iterative.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import BadCheckpoint, UnsafeCheckpoint

__all__ = [
    "MAX_DEPTH",
    "MAX_OBJECTS",
    "MAX_NDIM",
    "MAX_JSON_DEPTH",
    "MAX_HEADER_BYTES",
    "MAX_PICKLE_BYTES",
    "check_strided",
    "check_memory",
    "available_memory",
]

MAX_DEPTH = 64  # container nesting of a pickled checkpoint (Lightning's is under 10)
MAX_OBJECTS = 2_000_000  # objects one pickle may build (a state_dict needs ~10 per tensor)
MAX_NDIM = 8
MAX_JSON_DEPTH = 32  # JSON nesting in a safetensors header / netgraph metadata (a spec needs 5)
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
MAX_PICKLE_BYTES = 512 * 2**20
# Reading a tensor may hold the stored bytes, a float32 copy and masks at once.
MEMORY_FACTOR = 4


def check_strided(shape: Sequence[int], stride: Sequence[int], offset: int, storage_numel: int,
                  where: str) -> int:
    """Check one strided view of a storage; return its number of elements.

    The view must index each storage element at most once (no stride-0 expansion, no
    self-overlap: sorted by stride, each stride exceeds the span of the smaller ones) and lie
    inside the storage.  Raises :class:`UnsafeCheckpoint` naming ``where``.

    >>> check_strided((2, 3), (3, 1), 0, 6, "w")
    6
    >>> check_strided((1, 100000000), (1, 0), 0, 1, "w")
    Traceback (most recent call last):
    ...
    netgraph.errors.UnsafeCheckpoint: w: stride 0 in dimension 1 (size 100000000) repeats one stored value 100000000 times; netgraph reads tensors whose every element is stored (save a .contiguous() copy)
    """
    if len(shape) != len(stride):
        raise BadCheckpoint(f"{where}: shape {tuple(shape)} and stride {tuple(stride)} differ in length")
    if len(shape) > MAX_NDIM:
        raise BadCheckpoint(f"{where}: {len(shape)} dimensions; at most {MAX_NDIM} are read")
    for d, (n, s) in enumerate(zip(shape, stride)):
        if not _is_int(n) or n < 0:
            raise BadCheckpoint(f"{where}: dimension {d} has size {n!r}; sizes are integers >= 0")
        if not _is_int(s) or s < 0:
            raise BadCheckpoint(f"{where}: dimension {d} has stride {s!r}; strides are integers >= 0")
    if not _is_int(offset) or offset < 0:
        raise BadCheckpoint(f"{where}: storage offset {offset!r}; it must be an integer >= 0")
    numel = 1
    for n in shape:
        numel *= n
    contiguous, acc = True, 1
    for n, s in zip(reversed(shape), reversed(stride)):
        if n > 1 and s != acc:
            contiguous = False
            break
        acc *= n
    if contiguous and numel:  # the common case: each element once, in order
        if offset + numel > storage_numel:
            raise UnsafeCheckpoint(
                f"{where}: shape {tuple(shape)} at offset {offset} needs {offset + numel} stored elements "
                f"but its storage holds {storage_numel}"
            )
        return numel
    if numel == 0:
        if offset > storage_numel:
            raise UnsafeCheckpoint(f"{where}: storage offset {offset} lies past its storage of {storage_numel} elements")
        return 0
    span = 0  # highest element index the dims seen so far reach
    dims = sorted(((s, n, d) for d, (n, s) in enumerate(zip(shape, stride)) if n > 1))
    for s, n, d in dims:
        if s == 0:
            raise UnsafeCheckpoint(
                f"{where}: stride 0 in dimension {d} (size {n}) repeats one stored value {n} times; "
                "netgraph reads tensors whose every element is stored (save a .contiguous() copy)"
            )
        if s <= span:
            raise UnsafeCheckpoint(
                f"{where}: strides {tuple(stride)} for shape {tuple(shape)} read some stored values more "
                "than once; netgraph reads tensors whose every element is stored once (save a .contiguous() copy)"
            )
        span += (n - 1) * s
    if offset + span + 1 > storage_numel:
        raise UnsafeCheckpoint(
            f"{where}: shape {tuple(shape)} with strides {tuple(stride)} at offset {offset} needs "
            f"{offset + span + 1} stored elements but its storage holds {storage_numel}"
        )
    return numel


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def available_memory() -> int:
    """Bytes this process can still allocate: ``MemAvailable`` (Linux), capped by
    ``RLIMIT_AS`` when one is set; a large number where neither is known."""
    avail = None
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 62
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            avail = min(avail, soft)
    except (ImportError, OSError, ValueError):
        pass
    return avail


def check_memory(nbytes: int, path: str) -> None:
    """Refuse to read ``nbytes`` of tensor data when that would not fit in memory."""
    need = nbytes * MEMORY_FACTOR
    avail = available_memory()
    if need > avail:
        raise UnsafeCheckpoint(
            f"{path}: reading its {nbytes / 2**30:.2f} GiB of tensors needs about {need / 2**30:.1f} GiB "
            f"but {avail / 2**30:.1f} GiB of memory is available"
        )
