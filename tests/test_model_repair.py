"""Model repair: prune and compact never change outputs, reconnect keeps the budget and
makes every kept weight effective; the CLI glue for ``--model``."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

from netgraph import NetgraphError, compact_model, pair_selector, prune_model, reconnect_model, trace_model, verify  # noqa: E402
from netgraph.cli import main  # noqa: E402
from netgraph.testing.models import MODELS, mlp, randomize_bn  # noqa: E402
from tests.strategies import pruned_models  # noqa: E402

TOL = 1e-9


def kept_masks(traced):
    out = {}
    for b in traced.graph.weighted_blocks:
        mod, param = traced.module(b.name)
        mask = getattr(mod, f"{param}_mask", None)
        out[b.name] = (mask != 0).numpy() if mask is not None else (getattr(mod, param).detach() != 0).numpy()
    return out


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model, snap):
    sd = model.state_dict()
    return set(sd) == set(snap) and all(torch.equal(sd[k], snap[k]) for k in snap)


def assert_reconnected(before, t2):
    """All kept weights effective; fewer kept than before only when no candidate is left."""
    after = t2.audit().summary
    assert after.dead == 0
    assert after.kept <= before.kept
    if after.kept < before.kept:  # only when every joinable pair is already kept
        r = t2.reachability()
        masks = kept_masks(t2)
        for b in t2.graph.weighted_blocks:
            cand = pair_selector(b, r.accessible[b.src], r.coaccessible[b.dst])
            assert not (cand & ~masks[b.name]).any()


# -- properties on random models ----------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(pruned_models())
def test_prune_and_compact_leave_outputs_unchanged(case):
    model, shape = case
    snap = snapshot(model)
    t = trace_model(model, shape)
    rep = t.audit()
    pruned = prune_model(model, t)
    assert verify(model, pruned, shape) <= TOL
    after = trace_model(pruned, shape).audit()
    assert after.summary.effective == rep.summary.effective
    assert after.summary.dead == after.summary.constant  # only constant weights stay dead
    compact = compact_model(model, t, repeats=0)
    assert verify(model, compact.model, shape) <= TOL
    assert compact.params_after <= compact.params_before
    assert unchanged(model, snap)  # the caller's model is never modified


@settings(max_examples=25, deadline=None)
@given(pruned_models())
def test_folding_constants_is_exact_in_float64(case):
    model, shape = case
    model = model.double()
    t = trace_model(model, shape)
    folded = prune_model(model, t, fold_constants=True)
    assert verify(model, folded, shape) <= TOL
    after = trace_model(folded, shape).audit()
    assert after.summary.constant <= t.audit().summary.constant
    assert after.summary.effective == t.audit().summary.effective


@settings(max_examples=25, deadline=None)
@given(pruned_models(kind="mlp", fmt="plain"))
def test_mlp_constants_always_fold(case):
    model, shape = case
    model = model.double()
    t = trace_model(model, shape)
    folded = prune_model(model, t, fold_constants=True)
    assert trace_model(folded, shape).audit().summary.dead == 0
    assert verify(model, folded, shape) <= TOL


@settings(max_examples=30, deadline=None)
@given(pruned_models(fmt="prune"))
def test_reconnect_keeps_the_count_and_is_fully_effective(case):
    model, shape = case
    t = trace_model(model, shape)
    before = t.audit().summary
    assert_reconnected(before, trace_model(reconnect_model(model, t), shape))


def test_dead_is_dead_and_constant_is_constant():
    torch.manual_seed(3)
    model = randomize_bn(MODELS["vgg"][0](), torch.Generator().manual_seed(3))
    prune.global_unstructured([(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))],
                              pruning_method=prune.RandomUnstructured, amount=0.95)
    model = model.double().eval()
    shape = MODELS["vgg"][1]
    t = trace_model(model, shape)
    r = t.reachability()
    perturbed = prune_model(model, t)
    n_const = 0
    with torch.no_grad():
        for b in t.graph.weighted_blocks:
            qual, param = t.params[b.name]
            kept = kept_masks(t)[b.name]
            eff = pair_selector(b, r.accessible[b.src], r.coaccessible[b.dst]) & kept
            const = pair_selector(b, ~r.accessible[b.src] & r.constant[b.src], r.coaccessible[b.dst]) & kept
            # dead non-constant weights: any value, same outputs
            mod = perturbed.get_submodule(qual)
            dead = torch.from_numpy(kept & ~eff & ~const)
            mod.weight_mask[dead] = 1.0
            mod.weight_orig[dead] = 123.0
            n_const += int(const.sum())
    assert verify(model, perturbed, shape) <= TOL
    assert n_const > 0
    # what each layer reads: units neither accessible nor constant are exactly 0, and
    # units not accessible but constant carry the same value whatever the input
    seen = {}
    hooks = [model.get_submodule(q).register_forward_hook(
        lambda m, inp, out, q=q: seen.setdefault(q, []).append(inp[0].detach()))
        for q, _ in t.params.values()]
    with torch.no_grad():
        model(torch.randn(shape, dtype=torch.float64))
        model(torch.randn(shape, dtype=torch.float64))
    for h in hooks:
        h.remove()
    n_constant_units = 0
    for b in t.graph.weighted_blocks:
        qual, _ = t.params[b.name]
        x1, x2 = (x.movedim(1, 0).reshape(b.shape[0], -1) for x in seen[qual])  # (units, positions)
        zero = ~r.accessible[b.src] & ~r.constant[b.src]
        const = ~r.accessible[b.src] & r.constant[b.src]
        assert not x1[torch.from_numpy(zero)].any() and not x2[torch.from_numpy(zero)].any()
        torch.testing.assert_close(x1[torch.from_numpy(const)], x2[torch.from_numpy(const)], rtol=0, atol=0)
        n_constant_units += int(const.sum())
    assert n_constant_units > 0


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("method", [prune.RandomUnstructured, prune.L1Unstructured], ids=["random", "magnitude"])
def test_test_architectures_repair_exactly(name, method):
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    model = randomize_bn(factory(), torch.Generator().manual_seed(0)).eval()
    prune.global_unstructured([(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))],
                              pruning_method=method, amount=0.9)
    t = trace_model(model, shape)
    assert verify(model, prune_model(model, t), shape) <= TOL
    c = compact_model(model, t, repeats=1)
    assert verify(model, c.model, shape) <= TOL
    assert c.params_after < c.params_before and c.speedup > 0
    assert_reconnected(t.audit().summary, trace_model(reconnect_model(model, t), shape))


def test_compact_removes_a_dead_channel_physically():
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with torch.no_grad():
        net[0].weight[1] = 0.0
        net[0].bias[1] = 0.0
        net[1].bias[1] = net[1].running_mean[1] * net[1].weight[1] / torch.sqrt(net[1].running_var[1] + net[1].eps)
        net[3].weight[:, 2] = 0.0  # channel 2 reaches nothing
        net[5].weight[:, 16:32] = 0.0  # conv output 1 (features 16..31) is read by nobody
    net.eval()
    t = trace_model(net, (1, 2, 4, 4))
    c = compact_model(net, t, repeats=0)
    assert c.widths["0"] == (4, 2) and c.widths["1"] == (4, 2) and c.widths["3"] == (3, 2)
    assert c.model[5].in_features == 32
    assert verify(net, c.model, (3, 2, 4, 4)) <= TOL


def test_verify_sees_a_change():
    a = mlp()
    b = mlp()
    assert verify(a, a, (2, 12)) == 0.0
    assert verify(a, b, (2, 12)) > 1e-3


def test_reconnect_of_a_plain_model_needs_scores():
    model = mlp()
    with torch.no_grad():
        model[0].weight[:, :6] = 0.0
        model[2].weight[:8] = 0.0
    t = trace_model(model, (1, 12))
    with pytest.raises(NetgraphError, match="scores"):
        reconnect_model(model, t)
    scores = {b.name: torch.rand(b.weight_shape) for b in t.graph.weighted_blocks}
    new = reconnect_model(model, t, scores=scores)
    after = trace_model(new, (1, 12)).audit().summary
    assert after.dead == 0 and after.kept == t.audit().summary.kept


# -- CLI glue --------------------------------------------------------------------------------------

@pytest.fixture()
def resnet_ckpt(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(MODELS["resnet"][0](), torch.Generator().manual_seed(0))
    prune.global_unstructured([(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))],
                              pruning_method=prune.RandomUnstructured, amount=0.95)
    path = tmp_path / "resnet.pt"
    torch.save(model.state_dict(), path)
    return path


MODEL = ["--model", "netgraph.testing.models:ResNet", "--input-shape", "1,3,32,32"]


def test_cli_audit_with_model(resnet_ckpt, capsys):
    assert main(["audit", str(resnet_ckpt), *MODEL, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["dead"] > 0
    assert report["layers"][0]["name"] == "conv1.weight"
    assert main(["audit", str(resnet_ckpt), *MODEL, "--fail-on-dead"]) == 1


def test_cli_repair_prune_and_compact_verify(resnet_ckpt, tmp_path, capsys):
    out = tmp_path / "pruned.pt"
    assert main(["repair", str(resnet_ckpt), *MODEL, "--mode", "prune", "--verify", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verified" in text and out.exists()
    sd = torch.load(out, weights_only=True)  # the input's layout: a bare state_dict in prune format
    assert "conv1.weight_mask" in sd and "netgraph" not in sd
    assert main(["audit", str(out), *MODEL, "--format", "json"]) == 0
    with_model = json.loads(capsys.readouterr().out)
    summary = with_model["summary"]
    assert summary["dead"] == summary["constant"] > 0  # constant weights are kept by default
    # the file carries its topology: the audit without the model code is the same
    assert main(["audit", str(out), "--format", "json"]) == 0
    without_model = json.loads(capsys.readouterr().out)
    def drop(d):  # how the graph was found (traced / stored) and at which resolution is not compared
        return {k: v for k, v in d.items() if k not in ("topology", "resolution")}

    assert drop(without_model["summary"]) == drop(summary)
    assert [drop(x) for x in without_model["layers"]] == [drop(x) for x in with_model["layers"]]
    small = tmp_path / "small.pt"
    assert main(["compact", str(resnet_ckpt), *MODEL, "--verify", "-o", str(small), "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["compact"]["params_after"] < payload["compact"]["params_before"]
    assert payload["max_relative_difference"] <= TOL
    assert main(["audit", str(small), "--format", "json"]) == 0  # compact output audits without the model
    small_audit = json.loads(capsys.readouterr().out)
    assert drop(small_audit["summary"]) == drop(payload["after"]["summary"])
    assert main(["compact", str(resnet_ckpt), *MODEL, "-o", str(small)]) == 2  # exists, no --force
    assert "exists" in capsys.readouterr().err


def test_cli_reconnect(resnet_ckpt, tmp_path, capsys):
    out = tmp_path / "reconnected.pt"
    assert main(["repair", str(resnet_ckpt), *MODEL, "--mode", "reconnect", "-o", str(out), "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["after"]["summary"]["dead"] == 0
    assert payload["after"]["summary"]["kept"] == payload["before"]["summary"]["kept"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "netgraph.testing.models"], "module:factory"),
    (["--model", "netgraph.testing.models:Nope", "--input-shape", "1,3,32,32"], "no attribute 'Nope'"),
    (["--model", "no_such_module_xyz:f"], "cannot import"),
    (["--model", "netgraph.testing.models:VGG", "--input-shape", "1,3,32,32"], "does not fit"),
    (["--model", "netgraph.testing.models:ResNet"], "--input-shape is needed"),
    (["--model", "netgraph.testing.models:ResNet", "--input-shape", "1,x"], "positive integers"),
], ids=["no-colon", "no-attr", "no-module", "wrong-model", "no-shape", "bad-shape"])
def test_cli_model_errors(resnet_ckpt, capsys, argv, message):
    assert main(["audit", str(resnet_ckpt), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netgraph: error:") and message in err and err.count("\n") == 1


def test_cli_refuses_to_overwrite_its_input(resnet_ckpt, capsys):
    before = resnet_ckpt.read_bytes()
    assert main(["repair", str(resnet_ckpt), *MODEL, "-o", str(resnet_ckpt)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert resnet_ckpt.read_bytes() == before
