"""Fuzzing the readers: every file is read correctly or refused in one line, with bounded memory.

Four generators (Hypothesis, ``ci`` profile: deterministic):

* ``zip_archives`` — the *structure* of a torch zip: tensor records with drawn dtypes, shapes,
  strides (stride 0, overlapping, transposed), offsets and storage sizes (short, exact, long,
  shared between tensors), then archive-level lies: a duplicated, dropped, renamed or stray
  member, a compressed member, a directory entry whose size or offset lies;
* ``restricted_pickles`` — ``data.pkl`` built only from the globals torch's ``weights_only``
  unpickler allows (tensor records, ``OrderedDict``, ``torch.Size``, ``_codecs.encode``, ``set``,
  sparse/quantized rebuilds, dtypes) with drawn, often wrong, arguments, keys of every type and
  containers nested at drawn depths;
* ``safetensors_headers`` — headers with drawn dtypes, shapes, ``data_offsets`` (tiling, gaps,
  overlaps, wrong types), metadata (``netgraph`` as JSON of any type, non-string values);
* ``corruptions`` — byte flips, truncations, insertions and zero runs of valid files.

The property, for every file: ``load_checkpoint`` either returns tensors equal to those of an
independent reader (``torch.load(weights_only=True)`` / the ``safetensors`` library) or raises a
:class:`NetgraphError` whose message is one line; ``netgraph audit`` and ``netgraph repair`` exit 0
or 2, and on 2 print exactly one ``netgraph: error:`` line, refusing whenever the library refused;
nothing is left beside the input; and the process's peak RSS stays within 400 MB of where the
test started.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import warnings
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

from netgraph import load_checkpoint
from netgraph.cli import main
from netgraph.errors import NetgraphError
from tests.hostile_files import Call, Global, T, deep_list, pickle_bytes, raw_zip, safetensors_bytes, storages_for

RSS_HEADROOM_KB = 400 * 1024
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

KEYS = ["fc1.weight", "fc1.bias", "fc2.weight", "fc1.weight_orig", "fc1.weight_mask", "bn.running_mean",
        "bn.running_var", "0.weight", "netgraph", "state_dict", "x"]
DTYPES = ["float32", "float64", "float16", "int64", "uint8", "bool", "int8"]
_NP = {"float32": "<f4", "float64": "<f8", "float16": "<f2", "int64": "<i8", "uint8": "u1", "bool": "u1", "int8": "i1"}


# -- the property -------------------------------------------------------------------------

def _independent(path: str, fmt: str) -> dict:
    """Tensors as another reader sees them (values compared as float64)."""
    if fmt == "safetensors":
        from safetensors.torch import load_file

        sd = load_file(path)
    else:
        from netgraph.io._checkpoint import _unwrap

        sd, _, _ = _unwrap(torch.load(path, weights_only=True, map_location="cpu"), path)
    return {k: (v.double().numpy() if v.dtype != torch.bool else v.numpy())
            for k, v in sd.items() if isinstance(v, torch.Tensor)}


def _run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def check_file(folder, data: bytes, suffix: str = ".pt") -> None:
    """The fuzzing property for one file (see the module docstring)."""
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = os.path.join(folder, "m" + suffix)
    with open(path, "wb") as fh:
        fh.write(data)
    before = sorted(os.listdir(folder))
    refused = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ck = load_checkpoint(path)
    except NetgraphError as exc:
        refused = str(exc)
        assert "\n" not in refused and "\x1b" not in refused, refused
    event("read" if refused is None else "refused")
    if refused is None:
        other = _independent(path, ck.format)
        assert set(other) == set(ck.tensors)
        for k, v in other.items():
            mine = ck.tensors[k]
            assert mine.shape == v.shape, k
            np.testing.assert_array_equal(mine.astype(v.dtype) if v.dtype != bool else mine, v, err_msg=k)
    out_path = os.path.join(folder, "out" + suffix)
    for argv in (["audit", path], ["repair", path, "-o", out_path]):
        rc, out, err = _run(argv)
        assert rc in (0, 2), (argv[0], rc, err)
        if rc == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("netgraph: error: "), (argv[0], err)
            assert "\x1b" not in err
        if refused is not None:
            assert rc == 2, f"{argv[0]} accepted what load_checkpoint refused ({refused})"
        if rc == 2:
            assert sorted(os.listdir(folder)) == before, "a refusal left a file"
        elif os.path.exists(out_path):
            os.unlink(out_path)
    os.unlink(path)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss
    assert grown < RSS_HEADROOM_KB, f"peak RSS grew by {grown // 1024} MB on a {len(data)}-byte file"


# -- zip structure ------------------------------------------------------------------------

@st.composite
def tensor_records(draw, key_index: int):
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(["contiguous", "contiguous", "contiguous", "transposed", "stride0",
                                   "overlap", "offset"]))
    stride = None
    if layout == "transposed" and len(shape) == 2:
        stride = (1, max(shape[0], 1))
    elif layout == "stride0" and shape:
        stride = (0,) + tuple(1 for _ in shape[1:])
    elif layout == "overlap" and len(shape) >= 2:
        stride = tuple(1 for _ in shape)
    offset = draw(st.integers(0, 3)) if layout == "offset" else 0
    t = T(str(key_index), shape, stride, offset, dtype)
    need = t.storage_numel()
    t.numel = max(0, need + draw(st.sampled_from([0, 0, 0, 0, -1, 1, 5, 10**9])))
    return t


@st.composite
def zip_archives(draw):
    n = draw(st.integers(1, 4))
    sd = {}
    for i in range(n):
        key = draw(st.sampled_from(KEYS))
        rec = draw(tensor_records(i))
        if draw(st.integers(0, 9)) == 0 and sd:  # a second view of an earlier storage
            rec.key = next(iter(sd.values())).key
        sd[key] = rec
    root = sd if draw(st.booleans()) else {"state_dict": sd, "epoch": 3}
    storages = {}
    for rec in sd.values():
        if rec.key not in storages and rec.numel < 10**6:
            nbytes = rec.numel * np.dtype(_NP[rec.dtype]).itemsize
            vals = np.arange(rec.numel) % 3
            storages[rec.key] = vals.astype(_NP[rec.dtype]).tobytes() if rec.dtype != "bool" else \
                (vals % 2).astype("u1").tobytes()
            assert len(storages[rec.key]) == nbytes
    for rec in sd.values():
        if rec.key not in storages:
            storages[rec.key] = b"\0" * 64  # a huge claim over a small member
    members = [("archive/data.pkl", pickle_bytes(root)), ("archive/byteorder", b"little")]
    members += [(f"archive/data/{k}", v) for k, v in storages.items()]
    members.append(("archive/version", b"3\n"))
    lie = draw(st.sampled_from(["none"] * 6 + ["duplicate", "drop", "stray", "prefix", "deflate", "size", "offset",
                                              "reorder"]))
    central = None
    if lie == "duplicate":
        i = draw(st.integers(0, len(members) - 1))
        members.insert(draw(st.integers(0, len(members))), (members[i][0], draw(st.binary(max_size=64))))
    elif lie == "drop" and len(members) > 1:
        members.pop(draw(st.integers(0, len(members) - 1)))
    elif lie == "stray":
        members.append((draw(st.sampled_from(["other/data.pkl", "archive/code/x.py", "archive/extra", "x"])),
                        b"\x80\x02N."))
    elif lie == "prefix":
        i = draw(st.integers(0, len(members) - 1))
        members[i] = ("other/" + members[i][0].split("/", 1)[1], members[i][1])
    elif lie == "reorder":
        members = draw(st.permutations(members))
    elif lie in ("size", "offset"):
        i = draw(st.integers(0, len(members) - 1))
        j = draw(st.integers(0, len(members) - 1))
        central = [(nm, k, None, None) for k, (nm, _) in enumerate(members)]
        if lie == "size":
            central[i] = (members[i][0], i, len(members[i][1]) + draw(st.integers(-8, 200)), None)
        else:
            central[i] = (members[i][0], j, None, None)
    if lie == "deflate":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, (nm, b) in enumerate(members):
                zf.writestr(nm, b, compress_type=zipfile.ZIP_DEFLATED if k == 0 else zipfile.ZIP_STORED)
        return buf.getvalue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return raw_zip(members, central=central)


@FUZZ
@given(zip_archives())
def test_zip_structures_are_read_or_refused_in_one_line(tmp_path, data):
    check_file(str(tmp_path), data)


# -- pickles from the allowed globals -----------------------------------------------------

_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8),
    st.binary(max_size=8),
    st.sampled_from([Global("torch", "float32"), Global("torch", "FloatStorage"),
                     Global("torch._utils", "_rebuild_tensor_v2"), Global("collections", "OrderedDict")]),
)


@st.composite
def calls(draw, children):
    kind = draw(st.sampled_from(["size", "odict", "encode", "set", "sparse", "qtensor", "layout", "device",
                                 "tensor-bad-args", "parameter"]))
    args = tuple(draw(st.lists(children, max_size=3)))
    if kind == "size":
        return Call("torch", "Size", (tuple(draw(st.lists(st.integers(-2, 5), max_size=3))),) if draw(st.booleans())
                    else args)
    if kind == "odict":
        return Call("collections", "OrderedDict", () if draw(st.booleans()) else args)
    if kind == "encode":
        return Call("_codecs", "encode", (draw(st.text(max_size=4)), draw(st.sampled_from(["latin1", "utf-8"]))))
    if kind == "set":
        return Call("builtins", "set", (list(args),))
    if kind == "sparse":
        return Call("torch._utils", "_rebuild_sparse_tensor",
                    (Call("torch.serialization", "_get_layout", ("torch.sparse_coo",)), args))
    if kind == "qtensor":
        return Call("torch._utils", "_rebuild_qtensor", args)
    if kind == "layout":
        return Call("torch.serialization", "_get_layout", ("torch.sparse_csr",))
    if kind == "device":
        return Call("torch", "device", (draw(st.sampled_from(["cpu", "cuda", "meta"])),))
    if kind == "parameter":
        return Call("torch._utils", "_rebuild_parameter", (draw(tensor_records(0)), False, draw(children)))
    return Call("torch._utils", "_rebuild_tensor_v2", args)


def _values():
    return st.recursive(
        _LEAVES | tensor_records(0),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.integers(-3, 3), st.binary(max_size=3),
                                      st.none()), children, max_size=4),
            calls(children),
        ),
        max_leaves=12,
    )


def _huge_claims(root) -> set:
    """Storage keys whose records claim more than 10**6 elements (a small member stands in)."""
    found, todo = set(), [root]
    while todo:
        o = todo.pop()
        if isinstance(o, T):
            if o.storage_numel() > 10**6:
                found.add(o.key)
        elif isinstance(o, dict):
            todo.extend(o.values())
        elif isinstance(o, (list, tuple)):
            todo.extend(o)
        elif isinstance(o, Call):
            todo.extend(o.args)
    return found


@st.composite
def restricted_pickles(draw):
    if draw(st.booleans()):  # a state_dict beside arbitrary entries of allowed values
        sd = {k: draw(tensor_records(i + 2)) for i, k in enumerate(
            draw(st.lists(st.sampled_from(KEYS[:8]), min_size=1, max_size=3, unique=True)))}
        root = {"state_dict": sd, "extra": draw(_values())}
    else:
        root = draw(st.dictionaries(st.sampled_from(KEYS), _values() | tensor_records(1), min_size=1, max_size=4))
    if draw(st.integers(0, 7)) == 0:
        root["deep"] = deep_list(draw(st.sampled_from([10, 63, 65, 1000, 5000])))
    sto = storages_for(root, skip=_huge_claims(root))
    members = [("archive/data.pkl", pickle_bytes(root)), ("archive/byteorder", b"little")]
    members += [(f"archive/data/{k}", (np.arange(len(v)) % 2).astype("u1").tobytes()) for k, v in sto.items()]
    members += [(f"archive/data/{k}", b"\0" * 64) for k in _huge_claims(root)]
    members.append(("archive/version", b"3\n"))
    return raw_zip(members)


@FUZZ
@given(restricted_pickles())
def test_allowed_global_pickles_are_read_or_refused_in_one_line(tmp_path, data):
    check_file(str(tmp_path), data)


# -- safetensors headers ------------------------------------------------------------------

_ST = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "C64": 8}


@st.composite
def safetensors_headers(draw):
    n = draw(st.integers(1, 4))
    header, pos, chunks = {}, 0, []
    for i in range(n):
        dtype = draw(st.sampled_from(["F32"] * 8 + list(_ST) + ["f32", 3]))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        size = (int(np.prod(shape)) if shape else 1) * _ST.get(dtype, 4)
        offs = [pos, pos + size]
        how = draw(st.sampled_from(["ok"] * 40 + ["gap", "overlap", "short", "types", "arity", "negative", "huge"]))
        if how == "gap":
            offs = [pos + 4, pos + 4 + size]
        elif how == "overlap" and pos:
            offs = [pos - 1, pos - 1 + size]
        elif how == "short":
            offs = [pos, pos + max(0, size - 1)]
        elif how == "types":
            offs = draw(st.sampled_from([None, "0", {"a": 1}, [str(pos), pos + size], [True, size], 3.5]))
        elif how == "arity":
            offs = draw(st.sampled_from([[pos], [pos, pos + size, 0], []]))
        elif how == "negative":
            offs = [-size, 0]
        elif how == "huge":
            shape = [100000, 100000]
        entry = {"dtype": dtype, "shape": shape, "data_offsets": offs}
        if draw(st.integers(0, 19)) == 0:
            entry.pop(draw(st.sampled_from(sorted(entry))))
        header[draw(st.sampled_from(KEYS)) + ("" if i == 0 else f".{i}")] = entry
        pos += size
        chunks.append(np.arange(size, dtype=np.uint8) % 2)
    md = draw(st.sampled_from([None] * 8 + [{"format": "pt"}, {"netgraph": "{}"}, {"netgraph": "[1]"}, {"netgraph": "3"},
                               {"netgraph": "{\"topology\": [1]}"}, {"netgraph": [1]}, {"x": 1}, [1], "s",
                               {"netgraph": "[" * 2000 + "]" * 2000}]))
    if md is not None:
        header["__metadata__"] = md
    text = json.dumps(header)
    deep = draw(st.integers(0, 19)) == 0  # built in the test: a 100 kB example would be printed
    data = b"".join(c.tobytes() for c in chunks)
    return (None if deep else text), data[: len(data) - draw(st.sampled_from([0] * 9 + [1]))]


@FUZZ
@given(safetensors_headers())
def test_safetensors_headers_are_read_or_refused_in_one_line(tmp_path, case):
    text, data = case
    if text is None:
        text = '{"a": ' + "[" * 50000 + "]" * 50000 + "}"
    check_file(str(tmp_path), safetensors_bytes(text, data), ".safetensors")


# -- byte mutation of valid files ---------------------------------------------------------

def _valid_bytes(kind: str) -> bytes:
    g = torch.Generator().manual_seed(0)
    sd = {"fc1.weight_orig": torch.randn(6, 4, generator=g), "fc1.weight_mask": (torch.rand(6, 4, generator=g) > 0.5).float(),
          "fc1.bias": torch.randn(6, generator=g), "fc2.weight": torch.randn(3, 6, generator=g)}
    if kind == "safetensors":
        return save_safetensors(sd)
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


VALID = {kind: _valid_bytes(kind) for kind in ("torch", "safetensors")}


@st.composite
def corruptions(draw):
    kind = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[kind])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "zero-run"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "zero-run":
            data[pos:pos + draw(st.integers(1, 64))] = bytes(min(64, len(data) - pos))
    return kind, bytes(data)


@FUZZ
@given(corruptions())
def test_corrupted_files_are_read_or_refused_in_one_line(tmp_path, case):
    kind, data = case
    check_file(str(tmp_path), data, ".safetensors" if kind == "safetensors" else ".pt")


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_uncorrupted_files_are_read(tmp_path, kind):
    path = tmp_path / "m.bin"
    path.write_bytes(VALID[kind])
    assert main(["audit", str(path)]) == 0
