"""A user's own model and checkpoints, end to end through the CLI, in a temporary folder.

``mymodel.py`` sits beside the checkpoints; ``--model mymodel:make_cnn`` must work from
that folder without ``PYTHONPATH``.  Each checkpoint layout users produce (prune format,
plain, DataParallel ``module.``, ``torch.compile`` ``_orig_mod.``, Lightning ``model.``
inside a ``state_dict`` wrapper, safetensors) is repaired and compacted; the rule checked
is the output contract of issue 9: whatever user code loads the input loads the output
(``load_state_dict`` into a fresh model), and prune / compact outputs compute the same
function as the input in float64 (the oracle is the input model itself).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torch.nn.utils import prune

from netgraph.cli import main

MYMODEL = textwrap.dedent('''
    import torch.nn as nn


    def make_cnn(num_classes=10, widths=(8, 8)):
        w1, w2 = widths
        return nn.Sequential(
            nn.Conv2d(3, w1, 3, padding=1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(),
            nn.Conv2d(w1, w2, 3, padding=1, bias=False), nn.BatchNorm2d(w2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w2, num_classes))
''')
KWARGS = '{"num_classes": 5}'
SHAPE = (1, 3, 6, 6)
MODEL = ["--model", "mymodel:make_cnn", "--model-kwargs", KWARGS, "--input-shape", ",".join(map(str, SHAPE))]
PRUNABLE = ("0.weight", "3.weight", "8.weight")


def _make_cnn(num_classes=5, widths=(8, 8)):
    ns: dict = {}
    exec(compile(MYMODEL, "mymodel.py", "exec"), ns)  # the very code the CLI imports
    return ns["make_cnn"](num_classes=num_classes, widths=widths)


def _pruned_model() -> nn.Module:
    """A pruned CNN with dead weights (a conv channel cut off, a linear input unread) and
    constant weights (BN shifts of a channel whose inputs are all pruned)."""
    torch.manual_seed(0)
    m = _make_cnn()
    with torch.no_grad():
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
    prune.global_unstructured([(m[i], "weight") for i in (0, 3, 8)], pruning_method=prune.L1Unstructured, amount=0.7)
    with torch.no_grad():
        m[3].weight_mask[2] = 0  # channel 2 of the second conv gets no input: its BN shift is constant
        m[8].weight_mask[:, 5] = 0  # channel 5 reaches no output: the weights into it are dead
        m[0].weight_mask[:, :, 0, 0] = 1  # enough kept weights to have something to reconnect
    return m.eval()


def _plain(sd):
    out = collections.OrderedDict()
    for k, v in sd.items():
        if k.endswith("_mask"):
            continue
        if k.endswith("_orig"):
            base = k[: -len("_orig")]
            out[base] = v * sd[base + "_mask"]
        else:
            out[k] = v
    out._metadata = getattr(sd, "_metadata", None)
    return out


# Each layout: how the user saved it, and the user code that loads it into a fresh model.
def _save_prune(sd, path):
    torch.save(sd, path)


def _save_plain(sd, path):
    torch.save(_plain(sd), path)


def _save_ddp(sd, path):
    torch.save({"state_dict": {"module." + k: v for k, v in _plain(sd).items()}, "epoch": 7}, path)


def _save_compiled(sd, path):
    torch.save({"_orig_mod." + k: v for k, v in _plain(sd).items()}, path)


def _save_lightning(sd, path):
    torch.save({"state_dict": {"model." + k: v for k, v in _plain(sd).items()}, "global_step": 3}, path)


def _save_safetensors(sd, path):
    save_file({k: v.contiguous() for k, v in _plain(sd).items()}, path, metadata={"format": "pt", "owner": "me"})


def _load_prune(path, model):
    for i in (0, 3, 8):
        prune.identity(model[i], "weight")
    model.load_state_dict(torch.load(path, weights_only=True))


def _load_plain(path, model):
    model.load_state_dict(torch.load(path, weights_only=True))


def _load_ddp(path, model):
    sd = torch.load(path, weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})


def _load_compiled(path, model):
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in torch.load(path, weights_only=True).items()})


def _load_lightning(path, model):
    sd = torch.load(path, weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in sd.items()})


def _load_safetensors(path, model):
    model.load_state_dict(load_file(path))


LAYOUTS = {
    "prune.pt": (_save_prune, _load_prune),
    "plain.pt": (_save_plain, _load_plain),
    "ddp.pt": (_save_ddp, _load_ddp),
    "compiled.pt": (_save_compiled, _load_compiled),
    "lightning.ckpt": (_save_lightning, _load_lightning),
    "plain.safetensors": (_save_safetensors, _load_safetensors),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``mymodel.py`` and one checkpoint per layout, plus dense scores for reconnect."""
    d = tmp_path_factory.mktemp("user")
    (d / "mymodel.py").write_text(MYMODEL)
    m = _pruned_model()
    sd = m.state_dict()
    for name, (save, _) in LAYOUTS.items():
        save(sd, d / name)
    torch.save({k.removesuffix("_orig"): v for k, v in sd.items() if k.endswith("_orig")}, d / "dense.pt")
    return d


@pytest.fixture()
def cwd(folder, monkeypatch):
    monkeypatch.chdir(folder)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    return folder


def _reference() -> nn.Module:
    return _pruned_model().double()


def _x() -> torch.Tensor:
    return torch.randn((4,) + SHAPE[1:], generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _widths(model_sd) -> tuple[int, int]:
    sd = {k.removesuffix("_orig"): v for k, v in model_sd.items()}
    return int(sd["0.weight"].shape[0]), int(sd["3.weight"].shape[0])


def _fresh_for(path) -> nn.Module:
    """A fresh model of the output's widths (compaction makes layers narrower)."""
    if str(path).endswith(".safetensors"):
        sd = load_file(path)
    else:
        obj = torch.load(path, weights_only=True)
        sd = obj.get("state_dict", obj)
    sd = {k.split(".", 1)[1] if k.startswith(("module.", "_orig_mod.", "model.")) else k: v for k, v in sd.items()}
    return _make_cnn(widths=_widths(sd))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("mode", ["prune", "compact"])
def test_outputs_load_back_and_compute_the_same(cwd, layout, mode, capsys):
    out = cwd / f"{mode}-{layout}"
    cmd = ["compact"] if mode == "compact" else ["repair", "--mode", "prune"]
    assert main([*cmd, layout, *MODEL, "-o", str(out), "--verify"]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    if layout in ("ddp.pt", "compiled.pt", "lightning.ckpt"):
        notes = [ln for ln in err.splitlines() if "fit the model" in ln]
        assert len(notes) == 1, err  # one line says what was mapped
    _, load = LAYOUTS[layout]
    fresh = _fresh_for(out)
    load(out, fresh)  # the user's own loading code works on the output
    fresh = fresh.double().eval()
    with torch.no_grad():
        want, got = _reference()(_x()), fresh(_x())
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    if mode == "compact":
        assert _widths(fresh.state_dict())[1] < 8  # a dead channel was removed
    # same file format, same container, same keys as the input
    src = cwd / layout
    if layout.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(out, "pt") as f:
            md = f.metadata()
        assert md["owner"] == "me" and md["format"] == "pt" and "netgraph" in md
        assert set(load_file(out)) == set(load_file(src))
    else:
        a, b = torch.load(src, weights_only=True), torch.load(out, weights_only=True)
        assert type(a) is type(b)
        if "state_dict" in a:
            assert set(b) - {"netgraph"} == set(a) and set(b["state_dict"]) == set(a["state_dict"])
        else:
            assert set(b) == set(a)  # no "netgraph" entry in a bare state_dict: the sidecar holds it
            assert (cwd / (out.name + ".netgraph.json")).exists()
    # netgraph finds the stored topology without the model code
    assert main(["audit", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["topology"] == "stored"


@pytest.mark.parametrize("layout", ["prune.pt", "plain.pt", "ddp.pt", "plain.safetensors"])
def test_reconnect_output_loads_and_has_no_new_parameter(cwd, layout, capsys):
    out = cwd / f"reconnect-{layout}"
    extra = [] if layout == "prune.pt" else ["--scores", "dense.pt", "--new-values", "dense.pt"]
    assert main(["repair", layout, *MODEL, "--mode", "reconnect", "-o", str(out), "--format", "json", *extra]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["after"]["summary"]["dead"] == 0 and payload["added"] > 0
    _, load = LAYOUTS[layout]
    fresh = _make_cnn()
    load(out, fresh)  # strict: no bias appeared on the bias=False convs
    assert fresh[0].bias is None and fresh[3].bias is None
    if layout != "prune.pt":  # plain weights: the added ones carry the values chosen (--new-values)
        dense = torch.load(cwd / "dense.pt", weights_only=True)
        before = _reference().float()
        for name in PRUNABLE:
            mod = fresh.get_submodule(name.split(".")[0])
            old = before.get_submodule(name.split(".")[0]).weight
            added = (mod.weight != 0) & (old == 0)
            assert torch.equal(mod.weight[added], dense[name][added])


def test_reconnect_of_plain_weights_asks_what_values_new_weights_get(cwd, capsys):
    assert main(["repair", "plain.pt", *MODEL, "--mode", "reconnect", "--scores", "dense.pt", "-o", "r.pt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--new-values" in err and not (cwd / "r.pt").exists()
    assert main(["repair", "plain.pt", *MODEL, "--mode", "reconnect", "-o", "r.pt"]) == 2
    assert "--scores" in capsys.readouterr().err


def test_the_current_folder_is_importable_without_pythonpath(folder, tmp_path):
    """The console script (not ``python -m``, which adds the folder itself)."""
    exe = shutil.which("netgraph") or os.path.join(os.path.dirname(sys.executable), "netgraph")
    if not os.path.exists(exe):
        pytest.skip("the netgraph console script is not installed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([exe, "audit", "ddp.pt", *MODEL, "--format", "json"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["layers"][0]["name"] == "0.weight"
    # path/to/file.py:factory from another folder
    spec = f"{folder / 'mymodel.py'}:make_cnn"
    proc = subprocess.run([exe, "audit", str(folder / "plain.pt"), "--model", spec, "--model-kwargs", KWARGS,
                           "--input-shape", "1,3,6,6", "--format", "json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_audit_with_the_model_equals_audit_of_each_layout(cwd, capsys):
    reports = []
    for layout in LAYOUTS:
        assert main(["audit", layout, *MODEL, "--format", "json"]) == 0
        reports.append([{k: v for k, v in layer.items() if k != "name"}
                        for layer in json.loads(capsys.readouterr().out)["layers"]])
    assert all(r == reports[0] for r in reports)
    assert sum(layer["dead"] for layer in reports[0]) > 0


@pytest.mark.parametrize("keys, argv, message", [
    ("net.", [], "does not fit the model"),
    ("net.", ["--key-prefix", "net."], None),
    ("", ["--model", "mymodel:nope"], "has no attribute 'nope'"),
    ("", ["--model", "sys:exit"], "calling the factory failed"),
    ("", ["--model-kwargs", "[1]"], "JSON object"),
    ("", ["--model-kwargs", '{"bogus": 1}'], "calling the factory failed"),
], ids=["unknown-prefix", "key-prefix", "no-attr", "sys-exit", "kwargs-not-object", "kwargs-wrong"])
def test_model_option_errors_are_one_line(cwd, capsys, keys, argv, message):
    path = cwd / f"keys-{keys or 'plain'}.pt"
    sd = torch.load(cwd / "plain.pt", weights_only=True)
    torch.save({keys + k: v for k, v in sd.items()}, path)
    args = ["audit", str(path), *MODEL, *argv]
    rc = main(args)
    err = capsys.readouterr().err
    if message is None:
        assert rc == 0, err
        return
    assert rc == 2 and err.count("\n") == 1 and message in err and len(err) < 400, err
    if keys:
        assert "'net.0.weight'" in err or "net.0" in err  # the first unmatched keys are named


def test_fail_on_dead_names_the_layers(cwd, capsys):
    assert main(["audit", "prune.pt", *MODEL, "--fail-on-dead"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fail-on-dead" in err[0]
    assert main(["audit", "prune.pt", *MODEL, "--format", "json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    for layer in layers:  # every layer with dead weights is named with its count
        if layer["dead"]:
            assert f"{layer['name']} {layer['dead']:,}" in err[0]


def test_metadata_mode_and_ordereddict_survive_the_checkpoint_repair(tmp_path, capsys):
    """The no-model path keeps a state_dict's ``_metadata`` (BatchNorm versions), a
    safetensors file's own metadata, and the umask's file mode."""
    m = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    prune.l1_unstructured(m[0], "weight", amount=0.5)
    with torch.no_grad():
        m[2].weight[:, 0] = 0  # unit 0 of the hidden layer reaches nothing: its weights are dead
    src = tmp_path / "bn.pt"
    torch.save(m.state_dict(), src)
    old = os.umask(0o022)
    try:
        assert main(["repair", str(src), "-o", str(tmp_path / "out.pt")]) == 0
    finally:
        os.umask(old)
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    assert type(out) is collections.OrderedDict
    assert out._metadata == torch.load(src, weights_only=True)._metadata
    assert (os.stat(tmp_path / "out.pt").st_mode & 0o777) == 0o644
    plain = {k: v.contiguous() for k, v in nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 3)).state_dict().items()}
    plain["1.weight"][:, 0] = 0
    save_file(plain, tmp_path / "m.safetensors", metadata={"owner": "me", "format": "pt"})
    old = os.umask(0o022)
    try:
        assert main(["repair", str(tmp_path / "m.safetensors"), "-o", str(tmp_path / "o.safetensors")]) == 0
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "o.safetensors").st_mode & 0o777) == 0o644  # safetensors writes 0600 itself
    from safetensors import safe_open

    with safe_open(tmp_path / "o.safetensors", "pt") as f:
        assert {k: v for k, v in f.metadata().items() if k != "netgraph"} == {"owner": "me", "format": "pt"}
    out = load_file(tmp_path / "o.safetensors")
    assert np.count_nonzero(out["0.weight"][0].numpy()) == 0  # the dead row was pruned


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.from_regex(r"[a-z]{1,4}(\.[0-9]){0,2}\.(weight|bias)", fullmatch=True), min_size=1,
                      max_size=6, unique=True),
       stack=st.lists(st.sampled_from(["module.", "_orig_mod.", "model."]), max_size=2),
       pruned=st.booleans())
def test_match_prefix_recovers_any_stack_of_known_prefixes(names, stack, pruned):
    """Oracle: the prefix that was put on is the one found (the model's own names, 1–4
    letters, never start with a known prefix, so exactly one reading fits)."""
    from netgraph.cli._keys import match_prefix

    prefix = "".join(stack)
    keys = []
    for n in names:
        keys += [prefix + n + "_orig", prefix + n + "_mask"] if pruned and n.endswith("weight") else [prefix + n]
    assert match_prefix("f.pt", "m:f", keys, set(names), None) == prefix
