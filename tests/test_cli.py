"""The audit / repair command line, the JSON contract, import hygiene, doctests."""

from __future__ import annotations

import doctest
import inspect
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from netgraph.cli import main

JSON_SUMMARY = {"weights": int, "kept": int, "effective": int, "dead": int, "constant": int,
                "sparsity": float, "effective_sparsity": float, "collapsed": bool}
JSON_LAYER = {"name": str, "shape": list, "weights": int, "kept": int, "accessible": int, "coaccessible": int,
              "effective": int, "dead": int, "constant": int, "dead_units_in": int, "dead_units_out": int}


@pytest.fixture
def dead_ckpt(tmp_path):
    # fc1: 3 -> 4, fc2: 4 -> 2.  fc1 unit 3 gets a weight but feeds nothing: 1 dead weight.
    w1 = torch.zeros(4, 3)
    w1[0, 0] = w1[3, 1] = 1.0
    w2 = torch.zeros(2, 4)
    w2[0, 0] = 1.0
    p = tmp_path / "m.pt"
    torch.save({"fc1.weight_orig": torch.randn(4, 3), "fc1.weight_mask": (w1 != 0).float(),
                "fc2.weight": w2}, p)
    return p


def test_audit_json_contract(dead_ckpt, capsys):
    assert main(["audit", str(dead_ckpt), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["source"] == str(dead_ckpt)
    for k, t in JSON_SUMMARY.items():
        assert isinstance(d["summary"][k], t) and not (t is int and isinstance(d["summary"][k], bool)), k
    for layer in d["layers"]:
        for k, t in JSON_LAYER.items():
            assert isinstance(layer[k], t), k
    assert [l["name"] for l in d["layers"]] == ["fc1.weight", "fc2.weight"]  # user names, not _orig
    fc1 = d["layers"][0]
    assert (fc1["kept"], fc1["effective"], fc1["dead"], fc1["shape"]) == (2, 1, 1, [4, 3])
    assert d["summary"]["dead"] == 1 and d["summary"]["kept"] == 3
    assert d["summary"]["effective_sparsity"] == pytest.approx(1 - 2 / 20)
    assert isinstance(d["warnings"], list)


def test_fail_on_dead_exit_codes(dead_ckpt, tmp_path, capsys):
    assert main(["audit", str(dead_ckpt), "--fail-on-dead"]) == 1
    out = tmp_path / "fixed.pt"
    assert main(["repair", str(dead_ckpt), "-o", str(out)]) == 0
    assert main(["audit", str(out), "--fail-on-dead"]) == 0
    text = capsys.readouterr().out
    assert "fc1.weight" in text and "effective" in text


def test_repair_never_overwrites_input(dead_ckpt, capsys):
    before = dead_ckpt.read_bytes()
    assert main(["repair", str(dead_ckpt), "-o", str(dead_ckpt)]) == 2
    assert dead_ckpt.read_bytes() == before
    assert "is the input" in capsys.readouterr().err
    assert main(["repair", str(dead_ckpt), "-o", str(dead_ckpt), "--force"]) == 2  # not even with --force
    assert dead_ckpt.read_bytes() == before


def test_repair_prune_format_changes_only_the_mask(dead_ckpt, tmp_path):
    out = tmp_path / "fixed.pt"
    assert main(["repair", str(dead_ckpt), "-o", str(out)]) == 0
    a = torch.load(dead_ckpt, weights_only=True)
    b = torch.load(out, weights_only=True)
    assert torch.equal(a["fc1.weight_orig"], b["fc1.weight_orig"])
    assert b["fc1.weight_mask"].sum() == 1 and a["fc1.weight_mask"].sum() == 2


def test_python_dash_m_runs_the_same_command(dead_ckpt):
    proc = subprocess.run([sys.executable, "-m", "netgraph", "audit", str(dead_ckpt), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["dead"] == 1


def test_core_imports_neither_torch_nor_matplotlib_nor_siblings():
    code = ("import sys, netgraph; bad = [m for m in ('torch', 'matplotlib', 'trainer', 'viz', 'networkx') "
            "if m in sys.modules]; print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize("module", ["netgraph._graph", "netgraph._reach", "netgraph._audit", "netgraph._spec",
                                    "netgraph._export"])
def test_doctests(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


def test_long_refusals_are_cut_to_one_readable_line():
    from netgraph.cli import MAX_MESSAGE, one_line

    words = [f"key{i}" for i in range(2000)]
    text = "start of the rule: " + "\n".join(words) + " the fix: give --model"
    line = one_line(text)
    assert "\n" not in line and len(line) <= MAX_MESSAGE + 80
    assert line.startswith("start of the rule:") and line.endswith("the fix: give --model")
    cut = int(line.split("[... ")[1].split(" characters")[0].replace(",", ""))
    assert len(" ".join(text.split())) == len(line.split(" [... ")[0]) + cut + len(line.split("...] ")[1])


def test_repair_of_a_safetensors_file_with_batchnorm_between_equal_widths(tmp_path, capsys):
    """The written file is audited as the file it is (a safetensors file's key order says
    nothing about where a BatchNorm sits); it used to be refused after OUT was written."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 6),
                            torch.nn.Linear(6, 3))
    with torch.no_grad():
        m[0].weight[m[0].weight.abs() < 0.3] = 0
        m[2].weight[:, 1] = 0
    src, out = tmp_path / "bn.safetensors", tmp_path / "out.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, src)
    assert main(["repair", str(src), "-o", str(out), "--format", "json"]) == 0, capsys.readouterr().err
    after = json.loads(capsys.readouterr().out)["after"]
    assert main(["audit", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"] == after["layers"]


@pytest.mark.parametrize("command", ["audit", "repair", "compact"])
def test_every_option_says_its_default(command):
    """Issue 13: options defined once, each help line showing its default (or that it is
    required, or what omitting it means); the defaults are the library's own."""
    import argparse

    from netgraph.cli import build_parser
    from netgraph.io import repair_checkpoint

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        text = action.help % {"default": action.default} if action.help else ""
        assert "(default: " in text or "(required)" in text or "omitted:" in text, (command, action.option_strings)
    if command == "repair":
        mode = next(a for a in sub._actions if "--mode" in a.option_strings)
        assert mode.default == inspect.signature(repair_checkpoint).parameters["mode"].default


@pytest.mark.parametrize("with_model", [False, True])
def test_dash_o_safetensors_writes_safetensors(tmp_path, capsys, with_model):
    """Issue 9: ``-o X.safetensors`` from a torch file writes safetensors (it used to exit 2
    and leave a torch zip behind), with the same keys and the kept weights' values."""
    from safetensors.torch import load_file

    w1 = torch.zeros(4, 3)
    w1[0, 0] = w1[3, 1] = 1.0  # unit 3 feeds nothing: one dead weight
    w2 = torch.zeros(2, 4)
    w2[0, 0] = 1.0
    src = tmp_path / "in.pt"
    orig = torch.randn(4, 3)
    torch.save({"0.weight_orig": orig, "0.weight_mask": (w1 != 0).float(), "2.weight": w2}, src)
    out = tmp_path / "x.safetensors"
    model = ["--model", "netgraph.testing.models:mlp", "--model-kwargs", '{"widths": [3, 4, 2], "bias": false}',
             "--input-shape", "1,3"] if with_model else []
    assert main(["repair", str(src), "-o", str(out), *model]) == 0, capsys.readouterr().err
    assert out.read_bytes()[8:9] == b"{"  # a safetensors header, not a zip
    got = load_file(out)
    assert set(got) == {"0.weight_orig", "0.weight_mask", "2.weight"}
    assert torch.equal(got["0.weight_orig"], orig)  # prune format: only the mask changes
    assert got["0.weight_mask"].sum() == 1
