"""Without model code the audit never silently assumes a chain (issue 8, item 3).

One test per no-model case of the issue: each file is audited through the CLI (exit code,
one stderr line, no traceback) and, where it is not refused, checked weight by weight
against the traced model: a weight the file-only audit calls dead must be dead in the trace
(soundness); the assumption must be stated in the text and the JSON output.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings

from netgraph import (
    ChainNotInferable,
    audit,
    graph_from_checkpoint,
    load_checkpoint,
    reachability,
    trace_model,
)
from netgraph.cli import main
from netgraph.testing.models import VGG, ResNet, randomize_bn, resnet18_like
from netgraph.testing._strategies import pruned_models


def _cli(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out.out, out.err


def _refused_cleanly(rc, out, err, path):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netgraph: error: "), err
    assert str(path) in lines[0] and "--model" in lines[0]
    assert out == ""


def _assert_sound(model, shape, path):
    """No weight that the traced model keeps alive is called dead from the file alone."""
    ckpt = load_checkpoint(path)
    graph = graph_from_checkpoint(ckpt)
    assert graph.topology == "inferred-chain"
    r = reachability(graph)
    masks = {k: w.mask for k, w in ckpt.prunable().items()}
    traced = trace_model(model, shape)
    live = traced.weight_states()
    rep_file, rep_model = audit(graph, r), traced.audit()
    for name, states in live.items():
        said = r.weight_states(graph.block(name), masks[name]).effective
        missed = states.effective & ~said
        assert not missed.any(), f"{name}: {int(missed.sum())} live weight(s) called dead"
        assert rep_file.layer(name).dead <= rep_model.layer(name).dead
    assert rep_file.summary.collapsed <= rep_model.summary.collapsed


def _prune(model, rate, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_((torch.rand(m.weight.shape, generator=gen) >= rate).float())
    return model


# -- 1. a residual stage whose residual branch is fully pruned ---------------------------------

class _ResidualStage(nn.Module):
    """stem -> (conv1, conv2) + identity -> head; no key names the skip."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.head = nn.Linear(c * 4, 5)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        x = F.relu(x + y)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 2), 1))


def test_fully_pruned_residual_branch_is_not_called_collapsed(tmp_path, capsys):
    gen = torch.Generator().manual_seed(0)
    model = randomize_bn(_ResidualStage(), gen).eval()
    with torch.no_grad():
        model.conv1.weight.zero_()  # the residual branch: fully pruned
        model.conv2.weight.zero_()
    path = tmp_path / "res.pt"
    torch.save(model.state_dict(), path)
    traced = trace_model(model, (1, 3, 8, 8)).audit()
    assert not traced.summary.collapsed and traced.summary.effective > 0  # the skip carries the signal
    rc, out, _ = _cli(capsys, "audit", str(path), "--format", "json")
    assert rc == 0
    rep = json.loads(out)
    assert rep["summary"]["topology"] == "inferred-chain"
    assert not rep["summary"]["collapsed"]
    assert rep["summary"]["effective"] >= traced.summary.effective
    assert any("would be dead in a plain chain" in w for w in rep["warnings"])  # says what the skips did
    _assert_sound(model, (1, 3, 8, 8), path)
    # the plain chain, asked for explicitly, is what the old audit said: collapsed
    plain = audit(graph_from_checkpoint(load_checkpoint(path), skips="none"))
    assert plain.summary.collapsed and plain.summary.effective == 0


def test_concatenation_before_the_flatten_is_covered(tmp_path):
    """cat([x, conv0(x), conv1(x)]).flatten(): the head reads conv1's channel 0 at features
    24..27, which a plain chain maps to conv1's channel 2 (24 // 12)."""
    from netgraph.testing.models import SpecNet

    spec = {"kind": "conv", "in": 3, "size": 2, "layers": [{"op": "cat", "out": 3}], "head": [], "bias": False,
            "out": 2}
    model = SpecNet(spec).eval()
    with torch.no_grad():
        model.head[0].weight.zero_()
        model.head[0].weight[:, 24:28] = 1.0
    path = tmp_path / "cat.pt"
    torch.save(model.state_dict(), path)
    _assert_sound(model, (1, 3, 2, 2), path)
    plain = graph_from_checkpoint(load_checkpoint(path), skips="none")  # what a silent chain says
    r = reachability(plain)
    mask = load_checkpoint(path).prunable()["body.0.1.0.weight"].mask
    said = r.weight_states(plain.block("body.0.1.0.weight"), mask).effective
    assert (trace_model(model, (1, 3, 2, 2)).weight_states()["body.0.1.0.weight"].effective & ~said).any()


# -- 2. a torchvision-style ResNet-18 state_dict ----------------------------------------------------

def test_resnet18_state_dict_is_refused_cleanly(tmp_path, capsys):
    path = tmp_path / "resnet18.pt"
    torch.save(resnet18_like().state_dict(), path)
    rc, out, err = _cli(capsys, "audit", str(path))
    _refused_cleanly(rc, out, err, path)
    assert "downsample" in err
    rc, out, err = _cli(capsys, "repair", str(path), "-o", str(tmp_path / "out.pt"))
    _refused_cleanly(rc, out, err, path)
    assert not (tmp_path / "out.pt").exists()


def test_resnet_with_renamed_shortcuts_is_refused_or_sound(tmp_path, capsys):
    """Without the tell-tale word the file must still be refused, or audited soundly."""
    gen = torch.Generator().manual_seed(1)
    model = _prune(randomize_bn(ResNet((4, 8, 8, 8), (1, 1, 1, 1)), gen), 0.8, gen).eval()
    sd = {k.replace("downsample", "ds"): v for k, v in model.state_dict().items()}
    path = tmp_path / "renamed.pt"
    torch.save(sd, path)
    rc, out, err = _cli(capsys, "audit", str(path))
    _refused_cleanly(rc, out, err, path)


@pytest.mark.parametrize("key", ["block.shortcut.0.weight", "skip.weight", "res_residual.weight",
                                 "attn.proj.weight", "layer1.0.downsample.0.weight", "Down.ShortCut_conv.weight"])
def test_a_key_that_names_a_skip_is_refused(tmp_path, capsys, key):
    sd = {"a.weight": torch.ones(4, 3), key: torch.ones(4, 4), "z.weight": torch.ones(2, 4)}
    path = tmp_path / "named.pt"
    torch.save(sd, path)
    rc, out, err = _cli(capsys, "audit", str(path))
    _refused_cleanly(rc, out, err, path)
    assert repr(key) in err


# -- 3. an MLP with a non-elementwise op between layers ----------------------------------------------

class _CumsumMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(12, 16), nn.Linear(16, 10), nn.Linear(10, 4)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(torch.cumsum(F.relu(self.fc1(x)), dim=1))))


def test_non_elementwise_op_is_stated_as_an_assumption(tmp_path, capsys):
    gen = torch.Generator().manual_seed(2)
    model = _prune(_CumsumMLP(), 0.9, gen).eval()
    path = tmp_path / "cumsum.pt"
    torch.save(model.state_dict(), path)
    rc, out, _ = _cli(capsys, "audit", str(path), "--format", "json")
    assert rc == 0
    rep = json.loads(out)
    assert rep["summary"]["topology"] == "inferred-chain"
    first = rep["warnings"][0]
    assert "assumed the chain fc1.weight -> fc2.weight -> fc3.weight" in first
    assert "cumsum" in first and "--model" in first
    rc, text, _ = _cli(capsys, "audit", str(path))
    assert rc == 0
    assert "topology: inferred-chain" in text.splitlines()[0]
    assert "warning: topology inferred from the weight shapes without model code" in text
    assert "mixes units" in text


# -- 4. torchvision-style features.N / classifier.N with equal-shaped convs ----------------------------

def test_torchvision_style_prefixes_are_ordered_by_shapes(tmp_path, capsys):
    gen = torch.Generator().manual_seed(3)
    model = _prune(randomize_bn(VGG(), gen), 0.9, gen).eval()  # features: 16->16 twice; classifier 32->32
    shape = (1, 3, 16, 16)
    path = tmp_path / "vgg.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    pt = tmp_path / "vgg.pt"
    torch.save(model.state_dict(), pt)
    rc, out, _ = _cli(capsys, "audit", str(pt), "--format", "json")
    assert rc == 0
    names = [layer["name"] for layer in json.loads(out)["layers"]]
    traced = trace_model(model, shape)
    assert names == [b.name for b in traced.graph.weighted_blocks]  # features first, each in number order
    _assert_sound(model, shape, pt)
    _assert_sound(model, shape, path)
    # trusting the chain (which it is), the file alone gives the traced channel-level audit
    plain = audit(graph_from_checkpoint(load_checkpoint(pt), skips="none")).to_dict()
    exact = traced.audit(resolution="channel").to_dict()
    for d in (plain, exact):
        d["summary"].pop("topology")
    assert plain["layers"] == exact["layers"] and plain["summary"] == exact["summary"]


# -- 5. shapes that admit several orders ------------------------------------------------------

@pytest.mark.parametrize("sd", [
    {"encoder.0.weight": torch.ones(8, 8), "decoder.0.weight": torch.ones(8, 8)},  # same ends
    {"lin.weight": torch.ones(4, 4), "conv.weight": torch.ones(4, 4, 3, 3), "stem.weight": torch.ones(4, 3)},
], ids=["same-ends", "two-paths"])
def test_shapes_with_several_orders_are_refused(tmp_path, capsys, sd):
    path = tmp_path / "amb.pt"
    torch.save(sd, path)
    rc, out, err = _cli(capsys, "audit", str(path))
    _refused_cleanly(rc, out, err, path)
    assert "ambiguous" in err


def test_numbers_order_layers_within_a_prefix_even_against_the_shapes(tmp_path):
    # fc2 then fc1 is the only order the shapes allow, but the names say fc1 comes first
    sd = {"fc1.weight": torch.ones(2, 5), "fc2.weight": torch.ones(5, 3)}
    with pytest.raises(ChainNotInferable, match="consecutive in the numbers of their names"):
        from netgraph import checkpoint_from_state_dict

        graph_from_checkpoint(checkpoint_from_state_dict(sd))


# -- property: random architectures without their code: refused or sound --------------------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pruned_models())
def test_random_models_without_code_are_refused_or_sound(tmp_path_factory, net):
    _refused_or_sound(tmp_path_factory, *net)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pruned_models(kind="conv"))
def test_random_conv_nets_with_residuals_and_concatenations_are_refused_or_sound(tmp_path_factory, net):
    _refused_or_sound(tmp_path_factory, *net)


def _refused_or_sound(tmp_path_factory, model, shape):
    path = tmp_path_factory.mktemp("nomodel") / "m.pt"
    torch.save(model.state_dict(), path)
    try:
        graph_from_checkpoint(load_checkpoint(path))
    except ChainNotInferable:
        event("refused")
        return
    event("audited")
    _assert_sound(model, shape, path)
