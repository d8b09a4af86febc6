"""The hostile-file table: every class of hostile or broken input from the hardening issue, built
here byte by byte, run through ``netgraph audit`` and ``netgraph repair`` as child processes.

Each must end with exit code 2 and exactly one stderr line ``netgraph: error: …`` (no
traceback, no raw control character), nothing on stdout, no file left beside the input, no
payload run, and a bounded peak RSS of the child (its own ``VmHWM``: < 300 MB for inputs under
1 MB — importing torch alone takes about 230 MB).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from tests.hostile_files import Call, T, deep_list, local_header, raw_zip, safetensors_bytes, torch_archive

MARKER = "/tmp/netgraph-hostile-pwned-marker"
RSS_LIMIT_KB = 300 * 1024
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- running a child ----------------------------------------------------------------------

_CHILD = (
    "import os, sys\n"
    "from netgraph.cli import main\n"
    "try:\n"
    "    rc = main(sys.argv[1:])\n"
    "finally:\n"
    "    with open('/proc/self/status') as fh:\n"
    "        hwm = [l.split()[1] for l in fh if l.startswith('VmHWM:')][0]\n"
    "    with open(os.environ['NETGRAPH_TEST_HWM'], 'w') as fh:\n"
    "        fh.write(hwm)\n"
    "sys.exit(rc)\n"
)


def run_children(argvs, cwd, timeout: float = 120.0):
    """Each ``netgraph *argv`` in its own child process, all at once (CI has 2 cores) →
    ``[(exit code, stdout, stderr, peak RSS in KB)]``.

    The peak is the child's own ``VmHWM`` (read by the child as it exits): ``ru_maxrss`` of a
    child started with vfork also counts the parent's peak, so it would measure pytest.
    """
    with contextlib.ExitStack() as stack:
        runs = []
        for argv in argvs:
            out = stack.enter_context(tempfile.TemporaryFile())
            err = stack.enter_context(tempfile.TemporaryFile())
            hwm = stack.enter_context(tempfile.NamedTemporaryFile("r", suffix=".hwm"))
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO, NETGRAPH_TEST_HWM=hwm.name)
            p = subprocess.Popen([sys.executable, "-c", _CHILD, *argv], stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL, cwd=cwd, env=env)
            runs.append((argv, p, out, err, hwm))
        results = []
        for argv, p, out, err, hwm in runs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                for _, q, *_ in runs:
                    q.kill()
                    q.wait()
                pytest.fail(f"netgraph {argv!r} still ran after {timeout} s (a hang)")
            out.seek(0)
            err.seek(0)
            peak = hwm.read().strip()
            results.append((p.returncode, out.read().decode("utf-8", "backslashreplace"),
                            err.read().decode("utf-8", "backslashreplace"), int(peak) if peak else None))
        return results


def run_child(argv, cwd, timeout: float = 120.0):
    """One child: see :func:`run_children`."""
    return run_children([argv], cwd, timeout)[0]


# -- builders: each writes one hostile file into a folder and returns its path -------------

def _save(obj, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(obj, path)
    return path


def _bytes(path, data: bytes):
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _ok_sd():
    return {"fc1.weight": torch.ones(4, 3), "fc1.bias": torch.zeros(4), "fc2.weight": torch.ones(2, 4)}


def _sparse(indices, size, layout="coo"):
    def make(d):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            if layout == "csr":
                t = torch.eye(4).to_sparse_csr()
            else:
                t = torch.sparse_coo_tensor(torch.tensor(indices), torch.ones(len(indices[0])), size,
                                            check_invariants=False)
        return _save({"fc1.weight": t, "fc2.weight": torch.ones(2, 4)}, d / "m.pt")
    return make


def _quantized(dtype):
    def make(d):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized creation functions are deprecated
            q = torch.quantize_per_tensor(torch.ones(4, 3), 0.1, 0, dtype)
        return _save({"fc1.weight": q, "fc2.weight": torch.ones(2, 4)}, d / "m.pt")
    return make


def make_meta(d):
    return _save({"fc1.weight": torch.empty(4, 3, device="meta"), "fc2.weight": torch.ones(2, 4)}, d / "m.pt")


def make_nested(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nt = torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)])
    return _save({"fc1.weight": nt, "fc2.weight": torch.ones(2, 4)}, d / "m.pt")


def _key(k):
    def make(d):
        return _bytes(d / "m.pt", torch_archive({k: T("0", (4, 3)), "fc2.weight": T("1", (2, 4))}))
    return make


def make_deep_list(d):
    sd = {"fc1.weight": T("0", (4, 3)), "fc2.weight": T("1", (2, 4))}
    return _bytes(d / "m.pt", torch_archive({"state_dict": sd, "extra": deep_list(100_000)}))


def make_deep_tuple_key(d):  # hashing a tuple nested 300,000 deep overflows C's stack (SIGSEGV)
    from tests.hostile_files import Raw

    # {((...((),)...),): 1}: EMPTY_DICT, EMPTY_TUPLE, TUPLE1 300,000 times, 1, SETITEM
    x = Raw(b"}" + b")" + b"\x85" * 300_000 + b"K\x01" + b"s")
    return _bytes(d / "m.pt", torch_archive({"fc1.weight": T("0", (4, 3)), "x": x}))


def make_deep_state_dict_value(d):
    return _bytes(d / "m.pt", torch_archive({"fc1.weight": T("0", (4, 3)), "x": deep_list(100_000)}))


def make_st_deep_json(d):
    return _bytes(d / "m.safetensors", safetensors_bytes('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"))


def make_st_deep_json_entry(d):
    return _bytes(d / "m.safetensors", safetensors_bytes(
        '{"w": {"dtype": "F32", "shape": [1], "data_offsets": ' + "[" * 100_000 + "]" * 100_000 + "}}"))


def make_st_unclosed_string(d):  # 400,000 escaped quotes and no closing one: a quadratic scan would hang
    return _bytes(d / "m.safetensors", safetensors_bytes('{"a": "' + '\\"' * 400_000))


def _st_offsets(offsets):
    def make(d):
        return _bytes(d / "m.safetensors", safetensors_bytes(
            {"fc1.weight": {"dtype": "F32", "shape": [4, 3], "data_offsets": offsets}}, b"\0" * 48))
    return make


def _st_netgraph(value, raw=False):
    def make(d):
        md = {"netgraph": value} if raw else {"netgraph": json.dumps(value)}
        return _bytes(d / "m.safetensors", safetensors_bytes(
            {"__metadata__": md, "fc1.weight": {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48]}},
            b"\0" * 48))
    return make


def make_st_bad_dtype(d):
    return _bytes(d / "m.safetensors", safetensors_bytes(
        {"fc1.weight": {"dtype": "F8_E4M3", "shape": [4, 3], "data_offsets": [0, 12]}}, b"\0" * 12))


def make_st_size_lie(d):  # 1e10 elements claimed over 48 bytes
    return _bytes(d / "m.safetensors", safetensors_bytes(
        {"fc1.weight": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 48]}}, b"\0" * 48))


def make_st_overlap(d):
    return _bytes(d / "m.safetensors", safetensors_bytes(
        {"a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
         "b.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}}, b"\0" * 24))


def _topology(topo):
    def make(d):
        sd = {"fc1.weight": torch.ones(4, 3), "fc2.weight": torch.ones(2, 4)}
        return _save({"state_dict": sd, "netgraph": {"topology": topo}}, d / "m.pt")
    return make


_GOOD_TOPO = {"version": 1, "inputs": [["input", 3]], "sinks": ["fc2"],
              "groups": [["input", 3], ["fc1", 4], ["fc2", 2]],
              "blocks": [{"kind": "weighted", "name": "fc1.weight", "src": "input", "dst": "fc1",
                          "conv_groups": 1, "bias": None},
                         {"kind": "weighted", "name": "fc2.weight", "src": "fc1", "dst": "fc2",
                          "conv_groups": 1, "bias": None}],
              "constants": {}, "warnings": []}


def _topo(**change):
    t = json.loads(json.dumps(_GOOD_TOPO))
    t.update(change)
    return t


def _bn(**lie):
    def make(d):
        sd = {"conv.weight": torch.ones(4, 3, 3, 3), "bn.weight": torch.ones(4), "bn.bias": torch.zeros(4),
              "bn.running_mean": torch.zeros(4), "bn.running_var": torch.ones(4),
              "fc.weight": torch.ones(2, 4)}
        sd.update(lie)
        return _save(sd, d / "m.pt")
    return make


def make_fifo(d):
    p = d / "m.pt"
    os.mkfifo(p)
    return p


def make_ansi_key(d):
    sd = {"\x1b[2J\x1b[H\nfc1.weight": torch.ones(4, 3), "fc2.weight": torch.ones(2, 4)}
    return _save(sd, d / "m.pt")


def make_ansi_file_name(d):
    return _bytes(d / "m\x1b[2J\nx.pt", b"not a checkpoint\n")


def make_0xff_file_name(d):
    path = os.path.join(os.fsencode(d), b"m\xff.pt")
    with open(path, "wb") as fh:
        fh.write(b"not a checkpoint\n")
    return path


def make_stride0(d):  # (1, 1e8) from one stored element
    return _bytes(d / "m.pt", torch_archive({"fc1.weight": T("0", (1, 100_000_000), (1, 0)),
                                             "fc2.weight": T("1", (2, 1))}))


def make_stride0_prune_pair(d):
    sd = {"fc1.weight_orig": T("0", (1, 100_000_000), (1, 0)),
          "fc1.weight_mask": T("1", (1, 100_000_000), (1, 0)), "fc2.weight": T("2", (2, 1))}
    return _bytes(d / "m.pt", torch_archive(sd))


def make_flatten_factor(d):  # conv (4 channels) -> linear with 4 * 5e7 inputs, from 2 stored values
    sd = {"conv.weight": T("0", (4, 3, 3, 3)), "fc.weight": T("1", (2, 200_000_000), (1, 0), numel=2)}
    return _bytes(d / "m.pt", torch_archive(sd))


def make_self_overlap(d):  # (1000, 1000) over 1999 stored values
    return _bytes(d / "m.pt", torch_archive({"fc1.weight": T("0", (1000, 1000), (1, 1)),
                                             "fc2.weight": T("1", (2, 1000))}))


def make_shape_past_storage(d):  # claims 1e10 elements, stores 12
    return _bytes(d / "m.pt", torch_archive({"fc1.weight": T("0", (100_000, 100_000), numel=12)}))


def make_storage_past_member(d):  # storage claims 1e10 elements, member has 48 bytes
    return _bytes(d / "m.pt", torch_archive({"fc1.weight": T("0", (4, 3), numel=10_000_000_000)},
                                            {"0": b"\0" * 48}))


def make_views_overlap(d):  # two different views sharing stored values
    sd = {"fc1.weight": T("0", (4, 3), numel=20), "fc2.weight": T("0", (2, 4), offset=8, numel=20)}
    return _bytes(d / "m.pt", torch_archive(sd))


def make_memory_past_available(d):  # only as an in-process test (it needs a tiny "available")
    return _save(_ok_sd(), d / "m.pt")


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _members(obj) -> list:
    buf = io.BytesIO()
    _save(obj, buf)
    zf = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    return [(i.filename, zf.read(i.filename)) for i in zf.infolist()]


def make_two_data_pkl(d):  # the first data.pkl runs a command; the second is benign
    good = _members(_ok_sd())
    name = next(n for n, _ in good if n.endswith("data.pkl"))
    cmd = f"touch {MARKER}".encode()
    payload = b"\x80\x02cos\nsystem\n(X" + struct.pack("<I", len(cmd)) + cmd + b"tR."
    return _bytes(d / "m.pt", raw_zip([(name, payload)] + good))


def make_duplicate_storage(d):
    good = _members(_ok_sd())
    name = next(n for n, _ in good if n.endswith("data/0"))
    return _bytes(d / "m.pt", raw_zip([(name, b"\x7f" * 48)] + good))


def make_overlapping_members(d):  # data/1 is hidden inside data/0's bytes; both headers are valid
    good = _members(_ok_sd())
    names = [n for n, _ in good]
    i0 = names.index(next(n for n in names if n.endswith("data/0")))
    i1 = names.index(next(n for n in names if n.endswith("data/1")))
    inner_name, inner = good[i1]
    members = [m for i, m in enumerate(good) if i != i1]
    members[i0] = (good[i0][0], local_header(inner_name, inner) + good[i0][1])
    outer = sum(30 + len(n.encode()) + len(b) for n, b in members[:i0])  # where data/0's header starts
    central = [(n, i, None, None) for i, (n, _) in enumerate(members)]
    central.append((inner_name, i0, len(inner), None, outer + 30 + len(members[i0][0].encode())))
    return _bytes(d / "m.pt", raw_zip(members, central=central))


def make_member_runs_on(d):  # data/0 claims more bytes than it has: it runs into the next member
    good = _members(_ok_sd())
    names = [n for n, _ in good]
    central = [(n, i, 48 + 200 if n.endswith("data/0") else None, None) for i, n in enumerate(names)]
    return _bytes(d / "m.pt", raw_zip(good, central=central))


def make_local_name_lies(d):
    good = _members(_ok_sd())
    names = [n for n, _ in good]
    central = [(n, i, None, n[:-1] + "2" if n.endswith("data/0") else None) for i, n in enumerate(names)]
    return _bytes(d / "m.pt", raw_zip(good, central=central))


def make_second_folder_pickle(d):
    good = _members(_ok_sd())
    payload = b"\x80\x02cos\nsystem\n(X\x04\x00\x00\x00truetR."
    return _bytes(d / "m.pt", raw_zip(good + [("other/data.pkl", payload)]))


def make_protocol4(d):
    buf = io.BytesIO()
    torch.save(_ok_sd(), buf, pickle_protocol=4)
    return _bytes(d / "m.pt", buf.getvalue())


def make_unknown_global(d):
    return _bytes(d / "m.pt", torch_archive({"fc1.weight": T("0", (4, 3)),
                                             "x": Call("builtins", "eval", ("1+1",))}))


def make_plain_and_prune_pair(d):
    sd = {"fc1.weight": torch.ones(4, 3), "fc1.weight_orig": torch.ones(4, 3), "fc1.weight_mask": torch.ones(4, 3),
          "fc2.weight": torch.ones(2, 4)}
    return _save(sd, d / "m.pt")


def make_wrappers_disagree(d):
    a = _ok_sd()
    b = _ok_sd()
    b["fc2.weight"] = torch.zeros(2, 4)
    return _save({"state_dict": a, "model": b}, d / "m.pt")


def make_tensor_named_netgraph(d):
    sd = _ok_sd()
    sd["netgraph"] = torch.ones(3)
    return _save(sd, d / "m.pt")


def make_bare_storage(d):
    return _save({"fc1.weight": torch.ones(4, 3), "s": torch.ones(3).untyped_storage()}, d / "m.pt")


# (id, builder, expected fragment of the one error line)
CASES = [
    # memory safety
    ("sparse-coo-index-past-buffer", _sparse([[0, 4], [0, 0]], (4, 3)), "sparse"),
    ("sparse-coo-negative-index", _sparse([[-1], [0]], (4, 3)), "sparse"),
    ("sparse-coo-huge-index", _sparse([[10**12], [0]], (4, 3)), "sparse"),
    ("sparse-coo-30000x30000-one-nonzero", _sparse([[0], [0]], (30000, 30000)), "sparse"),
    ("sparse-csr", _sparse(None, None, "csr"), "sparse"),
    ("quantized-qint8", _quantized(torch.qint8), "quantized"),
    ("quantized-quint8", _quantized(torch.quint8), "quantized"),
    ("meta-tensor", make_meta, "meta tensor"),
    ("nested-tensor", make_nested, "nested tensor"),
    ("bare-storage", make_bare_storage, "bare storage"),
    # keys and containers
    ("key-int", _key(3), "must be strings"),
    ("key-bytes", _key(b"fc1.weight"), "must be strings"),
    ("key-tuple", _key(("fc1", "weight")), "must be strings"),
    ("key-none", _key(None), "must be strings"),
    ("list-100000-deep-beside-state_dict", make_deep_list, "nested more than"),
    ("list-100000-deep-in-state_dict", make_deep_state_dict_value, "nested more than"),
    ("tuple-300000-deep-as-key", make_deep_tuple_key, "nests tuples more than"),
    ("key-with-ansi-and-newline", make_ansi_key, "control characters"),
    # safetensors headers
    ("st-json-100000-deep", make_st_deep_json, "nests more than"),
    ("st-json-100000-deep-in-entry", make_st_deep_json_entry, "nests more than"),
    ("st-header-unclosed-string", make_st_unclosed_string, "not valid JSON"),
    ("st-offsets-three", _st_offsets([0, 24, 48]), "data_offsets"),
    ("st-offsets-one", _st_offsets([48]), "data_offsets"),
    ("st-offsets-string", _st_offsets("0..48"), "data_offsets"),
    ("st-offsets-null", _st_offsets(None), "data_offsets"),
    ("st-offsets-object", _st_offsets({"start": 0, "end": 48}), "data_offsets"),
    ("st-offsets-bool", _st_offsets([False, 48]), "data_offsets"),
    ("st-netgraph-list", _st_netgraph([1, 2]), "'netgraph' is a JSON list"),
    ("st-netgraph-string", _st_netgraph("topology"), "'netgraph' is a JSON str"),
    ("st-netgraph-number", _st_netgraph(3), "'netgraph' is a JSON int"),
    ("st-metadata-value-not-string", _st_netgraph([1, 2], raw=True), "must map strings to strings"),
    ("st-dtype-unsupported", make_st_bad_dtype, "dtype"),
    ("st-shape-1e10-over-48-bytes", make_st_size_lie, "they must agree"),
    ("st-ranges-overlap", make_st_overlap, "tile the data section"),
    # stored topology (untrusted)
    ("topology-not-a-dict", _topology([1, 2, 3]), "stored topology: is a list"),
    ("topology-negative-unit", _topology(_topo(constants={"fc1": [-1]})), "unit -1"),
    ("topology-unit-past-width", _topology(_topo(constants={"fc1": [4]})), "unit 4"),
    ("topology-huge-width", _topology(_topo(groups=[["input", 3], ["fc1", 4], ["fc2", 2], ["x", 10**12]])),
     "widths are 1.."),
    ("topology-unknown-group", _topology(_topo(sinks=["nowhere"])), "not declared"),
    ("bn-width-lies", _bn(**{"bn.running_var": torch.ones(5)}), "BatchNorm"),
    ("bn-dims-lie", _bn(**{"bn.running_mean": torch.zeros(2, 2)}), "BatchNorm"),
    ("bn-gamma-width-lies", _bn(**{"bn.weight": torch.ones(7)}), "BatchNorm"),
    # files and names
    ("fifo", make_fifo, "FIFO"),
    ("file-name-ansi-newline", make_ansi_file_name, "neither a torch.save"),
    ("file-name-byte-0xff", make_0xff_file_name, "neither a torch.save"),
    # memory amplification
    ("stride0-1e8-from-one-value", make_stride0, "stride 0"),
    ("stride0-prune-pair", make_stride0_prune_pair, "stride 0"),
    ("stride0-flatten-factor-5e7", make_flatten_factor, "stride 0"),
    ("self-overlapping-strides", make_self_overlap, "more than once"),
    ("shape-1e10-over-12-values", make_shape_past_storage, "storage holds"),
    ("storage-1e10-over-48-bytes", make_storage_past_member, "exactly its member"),
    ("views-share-values", make_views_overlap, "different views"),
    # a zip that lies
    ("two-data.pkl-first-runs-code", make_two_data_pkl, "appears twice"),
    ("duplicate-storage-member", make_duplicate_storage, "appears twice"),
    ("overlapping-members", make_overlapping_members, "overlap"),
    ("member-runs-into-next", make_member_runs_on, "overlap"),
    ("local-header-names-another", make_local_name_lies, "local header"),
    ("second-folder-with-pickle", make_second_folder_pickle, "outside the archive"),
    ("pickle-protocol-4", make_protocol4, "protocol-2"),
    ("pickle-unknown-global", make_unknown_global, "refused"),
    # silent choices
    ("plain-and-prune-pair", make_plain_and_prune_pair, "both a plain"),
    ("wrappers-disagree", make_wrappers_disagree, "different state_dicts"),
    ("tensor-named-netgraph", make_tensor_named_netgraph, "reserved"),
]


@pytest.mark.parametrize("name, make, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_file_is_refused_in_one_line(tmp_path, name, make, expected):
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    src = make(tmp_path)
    src_name = os.fsdecode(src)
    before = set(os.listdir(tmp_path))
    is_small = os.path.isfile(src) and os.path.getsize(src) < 2**20 or not os.path.isfile(src)
    argvs = (["audit", src_name], ["repair", src_name, "-o", str(tmp_path / "out.pt")])
    for argv, (rc, out, err, rss_kb) in zip(argvs, run_children(argvs, tmp_path)):
        lines = err.splitlines()
        assert rc == 2, (argv[0], rc, err)
        assert len(lines) == 1, (argv[0], err)
        assert lines[0].startswith("netgraph: error: "), err
        assert expected.lower() in lines[0].lower(), (argv[0], lines[0])
        assert "Traceback" not in err and "\x1b" not in err, err
        assert out == "", out
        assert set(os.listdir(tmp_path)) == before, "a file was left beside the input"
        assert not os.path.exists(MARKER), "a pickle ran code"
        assert rss_kb is not None, "the child did not report its peak memory (it crashed)"
        if is_small:
            assert rss_kb < RSS_LIMIT_KB, f"{argv[0]} peaked at {rss_kb / 1024:.0f} MB"


def test_a_valid_file_whose_name_holds_byte_0xff_is_read(tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"m\xff.pt")
    with open(path, "wb") as fh:
        torch.save(_ok_sd(), fh)
    rc, out, err, _ = run_child(["audit", os.fsdecode(path), "--format", "json"], tmp_path)
    assert rc == 0, err
    assert json.loads(out)["summary"]["kept"] == 12 + 8


def test_reading_past_available_memory_is_refused(tmp_path, monkeypatch):
    from netgraph import load_checkpoint
    from netgraph.errors import UnsafeCheckpoint
    from netgraph.io import _limits

    src = make_memory_past_available(tmp_path)
    monkeypatch.setattr(_limits, "available_memory", lambda: 100)
    with pytest.raises(UnsafeCheckpoint, match="memory is available"):
        load_checkpoint(src)
    st = tmp_path / "m.safetensors"
    from safetensors.torch import save_file

    save_file(_ok_sd(), st)
    with pytest.raises(UnsafeCheckpoint, match="memory is available"):
        load_checkpoint(st)


def test_tied_weights_and_views_are_still_read(tmp_path):
    """Refusing overlap must not refuse what torch.save writes for tied weights and slices."""
    from netgraph import load_checkpoint

    emb = torch.arange(12.0).reshape(4, 3) + 1
    base = torch.arange(40.0) + 1
    sd = {"emb.weight": emb, "dec.weight": emb, "fc1.weight": base[:12].view(4, 3),
          "fc2.weight": base[12:20].view(2, 4), "t.weight": torch.ones(3, 2).t()}
    _save(sd, tmp_path / "m.pt")
    ck = load_checkpoint(tmp_path / "m.pt")
    np.testing.assert_array_equal(ck.tensors["dec.weight"], emb.numpy())
    np.testing.assert_array_equal(ck.tensors["fc2.weight"], base[12:20].view(2, 4).numpy())
    assert ck.tensors["t.weight"].shape == (2, 3)


def test_a_training_checkpoint_with_optimizer_state_is_read(tmp_path):
    """int keys below the top level (optimizer state), OrderedDict _metadata, bytes, floats."""
    from netgraph import load_checkpoint

    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(5, 3)).sum().backward()
    opt.step()
    _save({"state_dict": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "note": b"x",
           "rng": torch.Generator().get_state()}, tmp_path / "m.pt")
    ck = load_checkpoint(tmp_path / "m.pt")
    assert ck.state_dict_key == "state_dict"
    assert isinstance(ck.root["state_dict"], OrderedDict) and hasattr(ck.root["state_dict"], "_metadata")
    assert set(ck.prunable()) == {"0.weight", "2.weight"}


def test_load_state_file_refuses_foreign_and_broken_states(tmp_path):
    from netgraph.errors import BadCheckpoint
    from netgraph.io._checkpoint import load_state_file

    good = {"config": {"a": 1}, "epoch": 2, "model": _ok_sd()}
    _save(good, tmp_path / "s.pt")
    assert load_state_file(tmp_path / "s.pt", required=("config", "epoch", "model"))["epoch"] == 2
    _save(_ok_sd(), tmp_path / "foreign.pt")
    with pytest.raises(BadCheckpoint, match="not a netgraph training state"):
        load_state_file(tmp_path / "foreign.pt", required=("config", "epoch", "model"))
    data = (tmp_path / "s.pt").read_bytes()
    _bytes(tmp_path / "cut.pt", data[: len(data) // 2])
    with pytest.raises(BadCheckpoint, match="corrupt or truncated"):
        load_state_file(tmp_path / "cut.pt", required=("config",))
    _save({"config": {}, "evil": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(BadCheckpoint, match="refused"):
        load_state_file(tmp_path / "evil.pt", required=("config",))
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("state", ["malicious", "foreign", "truncated", "sparse", "empty"])
def test_train_resume_refuses_a_hostile_state_file_in_one_line(tmp_path, state):
    """``train --resume`` reads ``<out>.state.pt`` with the strict reader (issue item 5)."""
    from netgraph.errors import NetgraphError
    from trainer import TrainConfig, load_digits, train

    out = tmp_path / "m.pt"
    state_path = tmp_path / "m.pt.state.pt"
    if state == "malicious":
        _save({"config": {}, "evil": _RunsCode()}, state_path)
    elif state == "foreign":
        _save(_ok_sd(), state_path)
    elif state == "truncated":
        buf = io.BytesIO()
        _save({"config": {}, "epoch": 1, "model": _ok_sd()}, buf)
        _bytes(state_path, buf.getvalue()[: len(buf.getvalue()) // 2])
    elif state == "sparse":
        _sparse([[0, 4], [0, 0]], (4, 3))(tmp_path)
        os.replace(tmp_path / "m.pt", state_path)
    else:
        _bytes(state_path, b"")
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    cfg = TrainConfig(model="mlp", dataset="digits", mlp_hidden=(8,), epochs=2, batch_size=256, progress=False,
                      device="cpu", out=str(out), resume=True)
    with pytest.raises(NetgraphError) as info:
        train(cfg, data=load_digits(seed=0))
    msg = str(info.value)
    assert "\n" not in msg and str(state_path) in msg, msg
    assert not os.path.exists(MARKER) and not out.exists()
