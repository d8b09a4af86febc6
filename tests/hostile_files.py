"""Builders for hostile checkpoint files, written byte by byte (no torch needed to build them).

* :func:`pickle_bytes` — a protocol-2 pickle of plain values, :class:`T` tensor records,
  :class:`Call` (a global called with arguments) and :class:`Raw` opcodes; iterative where
  depth matters (:func:`deep_list`).
* :func:`torch_archive` — a ``torch.save``-style zip (stored members under one folder).
* :func:`raw_zip` — a zip whose directory can lie (duplicate names, overlapping members,
  a local header that names another member).
* :func:`safetensors_bytes` — a safetensors file from a header dict (or raw JSON) and data.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

_STORAGE = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
            "int64": "LongStorage", "uint8": "ByteStorage", "bool": "BoolStorage", "int8": "CharStorage",
            "qint8": "QInt8Storage"}
_ITEM = {"float32": 4, "float64": 8, "float16": 2, "int64": 8, "uint8": 1, "bool": 1, "int8": 1, "qint8": 1}


@dataclass
class T:
    """A tensor record ``_rebuild_tensor_v2(storage, offset, shape, stride, False, {})``."""

    key: str
    shape: tuple
    stride: tuple | None = None
    offset: int = 0
    dtype: str = "float32"
    numel: int | None = None  # storage elements claimed (default: as many as the view needs)

    def storage_numel(self) -> int:
        if self.numel is not None:
            return self.numel
        if not all(self.shape):
            return 0
        stride = self.stride or _contiguous(self.shape)
        return self.offset + sum((n - 1) * s for n, s in zip(self.shape, stride)) + 1


@dataclass
class Call:
    """``module.name(*args)`` as GLOBAL + args + REDUCE."""

    module: str
    name: str
    args: tuple = ()


@dataclass
class Raw:
    """Opcodes inserted as they are."""

    data: bytes


@dataclass
class Global:
    """A bare GLOBAL (a class or function as a value)."""

    module: str
    name: str


@dataclass
class Archive:
    """Knobs of :func:`torch_archive`."""

    storages: dict = field(default_factory=dict)  # key -> bytes


def _contiguous(shape) -> tuple:
    stride, acc = [], 1
    for n in reversed(shape):
        stride.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(stride))


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def _str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _emit(obj, out: list) -> None:
    if isinstance(obj, Raw):
        out.append(obj.data)
    elif obj is None:
        out.append(b"N")
    elif obj is True:
        out.append(b"\x88")
    elif obj is False:
        out.append(b"\x89")
    elif isinstance(obj, int):
        out.append(_int(obj))
    elif isinstance(obj, float):
        out.append(b"G" + struct.pack(">d", obj))
    elif isinstance(obj, str):
        out.append(_str(obj))
    elif isinstance(obj, bytes):
        _emit(Call("_codecs", "encode", (obj.decode("latin1"), "latin1")), out)
    elif isinstance(obj, tuple):
        out.append(b"(")
        for x in obj:
            _emit(x, out)
        out.append(b"t")
    elif isinstance(obj, list):
        out.append(b"]")
        for x in obj:
            _emit(x, out)
            out.append(b"a")
    elif isinstance(obj, dict):
        if isinstance(obj, OrderedDict):
            out.append(_global("collections", "OrderedDict") + b")R")
        else:
            out.append(b"}")
        for k, v in obj.items():
            _emit(k, out)
            _emit(v, out)
            out.append(b"s")
    elif isinstance(obj, Call):
        out.append(_global(obj.module, obj.name))
        _emit(tuple(obj.args), out)
        out.append(b"R")
    elif isinstance(obj, Global):
        out.append(_global(obj.module, obj.name))
    elif isinstance(obj, T):
        stride = obj.stride if obj.stride is not None else _contiguous(obj.shape)
        out.append(_global("torch._utils", "_rebuild_tensor_v2") + b"(")
        out.append(b"(" + _str("storage") + _global("torch", _STORAGE[obj.dtype]) + _str(obj.key)
                   + _str("cpu") + _int(obj.storage_numel()) + b"tQ")
        _emit(obj.offset, out)
        _emit(tuple(obj.shape), out)
        _emit(tuple(stride), out)
        out.append(b"\x89" + _global("collections", "OrderedDict") + b")R" + b"tR")
    else:
        raise TypeError(type(obj))


def pickle_bytes(obj) -> bytes:
    """A protocol-2 pickle of ``obj`` (see the module docstring)."""
    out: list[bytes] = [b"\x80\x02"]
    _emit(obj, out)
    out.append(b".")
    return b"".join(out)


def deep_list(depth: int) -> Raw:
    """A list nested ``depth`` deep, as opcodes (no recursion to build or write it)."""
    return Raw(b"]" * (depth + 1) + b"a" * depth)


def storages_for(obj, skip=()) -> dict:
    """Zero-filled storage bytes for every :class:`T` in ``obj`` (found iteratively), except
    the keys in ``skip``."""
    found: dict[str, bytes] = {}
    todo = [obj]
    while todo:
        o = todo.pop()
        if isinstance(o, T) and o.key not in skip:
            found.setdefault(o.key, bytes(o.storage_numel() * _ITEM[o.dtype]))
        elif isinstance(o, dict):
            todo.extend(o.keys())
            todo.extend(o.values())
        elif isinstance(o, (list, tuple)):
            todo.extend(o)
        elif isinstance(o, Call):
            todo.extend(o.args)
    return found


def torch_archive(obj, storages: dict | None = None, *, prefix: str = "archive",
                  members: list | None = None) -> bytes:
    """A torch.save-style zip of the pickle of ``obj`` and its storages.  ``storages``
    overrides the bytes of some (default: zeros of the claimed size); ``members`` appends
    extra ``(name, bytes)`` members as they are."""
    data = dict(storages_for(obj, skip=set(storages or {})))
    data.update(storages or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", pickle_bytes(obj))
        zf.writestr(f"{prefix}/byteorder", b"little")
        for key, b in data.items():
            zf.writestr(f"{prefix}/data/{key}", b)
        zf.writestr(f"{prefix}/version", b"3\n")
        for name, b in members or []:
            zf.writestr(name, b)
    return buf.getvalue()


def raw_zip(members: list, *, central: list | None = None) -> bytes:
    """A stored zip written by hand: ``members`` is ``[(name, bytes)]`` in file order (names
    may repeat); ``central`` optionally lists the directory as ``[(name, member index,
    size or None, local name or None)]`` to make it lie (offsets of another member, sizes that
    run past the member, a local header naming something else)."""
    out = bytearray()
    offsets = []
    for name, data in members:
        nb = name.encode()
        offsets.append(len(out))
        crc = zlib.crc32(data)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, 0, 0, 0, crc, len(data), len(data), len(nb), 0)
        out += nb + data
    cd = bytearray()
    entries = central or [(name, i, None, None) for i, (name, _) in enumerate(members)]
    for entry in entries:
        name, idx, size, local_name = entry[:4]
        offset = entry[4] if len(entry) > 4 else offsets[idx]
        data = members[idx][1]
        size = len(data) if size is None else size
        nb = name.encode()
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x800, 0, 0, 0, zlib.crc32(data), size, size,
                          len(nb), 0, 0, 0, 0, 0, offset)
        cd += nb
        if local_name is not None:  # rewrite the member's local header name (same length)
            ln = local_name.encode()
            assert len(ln) == len(members[idx][0].encode())
            start = offsets[idx] + 30
            out[start:start + len(ln)] = ln
    start_cd = len(out)
    out += cd
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), start_cd, 0)
    return bytes(out)


def local_header(name: str, data: bytes) -> bytes:
    """A stored member's local header followed by its data (to hide a member inside another)."""
    nb = name.encode()
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                       len(nb), 0) + nb + data


def safetensors_bytes(header, data: bytes = b"") -> bytes:
    """A safetensors file: 8-byte length, the header (a dict, or JSON text as it is), data."""
    h = header.encode() if isinstance(header, str) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data
