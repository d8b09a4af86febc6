"""The strict reader for safetensors files (no torch needed).

Contract
--------
* The header is checked before anything else is read: its length lies within the file and
  under 100 MB; its JSON nests at most :data:`~netgraph.io._limits.MAX_JSON_DEPTH` deep
  (checked by a flat scan *before* ``json.loads``, whose parser recurses); keys are unique.
* Every entry is ``{"dtype": str, "shape": [int >= 0, ...], "data_offsets": [int, int]}`` and
  nothing else; the dtype is one netgraph reads; the byte range holds exactly
  ``numel * itemsize`` bytes; the ranges tile the data section with no gap and no overlap (the
  safetensors library's own rule), so element counts are bounded by the file's size.
* ``__metadata__`` maps strings to strings; its ``netgraph`` value, when present, is JSON of a
  dict (depth-checked the same way).
* Values are read with numpy, tensor by tensor, into writable arrays: float16 / bfloat16 as
  float32, bool canonicalised (any non-zero byte is ``True``).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
import numpy as np

from ..errors import BadCheckpoint, UnsafeCheckpoint, show
from ._limits import MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_NDIM, check_memory

__all__ = ["SafetensorsHeader", "read_header", "read_tensor", "load_safetensors", "DTYPES", "json_depth_ok"]

# safetensors dtype -> (numpy dtype as stored, torch dtype name)
DTYPES = {
    "F64": ("<f8", "float64"), "F32": ("<f4", "float32"), "F16": ("<f2", "float16"),
    "BF16": ("<u2", "bfloat16"), "I64": ("<i8", "int64"), "I32": ("<i4", "int32"),
    "I16": ("<i2", "int16"), "I8": ("i1", "int8"), "U8": ("u1", "uint8"), "BOOL": ("u1", "bool"),
    "U16": ("<u2", "uint16"), "U32": ("<u4", "uint32"), "U64": ("<u8", "uint64"),
}
# A string token always matches, up to its closing quote or the end of the text (an unclosed
# string must not make every later quote start a new scan: that would be quadratic).
_TOKENS = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)|[\[\]{}]')


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header: entries by name as ``(dtype, shape, start, end)`` with absolute file
    offsets; the raw string metadata; the decoded ``netgraph`` metadata (a dict, or empty)."""

    entries: dict = field(repr=False)
    metadata: dict = field(repr=False)
    netgraph: dict = field(repr=False)
    data_start: int = 0


def json_depth_ok(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of the JSON ``text`` (strings skipped), or ``-1`` once it exceeds ``limit``;
    a flat scan in linear time, safe on input nested 100,000 deep or with unclosed strings.

    >>> json_depth_ok('{"a": [1, "]]]", {"b": []}]}'), json_depth_ok("[" * 100000)
    (4, -1)
    """
    depth = best = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > limit:
                return -1
            best = max(best, depth)
        elif c in "]}":
            depth -= 1
    return best


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_header(fh, size: int, path: str, *, budget: bool = True) -> SafetensorsHeader:
    """Read and check the header of the safetensors file open as ``fh`` (``size`` bytes)."""
    fh.seek(0)
    head = fh.read(8)
    if len(head) < 8:
        raise BadCheckpoint(f"{path}: truncated safetensors file ({size} bytes)")
    (n,) = struct.unpack("<Q", head)
    if n > size - 8:
        raise BadCheckpoint(f"{path}: safetensors header claims {n} bytes but the file has {size}; truncated or corrupt")
    if n > MAX_HEADER_BYTES:
        raise UnsafeCheckpoint(f"{path}: safetensors header of {n:,} bytes; at most {MAX_HEADER_BYTES:,} are read")
    raw = fh.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadCheckpoint(f"{path}: safetensors header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if json_depth_ok(text) < 0:
        raise UnsafeCheckpoint(f"{path}: safetensors header JSON nests more than {MAX_JSON_DEPTH} deep; "
                               "a header needs 3 levels")
    dupes: list[str] = []

    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen:
                dupes.append(k)
            seen[k] = v
        return seen

    try:
        header = json.loads(text, object_pairs_hook=pairs)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise BadCheckpoint(f"{path}: safetensors header is not valid JSON ({str(exc)[:80]})") from None
    if dupes:
        raise BadCheckpoint(f"{path}: safetensors header repeats key {show(dupes[0])}; keys must be unique")
    if not isinstance(header, dict):
        raise BadCheckpoint(f"{path}: safetensors header is a JSON {type(header).__name__}, expected an object")
    metadata, netgraph = _metadata(header.get("__metadata__"), path)
    data_start = 8 + n
    data_len = size - data_start
    entries = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        entries[key] = check_entry(key, info, data_len, path)
    spans = sorted((start, end, key) for key, (_, _, start, end) in entries.items())
    pos = 0
    for start, end, key in spans:
        if start != pos:
            what = "overlaps the previous tensor" if start < pos else f"leaves bytes {pos}..{start} unused"
            raise UnsafeCheckpoint(
                f"{path}: safetensors tensor {show(key)} starts at byte {start} and {what}; the tensors' "
                "byte ranges must tile the data section"
            )
        pos = end
    if pos != data_len:
        raise BadCheckpoint(f"{path}: safetensors tensors cover {pos} of the {data_len} data bytes; truncated or padded")
    if budget:  # reading every tensor at once must fit; the streaming audit holds one chunk (budget=False)
        check_memory(data_len, path)
    entries = {k: (d, s, a + data_start, b + data_start) for k, (d, s, a, b) in entries.items()}
    return SafetensorsHeader(entries, metadata, netgraph, data_start)


def check_entry(key: str, info, data_len: int, path: str) -> tuple[str, tuple, int, int]:
    """Check one header entry (no data read); returns ``(dtype, shape, start, end)``, offsets
    relative to the data section."""
    where = f"{path}: safetensors tensor {show(key)}"
    if not isinstance(info, dict):
        raise BadCheckpoint(f"{where} is a JSON {type(info).__name__}; an entry is an object with dtype, shape, data_offsets")
    extra = sorted(set(info) - {"dtype", "shape", "data_offsets"})
    missing = sorted({"dtype", "shape", "data_offsets"} - set(info))
    if missing:
        raise BadCheckpoint(f"{where} has no {missing[0]}")
    if extra:
        raise BadCheckpoint(f"{where} has an unknown field {show(extra[0])}")
    dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise BadCheckpoint(f"{where} has dtype {show(repr(dtype))}; netgraph reads {', '.join(DTYPES)}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(d) and d >= 0 for d in shape):
        raise BadCheckpoint(f"{where} has shape {show(json.dumps(shape)[:60])}; a shape is a list of at most "
                            f"{MAX_NDIM} integers >= 0")
    if not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs):
        raise BadCheckpoint(f"{where} has data_offsets {show(json.dumps(offs)[:60])}; expected [start, end], two integers")
    start, end = offs
    if not 0 <= start <= end <= data_len:
        raise BadCheckpoint(f"{where} claims bytes {start}..{end} but the data is {data_len} bytes")
    numel = 1
    for d in shape:
        numel *= d
    need = numel * np.dtype(DTYPES[dtype][0]).itemsize
    if end - start != need:
        raise UnsafeCheckpoint(
            f"{where} has shape {tuple(shape)} of {dtype} ({need:,} bytes) but claims bytes {start}..{end} "
            f"({end - start:,}); they must agree"
        )
    return dtype, tuple(shape), start, end


def _metadata(raw, path: str) -> tuple[dict, dict]:
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        bad = next((k for k, v in raw.items() if not isinstance(v, str)), None) if isinstance(raw, dict) else None
        found = f"{show(bad)} is a JSON {type(raw[bad]).__name__}" if bad is not None else f"it is a JSON {type(raw).__name__}"
        raise BadCheckpoint(f"{path}: safetensors __metadata__ must map strings to strings; {found}")
    netgraph = {}
    if "netgraph" in raw:
        if json_depth_ok(raw["netgraph"]) < 0:
            raise UnsafeCheckpoint(f"{path}: safetensors metadata 'netgraph' nests more than {MAX_JSON_DEPTH} deep")
        try:
            netgraph = json.loads(raw["netgraph"])
        except (ValueError, RecursionError):
            raise BadCheckpoint(f"{path}: safetensors metadata 'netgraph' is not JSON") from None
        if not isinstance(netgraph, dict):
            raise BadCheckpoint(f"{path}: safetensors metadata 'netgraph' is a JSON {type(netgraph).__name__}; "
                                "netgraph's metadata is an object")
    return dict(raw), netgraph


def read_tensor(fh, entry: tuple, key: str = "", path: str = "") -> np.ndarray:
    """Read one checked entry ``(dtype, shape, start, end)`` (absolute offsets) as a writable
    numpy array (float16 / bfloat16 → float32; bool canonical)."""
    dtype, shape, start, end = entry
    buf = bytearray(end - start)
    fh.seek(start)
    got = fh.readinto(buf)
    if got != len(buf):
        raise BadCheckpoint(f"{path}: safetensors tensor {show(key)} is truncated")
    stored, name = DTYPES[dtype]
    a = np.frombuffer(buf, dtype=stored).reshape(shape)
    if name == "bfloat16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    if name == "float16":
        return a.astype(np.float32)
    if name == "bool":
        return a != 0
    return a.astype(a.dtype.newbyteorder("="), copy=False)


def load_safetensors(path: str, fh, size: int) -> tuple[dict[str, np.ndarray], dict, dict[str, str], dict]:
    """Read a whole safetensors file: ``(tensors, netgraph meta, stored dtypes, raw metadata)``."""
    header = read_header(fh, size, path)
    tensors, dtypes = {}, {}
    for key, entry in header.entries.items():
        tensors[key] = read_tensor(fh, entry, key, path)
        dtypes[key] = DTYPES[entry[0]][1]
    return tensors, header.netgraph, dtypes, header.metadata
