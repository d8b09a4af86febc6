"""`netgraph plot`: writes valid PNG / SVG / PDF files; bad input is a one-line error, exit 2, no file."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from netgraph.cli import main

torch = pytest.importorskip("torch")


@pytest.fixture
def ckpt(tmp_path):
    """A pruned 6-5-4-3 MLP in torch's prune format, with dead weights and a constant one."""
    m1 = np.array([[1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0],
                   [1, 0, 0, 0, 0, 1]], np.float32)
    m2 = np.array([[1, 1, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 1, 0, 1], [0, 0, 0, 0, 0]], np.float32)
    m3 = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], np.float32)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, m in (("fc1", m1), ("fc2", m2), ("fc3", m3)):
        sd[f"{name}.weight_orig"] = torch.randn(m.shape, generator=g)
        sd[f"{name}.weight_mask"] = torch.from_numpy(m)
        sd[f"{name}.bias"] = torch.ones(m.shape[0])  # every unit emits a constant
    path = tmp_path / "net.pt"
    torch.save(sd, path)
    return path


@pytest.fixture
def results(tmp_path):
    rows = [{"method": m, "rate": r, "kept": 10, "effective_pct": e, "accuracy": a, "extra": "ignored"}
            for m, r, e, a in (("MP w/o TC", 0.5, 90.0, 80.0), ("MP w/o TC", 0.9, 60.0, 70.0),
                               ("MP w TC", 0.5, 100.0, 81.0), ("MP w TC", 0.9, 100.0, 78.0))]
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps(rows))
    return path


def check_file(path, ext):
    data = path.read_bytes()
    assert len(data) > 200
    if ext == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    elif ext == "pdf":
        assert data[:5] == b"%PDF-" and data.rstrip().endswith(b"%%EOF")
    else:
        assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
@pytest.mark.parametrize("argv", [
    pytest.param(["masks", "{ckpt}"], id="masks-all-layers"),
    pytest.param(["masks", "{ckpt}", "--layer", "fc2.weight", "--crop", "0,3,1,5", "--show-constant"],
                 id="masks-layer-crop"),
    pytest.param(["masks", "{ckpt}", "--layer", "fc*.weight"], id="masks-glob-diagonal"),
    pytest.param(["connectivity", "{ckpt}"], id="connectivity-layered"),
    pytest.param(["connectivity", "{ckpt}", "--style", "bars"], id="connectivity-bars"),
    pytest.param(["receptive", "{ckpt}", "--image-shape", "2,3"], id="receptive"),
    pytest.param(["connectivity", "{ckpt}", "--compare", "{ckpt}"], id="connectivity-compare"),
    pytest.param(["ablation", "{results}"], id="ablation"),
])
def test_plot_writes_a_valid_file(tmp_path, ckpt, results, capsys, argv, ext):
    out = tmp_path / f"figure.{ext}"
    args = ["plot"] + [a.format(ckpt=ckpt, results=results) for a in argv] + ["-o", str(out)]
    assert main(args) == 0
    check_file(out, ext)
    assert capsys.readouterr().out.strip() == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["net.pt", "ablation.json", out.name])


@pytest.mark.parametrize("argv, message", [
    pytest.param(["masks", "{ckpt}", "--layer", "fc9.weight"], "no prunable weight named 'fc9.weight'",
                 id="unknown-layer"),
    pytest.param(["masks", "{ckpt}", "--layer", "fc1.weight", "--crop", "0,9,0,3"], "does not fit",
                 id="crop-outside"),
    pytest.param(["masks", "{ckpt}", "--layer", "fc1.weight", "--crop", "0,2,x,3"], "four comma-separated",
                 id="crop-not-integers"),
    pytest.param(["masks", "{ckpt}", "--layer", "fc1.weight", "--crop", "0,2,3"], "four comma-separated",
                 id="crop-three-values"),
    pytest.param(["masks", "{ckpt}", "--crop", "0,2,0,3"], "--crop needs --layer", id="crop-without-layer"),
    pytest.param(["masks", "{tmp}/missing.pt"], "no such file", id="missing-checkpoint"),
    pytest.param(["masks", "{results}"], "ablation.json", id="json-as-checkpoint"),
    pytest.param(["receptive", "{ckpt}", "--image-shape", "4,4"], "input_shape", id="image-shape"),
    pytest.param(["receptive", "{ckpt}", "--image-shape", "2x3"], "separated by commas", id="image-shape-x"),
    pytest.param(["connectivity", "{ckpt}", "--style", "layered", "--max-units", "10"], "readable up to 10 units",
                 id="layered-too-big"),
    pytest.param(["connectivity", "{ckpt}", "--compare", "{ckpt}", "--style", "bars"], "--compare",
                 id="compare-bars"),
    pytest.param(["receptive", "{ckpt}", "--group", "nope"], "no group named 'nope'", id="unknown-group"),
    pytest.param(["ablation", "{ckpt}"], "net.pt", id="checkpoint-as-json"),
    pytest.param(["ablation", "{tmp}/missing.json"], "no such file", id="missing-json"),
])
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, ckpt, results, capsys, argv, message):
    out = tmp_path / "figure.png"
    args = ["plot"] + [a.format(ckpt=ckpt, results=results, tmp=tmp_path) for a in argv] + ["-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("netgraph: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize("name", ["figure.jpg", "figure", "figure.png.tmp"])
def test_unknown_extension_is_refused_before_any_work(tmp_path, ckpt, capsys, name):
    out = tmp_path / name
    assert main(["plot", "masks", str(ckpt), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown image extension" in err and err.startswith("netgraph: error: ")
    assert not out.exists()


def test_missing_output_folder(tmp_path, ckpt, capsys):
    assert main(["plot", "connectivity", str(ckpt), "-o", str(tmp_path / "no" / "f.png")]) == 2
    assert "netgraph: error: " in capsys.readouterr().err


def test_existing_output_needs_force_and_the_input_is_never_replaced(tmp_path, ckpt, capsys):
    out = tmp_path / "f.png"
    out.write_bytes(b"old")
    assert main(["plot", "connectivity", str(ckpt), "-o", str(out)]) == 2
    assert out.read_bytes() == b"old"                      # refused before any work, nothing written
    assert main(["plot", "connectivity", str(ckpt), "-o", str(out), "--force"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    before = ckpt.read_bytes()
    assert main(["plot", "masks", str(ckpt), "-o", str(ckpt), "--force"]) == 2
    assert ckpt.read_bytes() == before


def _help(argv, capsys) -> str:
    assert main(argv + ["--help"]) == 0
    return capsys.readouterr().out


def test_help_lists_every_kind_and_every_option_has_help_and_default(capsys):
    import re

    top = _help(["plot"], capsys)
    for kind in ("masks", "connectivity", "receptive", "ablation"):
        assert kind in top
    for argv in (["plot", "masks"], ["plot", "connectivity"], ["plot", "receptive"], ["plot", "ablation"],
                 ["ablate"], ["demo"]):
        text = _help(argv, capsys)
        options = text.split("options:", 1)[1]
        # every option line (a flag at the start of an entry) carries a help text ending in its default
        entries = re.split(r"\n  (?=-)", options)
        for entry in entries[1:]:
            flag = entry.split()[0]
            if flag in ("-h,", "-h"):
                continue
            assert re.search(r"\((default: [^)]*|required)\)|omitted:", " ".join(entry.split())), (argv, flag)
    assert "1,3,224,224" in _help(["plot", "masks"], capsys)  # one spelling of shapes: commas


def test_ablate_defaults_are_the_configs():
    from dataclasses import fields

    trainer = pytest.importorskip("trainer")
    from netgraph.cli.ablate import DEFAULTS

    cfg = {f.name: f.default for f in fields(trainer.AblationConfig)}
    for key, value in DEFAULTS.items():
        assert cfg[key] == value, key


def test_usage_errors(capsys):
    assert main(["plot"]) == 2  # a kind is required
    assert main(["plot", "masks", "x.pt"]) == 2  # -o is required


def test_python_dash_m_runs_the_same_command(tmp_path, results):
    out = tmp_path / "a.svg"
    done = subprocess.run([sys.executable, "-m", "netgraph", "plot", "ablation", str(results), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    check_file(out, "svg")
    bad = subprocess.run([sys.executable, "-m", "netgraph", "plot", "ablation", str(results), "-o", "x.gif"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("netgraph: error: ") and "Traceback" not in bad.stderr


def test_plot_with_model_code_draws_the_traced_graph(tmp_path, ckpt, capsys):
    """--model (the shared model options): the graph comes from tracing the user's code."""
    code = tmp_path / "mymodel.py"
    code.write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(4, 3)\n"
        "    def forward(self, x):\n"
        "        return self.fc3(self.fc2(self.fc1(x).relu()).relu())\n"
        "def make():\n"
        "    return Net()\n")
    out = tmp_path / "net.png"
    assert main(["plot", "masks", str(ckpt), "--model", f"{code}:make", "-o", str(out)]) == 0
    check_file(out, "png")
    capsys.readouterr()
    import viz

    graph, masks, _ = viz.read_checkpoint(str(ckpt))  # the inferred chain: same masks as the traced model
    traced_out = tmp_path / "m2.png"
    assert main(["plot", "masks", str(ckpt), "--model", f"{code}:make", "--layer", "fc2.weight",
                 "-o", str(traced_out)]) == 0
    assert sorted(masks) == ["fc1.weight", "fc2.weight", "fc3.weight"]


def test_deeply_nested_ablation_json_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    out = tmp_path / "a.png"
    assert main(["plot", "ablation", str(deep), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nested too deeply" in err[0]
    assert not out.exists()
