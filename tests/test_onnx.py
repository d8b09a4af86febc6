"""ONNX: the audit from the ``.onnx`` file alone equals the traced audit of the model it was
exported from, prune write-back keeps the function, and hostile files get one line."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import torch.nn as nn  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from netgraph import trace_model  # noqa: E402
from netgraph.errors import BadCheckpoint, NetgraphError  # noqa: E402
from netgraph.io._onnx import audit_onnx, prune_onnx, read_onnx  # noqa: E402
from netgraph.testing.models import MODELS, prune_at_random as _prune  # noqa: E402


class GatedResNet(nn.Module):
    """Residual conv block with BN, a squeeze-excitation gate (x · σ(fc(pool x))), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.se1 = nn.Linear(8, 4)
        self.se2 = nn.Linear(4, 8)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        y = torch.relu(self.bn1(self.c1(x)))
        z = torch.relu(self.bn2(self.c2(y)) + y)
        g = torch.sigmoid(self.se2(torch.relu(self.se1(z.mean((2, 3))))))
        z = z * g[:, :, None, None]
        return self.fc(torch.flatten(nn.functional.max_pool2d(z, 2), 1))


def _export(model: nn.Module, shape, path, *, fold: bool = True) -> str:
    x = torch.randn(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(model, (x,), str(path), dynamo=False, do_constant_folding=fold)
    return str(path)


def _layers(report) -> dict[str, dict]:
    return {d["name"]: d for d in report.to_dict()["layers"]}


CASES = {
    "gated-resnet": (GatedResNet, (1, 3, 8, 8)),
    "mlp": (MODELS["mlp"][0], MODELS["mlp"][1]),
    "resnet": MODELS["resnet"],
    "vgg": MODELS["vgg"],
    "mobilenet": MODELS["mobilenet"],
    "densenet": MODELS["densenet"],
}


@pytest.mark.parametrize("fold", [True, False], ids=["bn-folded", "bn-kept"])
@pytest.mark.parametrize("name", ["gated-resnet", "mlp", "resnet"])
@pytest.mark.parametrize("rate", [0.7, 0.93])
def test_onnx_audit_equals_traced_audit(tmp_path, name, rate, fold):
    factory, shape = CASES[name]
    model = _prune(factory(), rate, seed=int(rate * 100))
    path = _export(model, shape, tmp_path / "m.onnx", fold=fold)
    got = audit_onnx(path)
    want = trace_model(model, shape).audit(source=path)
    assert set(_layers(got)) == set(_layers(want))
    for key, layer in _layers(want).items():
        assert _layers(got)[key] == layer, key
    assert got.to_dict()["summary"] == want.to_dict()["summary"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg", "mobilenet", "densenet"])
def test_onnx_audit_equals_traced_audit_zoo(tmp_path, name):
    factory, shape = CASES[name]
    model = _prune(factory(), 0.9, seed=3)
    path = _export(model, shape, tmp_path / "m.onnx")
    assert _layers(audit_onnx(path)) == _layers(trace_model(model, shape).audit(source=path))


def test_converted_graph_computes_the_model(tmp_path):
    model = _prune(GatedResNet(), 0.5, seed=1)
    m = read_onnx(_export(model, (1, 3, 8, 8), tmp_path / "m.onnx"))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(m.module(x[:1]).numpy(), model.double()(x[:1]).numpy(), atol=1e-5)


def test_prune_writes_onnx_back_function_unchanged(tmp_path):
    model = _prune(GatedResNet(), 0.95, seed=7)
    src = _export(model, (1, 3, 8, 8), tmp_path / "m.onnx", fold=False)
    before_audit = audit_onnx(src)
    assert before_audit.summary.dead > 0, "the fixture must have dead weights to remove"
    out = str(tmp_path / "out.onnx")
    before, after = prune_onnx(src, out)
    assert after.summary.dead == after.summary.constant  # only constant-fed weights may stay dead
    assert after.summary.kept == before.summary.kept - (before.summary.dead - before.summary.constant)
    assert after.summary.effective == before.summary.effective
    # the written file is still a valid ONNX model and computes the same function (float64)
    onnx.checker.check_model(onnx.load(out))
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    a, b = read_onnx(src).module, read_onnx(out).module
    with torch.no_grad():
        for i in range(4):
            np.testing.assert_allclose(b(x[i:i + 1]).numpy(), a(x[i:i + 1]).numpy(), rtol=0, atol=1e-9)
    # everything but the zeroed entries is unchanged
    src_w = {i.name: numpy_helper.to_array(i) for i in onnx.load(src).graph.initializer}
    out_w = {i.name: numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    assert src_w.keys() == out_w.keys()
    for k in src_w:
        changed = src_w[k] != out_w[k]
        assert not (out_w[k][changed]).any(), k  # only zeros were written


def _model(nodes, inits, inputs, outputs, opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _io(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_unknown_op_is_over_approximated_with_a_warning(tmp_path):
    w1 = numpy_helper.from_array(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32), "B1")  # (2, 3)
    w2 = numpy_helper.from_array(np.array([[1], [0], [1]], dtype=np.float32), "B2")  # (3, 1)
    nodes = [helper.make_node("MatMul", ["x", "B1"], ["h"], name="/fc1/MatMul"),
             helper.make_node("Hardmax", ["h"], ["s"], name="weird"),
             helper.make_node("MatMul", ["s", "B2"], ["y"], name="/fc2/MatMul")]
    path = tmp_path / "u.onnx"
    onnx.save(_model(nodes, [w1, w2], [_io("x", [1, 2])], [_io("y", [1, 1])]), str(path))
    rep = audit_onnx(path)
    assert any("Hardmax" in w for w in rep.warnings)
    # Hardmax mixes its inputs: unit 2 of h is unused by fc1 but every output of the opaque op
    # may be non-zero, so nothing downstream may be called dead
    assert rep.summary.dead == 0


def _write(tmp_path, name, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _valid_bytes(tmp_path) -> bytes:
    path = _export(_prune(MODELS["mlp"][0](), 0.5, 0), MODELS["mlp"][1], tmp_path / "v.onnx")
    with open(path, "rb") as fh:
        return fh.read()


def _hostile(tmp_path) -> dict[str, str]:
    valid = _valid_bytes(tmp_path)
    files = {
        "truncated": _write(tmp_path, "t.onnx", valid[: len(valid) // 2]),
        "garbage": _write(tmp_path, "g.onnx", b"\xff\xfe not a protobuf \x00" * 10),
        "empty": _write(tmp_path, "e.onnx", b""),
    }
    # declared shape far larger than the stored bytes
    lie = TensorProto(name="B", data_type=TensorProto.FLOAT, dims=[100000, 100000], raw_data=b"\x00" * 16)
    nodes = [helper.make_node("MatMul", ["x", "B"], ["y"])]
    p = tmp_path / "lie.onnx"
    onnx.save(_model(nodes, [lie], [_io("x", [1, 100000])], [_io("y", [1, 100000])]), str(p))
    files["shape-lie"] = str(p)
    # external data outside the folder
    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "B")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "../../etc/passwd", "offset": "0", "length": "16"}.items():
        e = w.external_data.add()
        e.key, e.value = k, v
    p = tmp_path / "ext.onnx"
    p.write_bytes(_model(nodes, [w], [_io("x", [1, 2])], [_io("y", [1, 2])]).SerializeToString())
    files["external-escape"] = str(p)
    # a node that reads a value no earlier node produces (cycle / not sorted)
    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "B")
    nodes = [helper.make_node("Relu", ["z"], ["y"]), helper.make_node("MatMul", ["y", "B"], ["z"])]
    p = tmp_path / "cyc.onnx"
    p.write_bytes(_model(nodes, [w], [_io("x", [1, 2])], [_io("z", [1, 2])]).SerializeToString())
    files["cycle"] = str(p)
    return files


@pytest.mark.parametrize("case", ["truncated", "garbage", "empty", "shape-lie", "external-escape", "cycle"])
def test_hostile_onnx_is_refused_in_one_line(tmp_path, case):
    path = _hostile(tmp_path)[case]
    with pytest.raises((BadCheckpoint, NetgraphError)) as info:
        audit_onnx(path)
    msg = str(info.value)
    assert "\n" not in msg and path in msg or os.path.basename(path) in msg


def test_hostile_onnx_through_the_cli(tmp_path, capsys):
    from netgraph.cli import main

    for case, path in _hostile(tmp_path).items():
        code = main(["audit", path])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, case
        assert len(err) == 1 and "Traceback" not in err[0], (case, err)


def test_cli_audit_and_repair_onnx(tmp_path, capsys):
    import json

    from netgraph.cli import main

    model = _prune(GatedResNet(), 0.95, seed=7)
    src = _export(model, (1, 3, 8, 8), tmp_path / "m.onnx")
    assert main(["audit", src, "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = trace_model(model, (1, 3, 8, 8)).audit(source=src).to_dict()
    assert got["layers"] == want["layers"]
    out = str(tmp_path / "fixed.onnx")
    assert main(["repair", src, "-o", out]) == 0
    capsys.readouterr()
    assert main(["audit", out, "--fail-on-dead", "--format", "json"]) in (0, 1)
    again = json.loads(capsys.readouterr().out)
    assert again["summary"]["dead"] == again["summary"]["constant"]


class _GateOnDeadChannel(nn.Module):
    """x · σ(g(pool x)) where every conv weight into channel 0 is pruned: the gate's weights
    into unit 0 multiply a channel that is always zero, so they are dead (a product is an
    intersection, not a union)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.g = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        gate = torch.sigmoid(self.g(x.mean((2, 3))))
        return self.head((self.conv(x) * gate[:, :, None, None]).mean((2, 3)))


def test_onnx_gate_on_a_dead_channel_is_an_intersection(tmp_path):
    from netgraph.testing import tap_probe

    model = _GateOnDeadChannel().eval()
    with torch.no_grad():
        model.conv.weight[0] = 0  # channel 0 of the value branch: no kept weight in
        model.g.bias.zero_()
    path = _export(model, (1, 3, 6, 6), tmp_path / "gate.onnx", fold=False)
    layers = _layers(audit_onnx(path))
    probe = tap_probe(model, (1, 3, 6, 6))
    g = layers["g.weight"]
    assert g["kept"] == 12 and g["effective"] == int(probe["g.weight"].sum()) == 9  # row 0 (3 weights) dead
    assert _layers(trace_model(model, (1, 3, 6, 6)).audit(source=path)) == layers
