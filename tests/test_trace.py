"""The torch.fx tracer: exact channel-level DAGs, constants, soundness fallbacks, errors.

Hand-computed answers on tiny models, the gradient probe (tests/oracles.py) on the test
architectures, and Hypothesis-generated random models.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

from netgraph import TraceFailed, pair_selector, trace_model  # noqa: E402
from netgraph.testing.models import MODELS, TinyTransformer, randomize_bn  # noqa: E402
from tests.oracles import gradient_probe  # noqa: E402
from tests.strategies import pruned_models  # noqa: E402


def effective_sets(traced):
    """Audit's effective weights per block, as bool arrays of the weight's shape."""
    r = traced.reachability()
    out = {}
    for b in traced.graph.weighted_blocks:
        mod, param = traced.module(b.name)
        mask = getattr(mod, f"{param}_mask", None)
        kept = (mask != 0).numpy() if mask is not None else (getattr(mod, param).detach() != 0).numpy()
        out[b.name] = pair_selector(b, r.accessible[b.src], r.coaccessible[b.dst]) & kept
    return out


def global_prune(model, rate, method=prune.L1Unstructured):
    params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    prune.global_unstructured(params, pruning_method=method, amount=rate)
    return model


# -- hand-computed structure ---------------------------------------------------------------

def test_mlp_dead_and_constant_by_hand():
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 0, 0]]))  # unit 1 has no input
        net[0].bias.copy_(torch.tensor([0.0, 0.5]))  # ... but a bias: constant
        net[2].weight.copy_(torch.tensor([[1.0, 1.0], [0, 0]]))
        net[2].bias.zero_()
    rep = trace_model(net, (1, 3)).audit()
    first, second = rep.layer("0.weight"), rep.layer("2.weight")
    assert (first.kept, first.effective, first.dead) == (1, 1, 0)
    assert (second.kept, second.effective, second.dead, second.constant) == (2, 1, 1, 1)


def test_conv_flatten_linear_expands_channels_first():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1)
            self.fc = nn.Linear(8, 1)

        def forward(self, x):
            return self.fc(self.conv(x).view(x.size(0), -1))

    t = trace_model(Net(), (1, 1, 2, 2))
    b = t.graph.block("fc.weight")
    flat = next(blk for blk in t.graph.blocks if blk.dst == b.src)
    m = flat.matrix.toarray()
    assert m.shape == (2, 8)
    assert m[0, :4].all() and not m[0, 4:].any() and m[1, 4:].all() and not m[1, :4].any()


def test_residual_add_and_concat_are_exact():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 1, bias=False)
            self.b = nn.Conv2d(2, 3, 1, bias=False)

        def forward(self, x):
            y = x + self.a(x)
            return torch.cat([y, self.b(y)], dim=1)

    t = trace_model(Net(), (1, 2, 3, 3))
    g = t.graph
    add = [b for b in g.blocks if b.kind == "identity"]
    assert {(b.src, b.dst) for b in add} == {("x", "add"), ("a", "add")}
    cat = {b.src: b.matrix.toarray() for b in g.blocks if b.dst == "cat"}
    np.testing.assert_array_equal(cat["add"], np.eye(2, 5, dtype=bool))
    np.testing.assert_array_equal(cat["b"], np.eye(3, 5, k=2, dtype=bool))


def test_depthwise_conv_connects_within_groups_and_counts_taps():
    conv = nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[4, 0, 0, 0] = 1.0  # output 4 reads input 2, one tap
        conv.weight[1, 0, :, :] = 1.0  # output 1 reads input 0, nine taps
    t = trace_model(nn.Sequential(conv), (1, 3, 4, 4))
    b = t.graph.block("0.weight")
    assert (b.rows.tolist(), b.cols.tolist(), b.taps.tolist()) == ([0, 2], [1, 4], [9, 1])


def test_batchnorm_shift_and_sigmoid_are_constant_seeds():
    bn = nn.BatchNorm1d(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.0, 2.0, 0.0]))
        bn.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    net = nn.Sequential(nn.Linear(2, 3, bias=False), bn, nn.Linear(3, 3, bias=False), nn.Sigmoid(),
                        nn.Linear(3, 1, bias=False))
    g = trace_model(net, (1, 2)).graph
    seeds = {name: grp.constant.tolist() for name, grp in g.groups.items() if grp.has_constant}
    assert seeds == {"_1": [False, True, True], "_3": [True, True, True]}


def test_prune_format_mask_wins_over_zeros():
    net = nn.Sequential(nn.Linear(2, 2))
    prune.custom_from_mask(net[0], "weight", torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    with torch.no_grad():
        net[0].weight_orig[0, 0] = 0.0  # kept by the mask, value zero
    rep = trace_model(net, (1, 2)).audit()
    assert rep.layer("0.weight").kept == 3


def test_multihead_attention_names_its_weights_and_keeps_the_value_path():
    model = TinyTransformer()
    t = trace_model(model, (2, 5, 8))
    names = [b.name for b in t.graph.weighted_blocks]
    assert names == ["attn.in_proj_weight", "attn.out_proj.weight", "fc.weight"]
    assert t.params["attn.out_proj.weight"] == ("attn.out_proj", "weight")
    ctx = next(b for b in t.graph.blocks if b.dst.endswith(":ctx"))
    m = ctx.matrix.toarray()  # (3E, E): value rows are the identity, q/k rows their head
    np.testing.assert_array_equal(m[16:], np.eye(8, dtype=bool))
    assert m[0, :4].all() and not m[0, 4:].any()
    # value-weight rows into a channel whose out_proj column is pruned are dead
    with torch.no_grad():
        model.attn.out_proj.weight[:, 3] = 0.0
    eff = effective_sets(trace_model(model, (2, 5, 8)))["attn.in_proj_weight"]
    assert not eff[16 + 3].any() and eff[0].all()


def test_unknown_op_is_all_to_all_with_a_warning_and_never_dead():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.cumsum(self.a(x), dim=1))

    net = Net()
    with torch.no_grad():
        net.b.weight[:, 0] = 0.0  # cumsum still carries unit 0 into the later units
    rep = trace_model(net, (1, 3)).audit()
    assert any("cumsum" in w for w in rep.warnings)
    assert rep.layer("a.weight").dead == 0


@pytest.mark.parametrize("case", ["control_flow", "wrong_shape", "shared_weight"])
def test_trace_failures_are_named(case):
    class ControlFlow(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(self.fc(x))

    model, shape, words = {
        "control_flow": (ControlFlow(), (1, 2), "ControlFlow"),
        "wrong_shape": (nn.Sequential(nn.Linear(4, 2)), (1, 3), "'0' (Linear)"),
        "shared_weight": (Shared(), (1, 2), "'fc' is called more than once"),
    }[case]
    with pytest.raises(TraceFailed, match=words.replace("(", r"\(").replace(")", r"\)")):
        trace_model(model, shape)


def test_trace_restores_training_mode_and_does_not_touch_weights():
    model = MODELS["resnet"][0]()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_model(model, (1, 3, 32, 32))
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_import_netgraph_does_not_import_torch():
    code = "import sys, netgraph; assert 'torch' not in sys.modules; netgraph.trace_model; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- against the gradient probe ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("rate", [0.0, 0.9, 0.99])
def test_test_architectures_contain_the_probe(name, rate):
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    model = randomize_bn(factory(), torch.Generator().manual_seed(1))
    if rate:
        global_prune(model, rate, prune.RandomUnstructured)
    t = trace_model(model, shape)
    audit_eff = effective_sets(t)
    probe = gradient_probe(model, shape)
    assert set(probe) == set(audit_eff)
    for k in probe:
        assert not (probe[k] & ~audit_eff[k]).any(), k  # never a false "dead"
        if name == "mlp":
            np.testing.assert_array_equal(audit_eff[k], probe[k])
    if rate == 0.0:  # dense: at channel level nothing is dead; at tap level only the taps
        # that read padding alone can be (the resnet's 1x1 last stage), exactly the probe's
        assert t.audit(resolution="channel").summary.dead == 0
        kept = sum(int(v.kept) for v in (t.audit().layers))
        assert t.audit().summary.effective == sum(int(v.sum()) for v in probe.values()) <= kept


@settings(max_examples=30, deadline=None)
@given(pruned_models(kind="mlp"))
def test_random_mlps_equal_the_probe(case):
    model, shape = case
    audit_eff = effective_sets(trace_model(model, shape))
    probe = gradient_probe(model, shape)
    for k in probe:
        np.testing.assert_array_equal(audit_eff[k], probe[k], err_msg=k)


@settings(max_examples=30, deadline=None)
@given(pruned_models(kind="conv"))
def test_random_conv_nets_contain_the_probe(case):
    model, shape = case
    audit_eff = effective_sets(trace_model(model, shape))
    probe = gradient_probe(model, shape)
    assert set(probe) == set(audit_eff)
    for k in probe:
        assert not (probe[k] & ~audit_eff[k]).any(), k


def test_torchvision_models_if_available():
    tv = pytest.importorskip("torchvision")
    for name, shape in [("resnet18", (1, 3, 64, 64)), ("vgg11_bn", (1, 3, 32, 32)),
                        ("mobilenet_v2", (1, 3, 64, 64)), ("densenet121", (1, 3, 64, 64))]:
        model = getattr(tv.models, name)(weights=None).eval()
        global_prune(model, 0.99, prune.RandomUnstructured)
        t = trace_model(model, shape)
        audit_eff = effective_sets(t)
        probe = gradient_probe(model, shape)
        for k in probe:
            assert not (probe[k] & ~audit_eff[k]).any(), (name, k)
        assert not t.graph.warnings, (name, t.graph.warnings)
