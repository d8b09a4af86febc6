"""The strict reader for ``torch.save`` zip archives.

Contract
--------
Nothing in the file is trusted, and nothing is allocated from a size the file claims before
the claim is checked against bytes that are really there.  In order:

1. :func:`open_regular` opens the path without blocking and refuses anything but a regular
   file (a FIFO would hang, a device never ends).
2. :func:`check_zip` checks the archive's directory so that every zip reader sees the same
   members: unique names (two ``data.pkl`` or two ``data/0`` would let torch and Python's
   ``zipfile`` read different bytes), one top-level folder, stored (not compressed) members,
   each local header agreeing with its directory entry, no member overlapping another or the
   directory, nothing prepended.
3. :func:`scan_pickle` runs ``data.pkl`` on a small pickle machine that builds nothing but
   plain values and *tensor headers* (storage, dtype, offset, shape, stride).  It accepts only
   the opcodes and globals a ``torch.save`` of tensors and plain containers writes; sparse,
   quantized, meta, nested and subclass tensors, and every other global, are refused before
   torch sees them.  Each tensor header is checked (:func:`netgraph.io._limits.check_strided`):
   its storage is a member of exactly the claimed size, the view reads each stored element at
   most once, and views of one storage are identical (tied weights) or disjoint.  Containers are
   bounded in depth and number, keys are ``str`` (``int`` below the top: optimizer state).
4. Only then :func:`load_torch_file` calls ``torch.load(weights_only=True, mmap=True)`` on the
   same open file (``/proc/self/fd/N``), and checks every loaded tensor again (dense, strided, CPU, an allowed dtype).

Every refusal is a :class:`~netgraph.errors.BadCheckpoint` (or ``UnsafeCheckpoint``) with one
line that names the file, the tensor or member, the rule and what was found.
"""

from __future__ import annotations

import codecs
import os
import pickletools
import stat
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadCheckpoint, UnsafeCheckpoint, show
from ._limits import MAX_DEPTH, MAX_OBJECTS, MAX_PICKLE_BYTES, check_memory, check_strided

__all__ = [
    "open_regular",
    "check_zip",
    "ZipLayout",
    "scan_pickle",
    "PickleScan",
    "TensorHeader",
    "load_torch_file",
    "ALLOWED_DTYPES",
]

# dtype name -> bytes per element: the real dtypes netgraph reads.
ALLOWED_DTYPES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "uint16": 2, "uint32": 4, "uint64": 8,
}
_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}
_SPARSE = ("a sparse tensor; netgraph reads dense (strided) tensors only, because torch does not "
           "check a sparse tensor's indices when loading: save it with .to_dense()")
_REFUSED_GLOBALS = {
    "torch._utils._rebuild_sparse_tensor": _SPARSE,
    "torch.serialization._get_layout": _SPARSE,
    "torch._utils._rebuild_qtensor": "a quantized tensor; netgraph reads real-valued weights: save .dequantize()",
    "torch._utils._rebuild_meta_tensor_no_storage": "a meta tensor (a shape without values); it holds no weights",
    "torch._utils._rebuild_nested_tensor": "a nested tensor; netgraph reads dense (strided) tensors only",
    "torch._utils._rebuild_wrapper_subclass": "a tensor subclass; netgraph reads plain dense tensors only",
    "torch._utils._rebuild_device_tensor_from_numpy": "a tensor rebuilt from a numpy array; re-save it as a plain tensor",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "a device tensor wrapper; re-save it as a plain CPU tensor",
    "torch._utils._rebuild_parameter_with_state": "a Parameter with extra state; save the state_dict (plain tensors)",
    "torch._utils._rebuild_tensor": "a legacy tensor record; re-save it with a current torch",
    "torch.per_tensor_affine": "a quantized tensor; netgraph reads real-valued weights: save .dequantize()",
    "torch.per_channel_affine": "a quantized tensor; netgraph reads real-valued weights: save .dequantize()",
    "torch.per_channel_affine_float_qparams": "a quantized tensor; netgraph reads real-valued weights",
}
for _q in ("QInt8Storage", "QUInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage"):
    _REFUSED_GLOBALS[f"torch.{_q}"] = "a quantized tensor; netgraph reads real-valued weights: save .dequantize()"
for _c in ("ComplexFloatStorage", "ComplexDoubleStorage", "ComplexHalfStorage"):
    _REFUSED_GLOBALS[f"torch.{_c}"] = "a complex tensor; netgraph reads real weights"
for _layout in ("sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc"):
    _REFUSED_GLOBALS[f"torch.{_layout}"] = _SPARSE
_TORCH_DTYPE_NAMES = {
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "uint16", "uint32", "uint64", "complex64", "complex128", "complex32", "qint8", "quint8", "qint32",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2", "cfloat", "cdouble", "half", "float", "double", "long", "int", "short",
}
_OPCODES = {  # what torch.save writes (and torch's weights_only unpickler reads)
    "PROTO", "STOP", "MARK", "NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2", "LONG1",
    "BINFLOAT", "BINUNICODE", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST",
    "APPEND", "APPENDS", "EMPTY_DICT", "SETITEM", "SETITEMS", "EMPTY_SET", "BINPUT", "LONG_BINPUT",
    "BINGET", "LONG_BINGET", "GLOBAL", "REDUCE", "BUILD", "BINPERSID",
}


# -- 1. the file --------------------------------------------------------------------------

def open_regular(path: str):
    """Open ``path`` for reading without blocking; refuse anything but a regular file.

    Returns ``(binary file object, size)``.  The caller closes the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BadCheckpoint(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadCheckpoint(f"{path}: is a directory, expected a checkpoint file") from None
    except OSError as exc:
        raise BadCheckpoint(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise BadCheckpoint(f"{path}: is a directory, expected a checkpoint file")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                    "a character device" if stat.S_ISCHR(st.st_mode) else
                    "a block device" if stat.S_ISBLK(st.st_mode) else
                    "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise BadCheckpoint(f"{path}: is {kind}; netgraph reads checkpoints from regular files only")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


# -- 2. the zip directory -----------------------------------------------------------------

@dataclass(frozen=True)
class ZipLayout:
    """A checked torch archive: its top folder and every member's ``(data_offset, size)``."""

    prefix: str
    members: dict = field(repr=False)  # name -> (absolute data offset, size)

    def pickle_name(self) -> str:
        return f"{self.prefix}/data.pkl"


def check_zip(fh, size: int, path: str) -> ZipLayout:
    """Check a ``torch.save`` archive's directory (see the module contract); returns its layout."""
    try:
        fh.seek(0)
        endrec = zipfile._EndRecData(fh)  # the same end record zipfile and miniz use
        fh.seek(0)
        zf = zipfile.ZipFile(fh)
        infos = zf.infolist()
        start_dir = zf.start_dir
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError,
            UnicodeDecodeError, OverflowError) as exc:
        raise BadCheckpoint(f"{path}: corrupt or truncated zip archive ({_short(exc)})") from None
    if not endrec:
        raise BadCheckpoint(f"{path}: corrupt or truncated zip archive (no end of central directory)")
    concat = endrec[zipfile._ECD_LOCATION] - endrec[zipfile._ECD_SIZE] - endrec[zipfile._ECD_OFFSET]
    if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # torch writes zip64 records
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    if concat != 0:
        raise UnsafeCheckpoint(f"{path}: the zip directory's offsets are shifted by {concat} bytes "
                               "(data prepended or a lying end record); readers would disagree on the members")
    if not infos:
        raise BadCheckpoint(f"{path}: an empty zip archive, not a torch.save file")
    names: set[str] = set()
    for info in infos:
        if info.orig_filename != info.filename or "\x00" in info.orig_filename:
            raise UnsafeCheckpoint(f"{path}: zip member name {show(info.orig_filename)} holds a NUL byte or "
                                   "a backslash; readers would disagree on it")
        if info.filename in names:
            raise UnsafeCheckpoint(
                f"{path}: zip member {show(info.filename)} appears twice; torch and Python's zipfile "
                "would read different copies, so the file means different things to different readers"
            )
        names.add(info.filename)
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        raise UnsafeCheckpoint(
            f"{path}: a TorchScript archive (it contains code); give a state_dict saved with torch.save"
        )
    first = infos[0].filename
    prefix = first.split("/", 1)[0] if "/" in first else ""
    pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if not prefix or f"{prefix}/data.pkl" not in names:
        if not pkls:
            raise BadCheckpoint(f"{path}: a zip archive without data.pkl, not a torch.save file")
        raise UnsafeCheckpoint(f"{path}: data.pkl is not in the archive's first folder {show(prefix)}; "
                               "torch would look for it there")
    stray = sorted(n for n in names if not n.startswith(prefix + "/"))
    if stray:
        raise UnsafeCheckpoint(f"{path}: zip member {show(stray[0])} is outside the archive's folder "
                               f"{show(prefix)}; a torch.save archive has one folder")
    if len(pkls) > 1:
        other = sorted(p for p in pkls if p != f"{prefix}/data.pkl")[0]
        raise UnsafeCheckpoint(f"{path}: the archive holds a second pickle {show(other)}; a torch.save "
                               "archive has exactly one data.pkl")
    members: dict[str, tuple[int, int]] = {}
    spans = []
    for info in infos:
        where = f"{path}: zip member {show(info.filename)}"
        if info.flag_bits & 0x1:
            raise UnsafeCheckpoint(f"{where} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise UnsafeCheckpoint(
                f"{where} is compressed; torch.save stores members "
                "uncompressed, and a compressed one can inflate without bound"
            )
        if info.compress_size != info.file_size:
            raise UnsafeCheckpoint(f"{where} claims {info.file_size} bytes but stores {info.compress_size}")
        off = info.header_offset
        if off < 0 or off + 30 > start_dir:
            raise BadCheckpoint(f"{where} starts at byte {off}, outside the {start_dir} bytes before the zip directory")
        fh.seek(off)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise BadCheckpoint(f"{where}: no local header at byte {off}; corrupt or truncated zip archive")
        method = struct.unpack("<H", local[8:10])[0]
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        local_name = fh.read(name_len)
        if local_name != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace"):
            raise UnsafeCheckpoint(f"{where}: its local header names {show(local_name.decode('utf-8', 'replace'))}; "
                                   "the directory and the header must agree")
        if method != zipfile.ZIP_STORED:
            raise UnsafeCheckpoint(f"{where}: its local header says compressed (method {method})")
        data = off + 30 + name_len + extra_len
        end = data + info.file_size
        if end > start_dir:
            raise UnsafeCheckpoint(
                f"{where} claims bytes {data}..{end}, past the start of the zip directory at {start_dir}; "
                "truncated, or its data would be read from other members or headers"
            )
        members[info.filename] = (data, info.file_size)
        spans.append((off, end, info.filename))
    spans.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise UnsafeCheckpoint(
                f"{path}: zip members {show(an)} (bytes {a0}..{a1}) and {show(bn)} (from byte {b0}) overlap; "
                "one member's bytes would be read as another's"
            )
    bo = members.get(f"{prefix}/byteorder")
    if bo is not None:
        fh.seek(bo[0])
        order = fh.read(min(bo[1], 16))
        if order != b"little":
            raise BadCheckpoint(f"{path}: byteorder {order!r}; netgraph reads little-endian archives only")
    if members[f"{prefix}/data.pkl"][1] > MAX_PICKLE_BYTES:
        raise UnsafeCheckpoint(f"{path}: data.pkl is {members[f'{prefix}/data.pkl'][1]} bytes; "
                               f"at most {MAX_PICKLE_BYTES} are read")
    return ZipLayout(prefix, members)


# -- 3. the pickle ------------------------------------------------------------------------

@dataclass
class TensorHeader:
    """A tensor as the pickle describes it, before any data is read."""

    storage: str  # the storage's key (zip member data/<key>)
    dtype: str
    offset: int
    shape: tuple
    stride: tuple
    numel: int
    where: str = ""  # where it sits in the loaded object, filled in by the walk

    @property
    def nbytes(self) -> int:
        return self.numel * ALLOWED_DTYPES[self.dtype]


@dataclass(frozen=True)
class PickleScan:
    """What :func:`scan_pickle` found: every tensor header and the bytes of the storages used."""

    tensors: list
    storage_bytes: int


class _Global:
    __slots__ = ("name", "kind", "value")

    def __init__(self, name, kind, value=None):
        self.name, self.kind, self.value = name, kind, value


class _Refused:
    """A value that stands for something netgraph will not read (sparse, quantized, ...)."""

    __slots__ = ("reason",)

    def __init__(self, reason):
        self.reason = reason


class _Storage:
    __slots__ = ("key", "dtype", "numel", "refused")

    def __init__(self, key, dtype, numel, refused=None):
        self.key, self.dtype, self.numel, self.refused = key, dtype, numel, refused


class _Atom:
    """A dtype or device value (allowed as data, e.g. in a config)."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _resolve_global(module: str, name: str, path: str) -> _Global:
    module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
    full = f"{module}.{name}"
    if full == "torch._utils._rebuild_tensor_v2":
        return _Global(full, "v2")
    if full == "torch._utils._rebuild_tensor_v3":
        return _Global(full, "v3")
    if full == "torch._utils._rebuild_parameter":
        return _Global(full, "parameter")
    if full == "collections.OrderedDict":
        return _Global(full, "odict")
    if full == "torch.Size":
        return _Global(full, "size")
    if full == "_codecs.encode":
        return _Global(full, "encode")
    if full == "builtins.set":
        return _Global(full, "set")
    if full == "torch.device":
        return _Global(full, "device")
    if module == "torch" and name in _STORAGE_DTYPES:
        return _Global(full, "storage", _STORAGE_DTYPES[name])
    if full == "torch.storage.UntypedStorage":
        return _Global(full, "storage", "uint8")
    if full in _REFUSED_GLOBALS:
        return _Global(full, "refused", _REFUSED_GLOBALS[full])
    if module == "torch" and name in _TORCH_DTYPE_NAMES:
        return _Global(full, "dtype", name)
    raise UnsafeCheckpoint(
        f"{path}: refused: loading it would need to run code or build objects other than tensors "
        f"(the pickle names {show(full)}); netgraph never unpickles code"
    )


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text if len(text) <= 100 else text[:97] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def scan_pickle(data: bytes, layout: ZipLayout, path: str, *, budget: bool = True) -> tuple[Any, PickleScan]:
    """Run ``data.pkl`` on a non-executing pickle machine; check every tensor header.

    Returns ``(value, scan)``: the plain value the pickle describes, with each tensor replaced
    by its :class:`TensorHeader`, and the scan.  No tensor data is read: storages are checked
    against their members' sizes in ``layout``.
    """
    try:
        root = _run_pickle(data, layout, path)
    except BadCheckpoint:
        raise
    except RecursionError:  # pragma: no cover - the machine is iterative
        raise BadCheckpoint(f"{path}: data.pkl nests too deeply") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error, UnicodeError,
            EOFError, OverflowError, MemoryError) as exc:
        raise BadCheckpoint(f"{path}: data.pkl is not a valid torch.save pickle ({_short(exc)})") from None
    tensors = _walk(root, path)
    used: dict[str, list[TensorHeader]] = {}
    for t in tensors:
        used.setdefault(t.storage, []).append(t)
    total = 0
    for key, views in used.items():
        total += layout.members[f"{layout.prefix}/data/{key}"][1]
        _check_disjoint(views, path)
    if budget:  # all storages read at once must fit; the streaming audit holds one chunk (budget=False)
        check_memory(total, path)
    return root, PickleScan(tensors, total)


def _run_pickle(data: bytes, layout: ZipLayout, path: str):
    stack: list = []
    metastack: list = []
    memo: dict = {}
    storages: dict[str, _Storage] = {}
    tdepth: dict[int, int] = {}  # id(tuple) -> its tuple nesting (hashing a deep tuple overflows C's stack)
    built = 0
    first = True
    for op, arg, pos in pickletools.genops(data):
        name = op.name
        if first:
            first = False
            if name != "PROTO" or arg != 2:
                raise BadCheckpoint(f"{path}: data.pkl is not a protocol-2 pickle (torch.save writes protocol 2)")
            continue
        if name not in _OPCODES:
            raise UnsafeCheckpoint(f"{path}: data.pkl uses pickle opcode {name} at byte {pos}, which torch.save "
                                   "does not write; refused")
        built += 1
        if built > MAX_OBJECTS:
            raise UnsafeCheckpoint(f"{path}: data.pkl builds more than {MAX_OBJECTS:,} objects; refused")
        if name in ("BINPUT", "LONG_BINPUT"):  # the most frequent opcodes first
            memo[arg] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "STOP":
            if len(stack) != 1 or metastack:
                raise BadCheckpoint(f"{path}: data.pkl ends with {len(stack)} values on the stack")
            return stack.pop()
        elif name == "MARK":
            metastack.append(stack)
            stack = []
        elif name in ("NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT",
                      "BINUNICODE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}.get(name, arg))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_SET":
            stack.append(set())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                raise IndexError("stack underflow")
            items = _tuple(stack[-n:], tdepth, path)
            del stack[-n:]
            stack.append(items)
        elif name in ("TUPLE", "APPENDS", "SETITEMS"):
            items = stack
            stack = metastack.pop()
            if name == "TUPLE":
                stack.append(_tuple(items, tdepth, path))
            elif name == "APPENDS":
                if type(stack[-1]) is not list:
                    raise TypeError("APPENDS to a non-list")
                stack[-1].extend(items)
            else:
                target = stack[-1]
                if type(target) not in (dict, OrderedDict) or len(items) % 2:
                    raise TypeError("SETITEMS to a non-dict")
                for i in range(0, len(items), 2):
                    target[_key(items[i])] = items[i + 1]
        elif name == "APPEND":
            item = stack.pop()
            if type(stack[-1]) is not list:
                raise TypeError("APPEND to a non-list")
            stack[-1].append(item)
        elif name == "SETITEM":
            v, k = stack.pop(), stack.pop()
            if type(stack[-1]) not in (dict, OrderedDict):
                raise TypeError("SETITEM to a non-dict")
            stack[-1][_key(k)] = v
        elif name == "GLOBAL":
            module, _, gname = arg.partition(" ")
            stack.append(_resolve_global(module, gname, path))
        elif name == "BINPERSID":
            stack.append(_persistent(stack.pop(), layout, storages, path))
        elif name == "REDUCE":
            args = stack.pop()
            func = stack[-1]
            if not isinstance(func, _Global) or not isinstance(args, tuple):
                raise TypeError("REDUCE of a non-function")
            stack[-1] = _reduce(func, args, path)
        elif name == "BUILD":
            state = stack.pop()
            inst = stack[-1]
            if type(inst) is not OrderedDict or type(state) is not dict or \
                    not all(isinstance(k, str) for k in state):
                raise TypeError("BUILD of something other than an OrderedDict's attributes")
            for k, v in state.items():
                if k != "_metadata":
                    raise TypeError(f"OrderedDict attribute {k!r}")
                inst._metadata = v  # state_dict version info (BatchNorm's load_state_dict reads it)
        else:  # pragma: no cover - _OPCODES lists exactly the branches above
            raise TypeError(f"opcode {name}")
    raise EOFError("no STOP")


def _tuple(items, tdepth: dict, path: str) -> tuple:
    """A tuple of ``items`` whose tuple-in-tuple nesting is bounded: CPython hashes (and so
    uses as a key) nested tuples recursively in C, and a tuple nested 1,000,000 deep crashes
    the process (SIGSEGV) when hashed."""
    t = tuple(items)
    depth = 1 + max((tdepth.get(id(x), 1) for x in t if type(x) is tuple), default=0)
    if depth > MAX_DEPTH:
        raise UnsafeCheckpoint(f"{path}: data.pkl nests tuples more than {MAX_DEPTH} deep; refused")
    tdepth[id(t)] = depth
    return t


def _key(k):
    if isinstance(k, (list, dict, set)):
        raise TypeError(f"an unhashable {type(k).__name__} as a dict key")
    return k


def _persistent(pid, layout: ZipLayout, storages: dict, path: str) -> _Storage:
    if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
        raise UnsafeCheckpoint(f"{path}: data.pkl loads a persistent object {show(repr(pid)[:60])}; "
                               "only storages are read")
    _, stype, key, location, numel = pid
    if not isinstance(stype, _Global) or stype.kind not in ("storage", "refused"):
        raise TypeError("a storage of an unknown type")
    if not isinstance(key, str) or not isinstance(location, str) or type(numel) is not int or numel < 0:
        raise TypeError("a malformed storage record")
    if stype.kind == "refused":
        return _Storage(key, None, numel, stype.value)
    dtype = stype.value
    member = f"{layout.prefix}/data/{key}"
    where = f"{path}: storage {show(key)}"
    if member not in layout.members:
        raise BadCheckpoint(f"{where} has no zip member {show(member)}; truncated or corrupt")
    nbytes = numel * ALLOWED_DTYPES[dtype]
    size = layout.members[member][1]
    if nbytes != size:
        raise UnsafeCheckpoint(
            f"{where} claims {numel:,} {dtype} elements ({nbytes:,} bytes) but its member holds {size:,} bytes; "
            "a storage must be exactly its member"
        )
    prev = storages.get(key)
    if prev is not None and (prev.dtype != dtype or prev.numel != numel):
        raise UnsafeCheckpoint(f"{where} is read once as {prev.numel} {prev.dtype} and once as {numel} {dtype}")
    st = storages.setdefault(key, _Storage(key, dtype, numel))
    return st


def _reduce(func: _Global, args: tuple, path: str):
    kind = func.kind
    if kind == "refused":
        return _Refused("is " + func.value)
    if kind == "odict":
        if args:
            raise TypeError("OrderedDict with arguments")
        return OrderedDict()
    if kind == "size":
        if len(args) != 1 or not isinstance(args[0], (tuple, list)) or not all(
                type(x) is int for x in args[0]):
            raise TypeError("torch.Size of non-integers")
        return tuple(args[0])
    if kind == "encode":
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
            raise TypeError("_codecs.encode other than latin1 bytes")
        return codecs.encode(args[0], "latin1")
    if kind == "set":
        if len(args) != 1 or type(args[0]) is not list:
            raise TypeError("set of a non-list")
        return set(_key(x) for x in args[0])
    if kind == "device":
        if not 1 <= len(args) <= 2 or not isinstance(args[0], str):
            raise TypeError("a malformed torch.device")
        return _Atom(f"device({args[0]!r})")
    if kind in ("v2", "v3"):
        return _tensor(kind, args, path)
    if kind == "parameter":
        if len(args) != 3 or type(args[1]) is not bool:
            raise TypeError("a malformed Parameter")
        if isinstance(args[0], (TensorHeader, _Refused)):
            _no_hooks(args[2])
            return args[0]
        raise TypeError("a Parameter of a non-tensor")
    raise TypeError(f"calling {func.name}")


def _no_hooks(hooks):
    if type(hooks) is not OrderedDict or hooks:
        raise TypeError("backward hooks must be an empty OrderedDict")


def _tensor(kind: str, args: tuple, path: str):
    if kind == "v2":
        if len(args) not in (6, 7):
            raise TypeError(f"_rebuild_tensor_v2 with {len(args)} arguments")
        storage, offset, shape, stride, requires_grad, hooks = args[:6]
        dtype = storage.dtype if isinstance(storage, _Storage) else None
    else:
        if len(args) not in (7, 8):
            raise TypeError(f"_rebuild_tensor_v3 with {len(args)} arguments")
        storage, offset, shape, stride, requires_grad, hooks, dt = args[:7]
        if not isinstance(dt, _Global) or dt.kind != "dtype":
            raise TypeError("_rebuild_tensor_v3 without a dtype")
        dtype = dt.value
    if not isinstance(storage, _Storage):
        raise TypeError("a tensor without a storage")
    if storage.refused:
        return _Refused("is " + storage.refused)
    if dtype not in ALLOWED_DTYPES:
        return _Refused(f"has dtype {dtype}; netgraph reads {', '.join(ALLOWED_DTYPES)} tensors")
    if len(args) > (6 if kind == "v2" else 7) and args[-1] not in (None, {}) and not (
            type(args[-1]) is dict and not args[-1]):
        raise TypeError("tensor metadata")
    if type(requires_grad) is not bool:
        raise TypeError("requires_grad is not a bool")
    _no_hooks(hooks)
    if not isinstance(shape, tuple) or not isinstance(stride, tuple):
        raise TypeError("shape and stride must be tuples")
    numel_storage = storage.numel
    if kind == "v3":  # an untyped storage: bytes
        size = ALLOWED_DTYPES[dtype]
        if numel_storage % size:
            raise TypeError(f"an untyped storage of {numel_storage} bytes read as {dtype}")
        numel_storage //= size
    header = TensorHeader(storage.key, dtype, offset, shape, stride, -1)
    try:
        header.numel = check_strided(shape, stride, offset, numel_storage, "")
    except BadCheckpoint as exc:
        return _Refused("has an unsafe layout" + str(exc))  # the message starts ": <rule>"
    return header


def _check_disjoint(views: list[TensorHeader], path: str) -> None:
    """Views of one storage are the same view (tied weights) or do not share an element."""
    distinct = {}
    for t in views:
        if t.numel:
            distinct.setdefault((t.offset, t.shape, t.stride), t)
    if len(distinct) < 2:
        return
    spans = sorted((t.offset, t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride)) + 1, i, t)
                   for i, t in enumerate(distinct.values()))
    for (a0, a1, _, ta), (b0, b1, _, tb) in zip(spans, spans[1:]):
        if b0 < a1:
            raise UnsafeCheckpoint(
                f"{path}: tensors {show(ta.where)} and {show(tb.where)} are different views of the same stored "
                f"values (storage {show(ta.storage)}, elements {a0}..{a1} and {b0}..{b1}); tensors may share "
                "storage only as the same view (tied weights) or on disjoint elements"
            )


def _walk(root, path: str) -> list[TensorHeader]:
    """Iteratively check the value: depth, object count, key types, no refused or bare
    objects; collect tensor headers with where they sit."""
    tensors: list[TensorHeader] = []
    seen_tensors: set[int] = set()
    count = 0
    todo = [(root, (), 0)]
    while todo:
        obj, where, depth = todo.pop()
        count += 1
        if count > MAX_OBJECTS:
            raise UnsafeCheckpoint(f"{path}: the pickled value expands to more than {MAX_OBJECTS:,} objects; refused")
        if depth > MAX_DEPTH:
            raise UnsafeCheckpoint(
                f"{path}: containers nested more than {MAX_DEPTH} deep (at {show(_where(where))}); refused"
            )
        if obj is None or type(obj) in (bool, int, float, str, bytes, _Atom):
            continue
        if isinstance(obj, TensorHeader):
            if id(obj) not in seen_tensors:
                seen_tensors.add(id(obj))
                obj.where = _where(where)
                tensors.append(obj)
            continue
        if isinstance(obj, _Refused):
            raise UnsafeCheckpoint(f"{path}: tensor {show(_where(where))} {obj.reason}")
        if type(obj) in (dict, OrderedDict):
            for k, v in obj.items():
                if type(k) is not str and type(k) is not int:
                    raise BadCheckpoint(
                        f"{path}: key {show(repr(k))} in {show(_where(where) or 'the top level')} is a "
                        f"{_type_name(k)}; checkpoint keys must be strings"
                    )
                todo.append((v, where + (k,), depth + 1))
            continue
        if type(obj) in (list, tuple, set):
            for i, v in enumerate(obj):
                todo.append((v, where + (i,), depth + 1))
            continue
        if isinstance(obj, _Storage):
            raise UnsafeCheckpoint(f"{path}: {show(_where(where))} is a bare storage, not a tensor; refused")
        if isinstance(obj, _Global):
            raise UnsafeCheckpoint(f"{path}: {show(_where(where))} is the function or class {show(obj.name)}; refused")
        raise BadCheckpoint(f"{path}: {show(_where(where))} is a {_type_name(obj)}; refused")  # pragma: no cover
    return tensors


def _type_name(x) -> str:
    return {_Atom: "dtype/device"}.get(type(x), type(x).__name__)


def _where(where: tuple) -> str:
    return "/".join(str(k) for k in where)


# -- 4. loading ---------------------------------------------------------------------------

def load_torch_file(path: str, fh=None, size: int | None = None, *, budget: bool = True):
    """Read a ``torch.save`` archive strictly (module contract); returns the loaded object.

    ``fh``/``size``: an already opened file (from :func:`open_regular`) to read instead of
    opening ``path`` again.
    """
    own = fh is None
    if own:
        fh, size = open_regular(path)
    try:
        layout = check_zip(fh, size, path)
        off, n = layout.members[layout.pickle_name()]
        fh.seek(off)
        data = fh.read(n)
        if len(data) != n:
            raise BadCheckpoint(f"{path}: data.pkl is truncated")
        scan_pickle(data, layout, path, budget=budget)
        torch = _require_torch()
        # torch maps the very file that was checked (no second lookup of the name, which may
        # also hold bytes that are not UTF-8); storages stay on disk until a tensor is read.
        proc = f"/proc/self/fd/{fh.fileno()}"
        target = proc if os.path.exists(proc) else path
        try:
            obj = torch.load(target, weights_only=True, map_location="cpu", mmap=True)
        except Exception as exc:  # corrupt data raises many types; every one is one refusal
            if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "Weights only" in str(exc):
                raise UnsafeCheckpoint(
                    f"{path}: refused: loading it would need to run code or build objects other than "
                    f"tensors ({type(exc).__name__}); netgraph never unpickles code"
                ) from None
            raise BadCheckpoint(f"{path}: cannot be read as a torch checkpoint ({_short(exc)})") from None
        check_loaded(obj, path)
        return obj
    finally:
        if own:
            fh.close()


def check_loaded(obj, path: str) -> None:
    """Check every tensor of a loaded object again: plain, dense, strided, CPU, allowed dtype,
    each element stored once.  (The pickle scan already refused anything else; this is the
    second lock, on what torch actually built.)"""
    import torch

    todo = [(obj, (), 0)]
    count = 0
    while todo:
        o, where, depth = todo.pop()
        count += 1
        if count > MAX_OBJECTS or depth > MAX_DEPTH:
            raise UnsafeCheckpoint(f"{path}: the loaded value is nested or sized past the limits; refused")
        if isinstance(o, torch.Tensor):
            w = f"{path}: tensor {show(_where(where))}"
            if type(o) not in (torch.Tensor, torch.nn.Parameter):
                raise UnsafeCheckpoint(f"{w} is a {type(o).__name__}; netgraph reads plain tensors only")
            if o.layout != torch.strided or o.is_quantized or o.is_meta or o.is_nested or o.device.type != "cpu":
                raise UnsafeCheckpoint(f"{w} is not a dense CPU tensor (layout {o.layout}, device {o.device})")
            dtype = str(o.dtype).replace("torch.", "")
            if dtype not in ALLOWED_DTYPES:
                raise BadCheckpoint(f"{w} has dtype {dtype}; netgraph reads {', '.join(ALLOWED_DTYPES)}")
            check_strided(tuple(o.shape), tuple(o.stride()), o.storage_offset(),
                          o.untyped_storage().nbytes() // o.element_size(), w)
        elif isinstance(o, dict):
            todo.extend((v, where + (k,), depth + 1) for k, v in o.items())
        elif isinstance(o, (list, tuple, set)):
            todo.extend((v, where + (i,), depth + 1) for i, v in enumerate(o))


def _require_torch():
    import re

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


MIN_TORCH = (2, 10)  # CVE-2025-32434 (fixed in 2.6) and CVE-2026-24747 (fixed in 2.10)
