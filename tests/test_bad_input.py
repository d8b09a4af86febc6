"""One table of broken and hostile files: each gets a one-line error, exit 2, nothing
executed, no output file, no traceback."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile

import pytest
import torch

from netgraph.cli import main

MARKER = "/tmp/netgraph-pwned-marker"


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _good_sd():
    return {"fc1.weight": torch.ones(4, 3), "fc1.bias": torch.zeros(4), "fc2.weight": torch.ones(2, 4)}


def _save(obj, p):
    torch.save(obj, p)


def _write(p, data: bytes):
    p.write_bytes(data)


def make_pickle_code(p):
    _save({"fc.weight": torch.ones(2, 2), "evil": _RunsCode()}, p)


def make_legacy_pickle(p):
    _write(p, pickle.dumps({"fc.weight": [[1.0]]}, protocol=2))


def make_truncated(p):
    buf = io.BytesIO()
    torch.save(_good_sd(), buf)
    _write(p, buf.getvalue()[: len(buf.getvalue()) // 2])


def make_zero_byte(p):
    _write(p, b"")


def make_garbage(p):
    _write(p, b"this is not a checkpoint at all\n" * 10)


def make_non_binary_mask(p):
    _save({"fc.weight_orig": torch.ones(2, 3), "fc.weight_mask": torch.full((2, 3), 0.5)}, p)


def make_nan_mask(p):
    m = torch.ones(2, 3)
    m[0, 0] = float("nan")
    _save({"fc.weight_orig": torch.ones(2, 3), "fc.weight_mask": m}, p)


def make_nan_weight(p):
    sd = _good_sd()
    sd["fc2.weight"][0, 0] = float("inf")
    _save(sd, p)


def make_shape_mismatch(p):
    _save({"fc.weight_orig": torch.ones(2, 3), "fc.weight_mask": torch.ones(3, 2)}, p)


def make_non_chaining(p):
    _save({"a.weight": torch.ones(4, 3), "b.weight": torch.ones(2, 5)}, p)


def make_1d_weight(p):
    _save({"a.weight": torch.ones(4, 3), "ln.weight": torch.ones(4)}, p)


def make_5d_weight(p):
    _save({"conv3d.weight": torch.ones(2, 2, 1, 1, 1)}, p)


def make_empty_state_dict(p):
    _save({}, p)


def make_zero_size_layer(p):
    _save({"a.weight": torch.ones(0, 3)}, p)


def make_cycle_in_topology(p):
    topo = {"version": 1, "inputs": [["x", 2]], "sinks": ["b"], "groups": [["x", 2], ["a", 2], ["b", 2]],
            "blocks": [{"kind": "weighted", "name": "w1", "src": "x", "dst": "a", "conv_groups": 1, "bias": None},
                       {"kind": "weighted", "name": "w2", "src": "a", "dst": "b", "conv_groups": 1, "bias": None},
                       {"kind": "identity", "name": "back", "src": "b", "dst": "a"}],
            "constants": {}, "warnings": []}
    _save({"state_dict": {"w1": torch.ones(2, 2), "w2": torch.ones(2, 2)}, "netgraph": {"topology": topo}}, p)


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def make_safetensors_lying_header(p):
    _write(p, _safetensors_bytes({"w.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}, b"\0" * 16))


def make_safetensors_duplicate_key(p):
    h = ('{"w.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}, '
         '"w.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}}').encode()
    _write(p, struct.pack("<Q", len(h)) + h + b"\0" * 4)


def make_safetensors_truncated_header(p):
    _write(p, struct.pack("<Q", 10_000) + b'{"w": ')


def make_deflated_zip(p):
    buf = io.BytesIO()
    torch.save(_good_sd(), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename))


def make_torchscript(p):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = torch.jit.script(torch.nn.Linear(2, 2))
        torch.jit.save(m, str(p))


def make_directory(p):
    p.mkdir()


def make_ambiguous(p):
    _save({"x.weight": torch.ones(4, 3), "y.weight": torch.ones(4, 4), "a.weight": torch.ones(4, 4)}, p)


def make_parametrize_original(p):
    _save({"0.parametrizations.weight.original": torch.ones(4, 3), "0.bias": torch.zeros(4)}, p)


CASES = [
    ("ao-parametrize", make_parametrize_original, "squash_mask"),
    ("pickle-runs-code", make_pickle_code, "refused"),
    ("legacy-pickle", make_legacy_pickle, "legacy"),
    ("truncated", make_truncated, "corrupt or truncated"),
    ("zero-byte", make_zero_byte, "empty"),
    ("garbage", make_garbage, "neither a torch.save zip archive nor a safetensors"),
    ("non-binary-mask", make_non_binary_mask, "must be 0 or 1"),
    ("nan-mask", make_nan_mask, "NaN"),
    ("inf-weight", make_nan_weight, "Inf"),
    ("mask-shape-mismatch", make_shape_mismatch, "must match"),
    ("non-chaining", make_non_chaining, "do not chain"),
    ("1d-weight", make_1d_weight, "1 dimension"),
    ("5d-weight", make_5d_weight, "5 dimension"),
    ("empty-state-dict", make_empty_state_dict, "empty"),
    ("zero-size-layer", make_zero_size_layer, "empty"),
    ("cycle", make_cycle_in_topology, "cycle"),
    ("safetensors-lying-header", make_safetensors_lying_header, "claims bytes"),
    ("safetensors-duplicate-key", make_safetensors_duplicate_key, "repeats key"),
    ("safetensors-truncated-header", make_safetensors_truncated_header, "truncated"),
    ("deflated-zip", make_deflated_zip, "compressed"),
    ("torchscript", make_torchscript, "TorchScript"),
    ("directory", make_directory, "directory"),
    ("ambiguous-chain", make_ambiguous, "ambiguous"),
]


@pytest.mark.parametrize("command", ["audit", "repair"])
@pytest.mark.parametrize("name, make, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_error_and_exit_2(tmp_path, capsys, name, make, expected, command):
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    src = tmp_path / "model.pt"
    make(src)
    out = tmp_path / "out.pt"
    argv = ["audit", str(src)] if command == "audit" else ["repair", str(src), "-o", str(out)]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("netgraph: error: ")
    assert str(src) in lines[0]  # names the file
    assert expected.lower() in lines[0].lower()
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert not out.exists()
    assert not os.path.exists(MARKER), "a pickle ran code"
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".netgraph-")] == []


def test_debug_shows_the_traceback(tmp_path):
    src = tmp_path / "z.pt"
    src.write_bytes(b"")
    from netgraph.errors import BadCheckpoint

    with pytest.raises(BadCheckpoint):
        main(["--debug", "audit", str(src)])


def test_weights_only_holds_even_with_the_escape_hatch_set(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    src = tmp_path / "evil.pt"
    make_pickle_code(src)
    assert main(["audit", str(src)]) == 2
    assert not os.path.exists(MARKER)
