"""The tap-level audit against the independent pixel-level probe, and its soundness.

Random conv nets (Hypothesis) with every feature the tap-level audit claims to be exact for:
stride, dilation, groups / depthwise, padding modes, 1-D and 2-D, max / average / adaptive
pooling, upsampling, permute, flatten, cat / chunk, residual adds, gates (products with a
sigmoid factor), BatchNorm with random shifts, biases.  The oracle is
``netgraph.testing._probe.tap_probe`` (eager, float64, two halves; no fx, no op table).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from netgraph import prune_model, trace_model  # noqa: E402
from netgraph.testing._probe import tap_probe  # noqa: E402
from netgraph.testing.models import MODELS, randomize_bn  # noqa: E402

MODES = ("zeros", "reflect", "replicate", "circular")


class TapNet(nn.Module):
    """A random conv net from a plain-data spec (see ``tap_specs``)."""

    def __init__(self, spec: dict) -> None:
        super().__init__()
        self.spec = spec
        d = spec["dims"]
        conv = nn.Conv1d if d == 1 else nn.Conv2d
        bn = nn.BatchNorm1d if d == 1 else nn.BatchNorm2d
        c, size = spec["in"], spec["size"]
        self.body = nn.ModuleList()
        self.ops = []
        for layer in spec["layers"]:
            op = layer["op"]
            mods = nn.ModuleDict()
            if op == "conv":
                k, s, dil, p, mode = layer["k"], layer["stride"], layer["dil"], layer["pad"], layer["mode"]
                if mode != "zeros" and p >= size:
                    mode = "zeros"
                out_size = (size + 2 * p - dil * (k - 1) - 1) // s + 1
                if out_size < 1:
                    k, s, dil, p, out_size = 1, 1, 1, 0, size
                groups, out = (c, c * layer["mult"]) if layer["dw"] else (1, layer["out"])
                mods["conv"] = conv(c, out, k, s, p, dil, groups, bias=layer["bias"], padding_mode=mode)
                if layer["bn"]:
                    mods["bn"] = bn(out)
                c, size = out, out_size
            elif op == "pool":
                kind = layer["kind"]
                if kind in ("max", "avg") and size < 2:
                    kind = "adaptive"
                if kind == "maxpad" and size < 2:
                    kind = "adaptive"
                if kind == "adaptive":
                    size = max(1, size // 2)
                elif kind == "maxpad":  # kernel 3, stride 2, padding 1 (resnet's stem)
                    size = (size + 2 - 3) // 2 + 1
                else:
                    size //= 2
                layer = dict(layer, kind=kind, to=size)
            elif op == "up":
                size *= 2
            elif op in ("gate", "res"):
                mods["a"] = conv(c, c, 3 if op == "res" else 1, padding=1 if op == "res" else 0, bias=layer["bias"])
                mods["b"] = conv(c, c, 3 if op == "res" else 1, padding=1 if op == "res" else 0, bias=layer["bias"])
            elif op == "glu":
                mods["conv"] = conv(c, 2 * c, 1, bias=layer["bias"])
            elif op == "cat":
                mods["conv"] = conv(c, layer["out"], 3, padding=1, bias=layer["bias"])
                c += layer["out"]
            self.body.append(mods)
            self.ops.append(layer)
        self.flat = c * size ** d
        self.head_kind = spec["head"]
        self.fc = nn.Linear(self.flat, spec["out"], bias=spec["bias"])
        if self.head_kind == "gated":
            self.up = nn.Linear(self.flat, spec["out"], bias=spec["bias"])

    def forward(self, x):
        d = self.spec["dims"]
        for layer, mods in zip(self.ops, self.body):
            op = layer["op"]
            if op == "conv":
                x = mods["conv"](x)
                if "bn" in mods:
                    x = mods["bn"](x)
                x = {"relu": F.relu, "sigmoid": torch.sigmoid, "none": lambda t: t}[layer["act"]](x)
            elif op == "pool":
                kind = layer["kind"]
                if kind == "max":
                    x = (F.max_pool1d if d == 1 else F.max_pool2d)(x, 2)
                elif kind == "avg":
                    x = (F.avg_pool1d if d == 1 else F.avg_pool2d)(x, 2)
                elif kind == "maxpad":
                    x = (F.max_pool1d if d == 1 else F.max_pool2d)(x, 3, 2, 1)
                else:
                    x = (F.adaptive_avg_pool1d if d == 1 else F.adaptive_avg_pool2d)(x, layer["to"])
            elif op == "up":
                mode = layer["mode"] if d == 2 or layer["mode"] == "nearest" else "linear"
                x = F.interpolate(x, scale_factor=2, mode=mode if d == 1 or mode != "linear" else "bilinear")
            elif op == "gate":  # value * sigmoid(gate): a product with a never-zero factor
                x = mods["a"](x) * torch.sigmoid(mods["b"](x))
            elif op == "res":
                x = F.relu(x + mods["b"](F.relu(mods["a"](x))))
            elif op == "glu":
                a, b = torch.chunk(mods["conv"](x), 2, dim=1)
                x = a * b if layer["mul"] else a + b
            elif op == "cat":
                x = torch.cat([x, mods["conv"](x)], dim=1)
            elif op == "permute" and d == 2:
                x = x.permute(0, 1, 3, 2)
        h = x.flatten(1)
        if self.head_kind == "gated":  # silu(gate) * up
            return F.silu(self.fc(h)) * self.up(h)
        return self.fc(h)


def build(spec: dict) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(spec["seed"])
    model = TapNet(spec).double()
    gen = torch.Generator().manual_seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    densities = spec["densities"]
    with torch.no_grad():
        weighted = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
        for i, m in enumerate(weighted):
            m.weight.mul_(torch.from_numpy(rng.random(m.weight.shape) < densities[i % len(densities)]))
            if m.bias is not None:
                m.bias.mul_(torch.from_numpy(rng.random(m.bias.shape) < 0.5))
        randomize_bn(model, gen)
        for m in model.modules():  # some BatchNorm channels with no shift at all
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                off = torch.from_numpy(rng.random(m.num_features) < 0.5)
                m.running_mean[off] = 0.0
                m.bias[off] = 0.0
    shape = (1, spec["in"]) + (spec["size"],) * spec["dims"]
    return model.eval(), shape


@st.composite
def tap_specs(draw) -> dict:
    dims = draw(st.sampled_from([1, 2]))
    layer = st.one_of(
        st.fixed_dictionaries({
            "op": st.just("conv"), "out": st.integers(1, 4), "k": st.integers(1, 3),
            "stride": st.integers(1, 2), "dil": st.integers(1, 2), "pad": st.integers(0, 2),
            "mode": st.sampled_from(MODES), "dw": st.booleans(), "mult": st.integers(1, 2),
            "bias": st.booleans(), "bn": st.booleans(), "act": st.sampled_from(["relu", "sigmoid", "none"])}),
        st.fixed_dictionaries({"op": st.just("pool"), "kind": st.sampled_from(["max", "avg", "adaptive", "maxpad"])}),
        st.fixed_dictionaries({"op": st.just("up"), "mode": st.sampled_from(["nearest", "linear"])}),
        st.fixed_dictionaries({"op": st.sampled_from(["gate", "res"]), "bias": st.booleans()}),
        st.fixed_dictionaries({"op": st.just("glu"), "mul": st.booleans(), "bias": st.booleans()}),
        st.fixed_dictionaries({"op": st.just("cat"), "out": st.integers(1, 3), "bias": st.booleans()}),
        st.fixed_dictionaries({"op": st.just("permute")}),
    )
    return {
        "dims": dims, "in": draw(st.integers(1, 3)), "size": draw(st.integers(1, 6)),
        "layers": draw(st.lists(layer, min_size=1, max_size=4)),
        "head": draw(st.sampled_from(["linear", "gated"])), "out": draw(st.integers(1, 3)),
        "bias": draw(st.booleans()), "seed": draw(st.integers(0, 2**16)),
        "densities": draw(st.lists(st.sampled_from([0.0, 0.2, 0.5, 1.0]), min_size=1, max_size=4)),
    }


def _conv(out=2, k=3, stride=1, dil=1, pad=1, mode="zeros", dw=False, bias=False, bn=False, act="relu"):
    return {"op": "conv", "out": out, "k": k, "stride": stride, "dil": dil, "pad": pad, "mode": mode,
            "dw": dw, "mult": 1, "bias": bias, "bn": bn, "act": act}


def _spec(layers, densities, *, size=4, dims=2, head="linear", bias=False, seed=0):
    return {"dims": dims, "in": 2, "size": size, "layers": layers, "head": head, "out": 2, "bias": bias,
            "seed": seed, "densities": densities}


# a tap that reads only padding: a 3x3 conv on a 1x1 input (8 of its 9 taps are dead)
PADDING_ONLY = _spec([_conv()], [1.0], size=1)
# a gate whose value branch is dead: value conv fully pruned, so the gate conv is dead too
DEAD_VALUE = _spec([{"op": "gate", "bias": False}], [0.0, 1.0, 1.0])
# a skip around a fully pruned branch: the residual branch's first conv is empty
PRUNED_BRANCH = _spec([{"op": "res", "bias": False}], [0.0, 1.0, 1.0])


def _check_equal(model, shape):
    states = trace_model(model, shape).weight_states()
    probe = tap_probe(model, shape)
    assert set(probe) <= set(states)
    for k in probe:
        np.testing.assert_array_equal(states[k].effective, probe[k], err_msg=f"effective {k}")
        np.testing.assert_array_equal(states[k].constant, probe.constant[k], err_msg=f"constant {k}")
    return states, probe


@settings(max_examples=60, deadline=None)
@given(tap_specs())
@example(PADDING_ONLY)
@example(DEAD_VALUE)
@example(PRUNED_BRANCH)
def test_random_conv_nets_equal_the_probe_per_weight(spec):
    model, shape = build(spec)
    states, _ = _check_equal(model, shape)
    channel = trace_model(model, shape)
    reach = channel.reachability()
    for b in channel.graph.weighted_blocks:  # tap level refines the channel level (an upper bound)
        upper = reach.weight_states(b, states[b.name].kept).effective
        assert not (states[b.name].effective & ~upper).any(), b.name


def test_examples_by_hand():
    states, _ = _check_equal(*build(PADDING_ONLY))
    eff = states["body.0.conv.weight"].effective
    assert eff[:, :, 1, 1].all() and eff.sum() == eff[:, :, 1, 1].size  # only the centre tap
    states, _ = _check_equal(*build(DEAD_VALUE))
    assert states["body.0.a.weight"].kept.sum() == 0
    assert not states["body.0.b.weight"].effective.any() and states["body.0.b.weight"].kept.any()
    states, _ = _check_equal(*build(PRUNED_BRANCH))
    assert not states["body.0.b.weight"].effective.any()  # reads nothing
    assert states["fc.weight"].effective.any()  # the skip carries the signal


@settings(max_examples=40, deadline=None)
@given(tap_specs())
@example(PRUNED_BRANCH)
def test_zeroing_what_the_audit_calls_dead_keeps_every_output(spec):
    model, shape = build(dict(spec, bias=True))
    traced = trace_model(model, shape)
    states = traced.weight_states()
    pruned = prune_model(model, traced)  # dead and not constant: zeroed
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            a, b = model(x), pruned(x)
        scale = float(a.abs().max()) + 1e-300
        assert float((a - b).abs().max()) <= 1e-9 * max(scale, 1.0)
    for name, ws in states.items():  # and prune_model zeroed exactly those
        mod = pruned.get_submodule(traced.params[name][0])
        left = (mod.weight.detach() != 0).numpy()
        np.testing.assert_array_equal(left, ws.effective | ws.constant)


def test_without_constants_every_dead_weight_can_go():
    """No biases, no BatchNorm shifts, no sigmoid: constant is empty, and zeroing every dead
    weight leaves the outputs unchanged."""
    spec = _spec([_conv(k=3, pad=2, dil=2, mode="reflect"), {"op": "pool", "kind": "maxpad"},
                  _conv(dw=True), {"op": "res", "bias": False}, {"op": "glu", "mul": True, "bias": False}],
                 [0.5, 0.3, 1.0, 0.0], size=5)
    model, shape = build(spec)
    states = trace_model(model, shape).weight_states()
    assert not any(ws.constant.any() for ws in states.values())
    x = torch.randn(shape, dtype=torch.float64)
    before = model(x)
    with torch.no_grad():
        for name, ws in states.items():
            mod = model.get_submodule(name.rsplit(".", 1)[0])
            mod.weight.mul_(torch.from_numpy(ws.effective))
    np.testing.assert_allclose(model(x).detach().numpy(), before.detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("rate", [0.0, 0.9, 0.99])
def test_model_zoo_equals_the_probe(name, rate):
    from torch.nn.utils import prune

    factory, shape = MODELS[name]
    torch.manual_seed(0)
    model = randomize_bn(factory(), torch.Generator().manual_seed(1))
    if rate:
        params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        prune.global_unstructured(params, pruning_method=prune.RandomUnstructured, amount=rate)
    _check_equal(model, shape)


def test_audit_json_has_resolution_and_channel_stays_an_upper_bound():
    model, shape = build(PADDING_ONLY)
    t = trace_model(model, shape)
    tap, channel = t.audit().to_dict(), t.audit(resolution="channel").to_dict()
    assert {layer["resolution"] for layer in tap["layers"]} == {"tap"}
    assert {layer["resolution"] for layer in channel["layers"]} == {"channel"}
    assert set(tap["layers"][0]) == set(channel["layers"][0])
    assert tap["summary"]["effective"] < channel["summary"]["effective"]
    with pytest.raises(ValueError, match="resolution"):
        t.audit(resolution="pixel")


# -- hand-made cases: each compared with the probe and with the answer worked out by hand -----

class _Padding(nn.Module):
    """conv1 reads only its left tap (position 0 then reads zero padding: not accessible);
    conv2 pads with ``mode`` and its left tap at position 0 reads the pad, which copies
    position 1 (reflect, circular: accessible) or position 0 (replicate: not)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.conv2 = nn.Conv1d(1, 1, 3, padding=1, padding_mode=mode, bias=False)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([[[1.0, 0.0, 0.0]]]))
            self.conv2.weight.copy_(torch.tensor([[[1.0, 0.0, 0.0]]]))

    def forward(self, x):
        return self.conv2(self.conv1(x))[..., :1]  # only output position 0 reaches the output


@pytest.mark.parametrize("mode, effective", [("zeros", False), ("reflect", True), ("replicate", False),
                                             ("circular", True)])
def test_padding_modes_read_the_positions_they_copy(mode, effective):
    states, _ = _check_equal(_Padding(mode).double(), (1, 1, 4))
    assert bool(states["conv2.weight"].effective[0, 0, 0]) is effective


class _Window(nn.Module):
    """Only odd positions survive the product with a constant; the max pool's windows
    (0, 1) and (2, 3) must pass coaccessibility to every position, not the first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 1, bias=False)
        self.register_buffer("odd", torch.tensor([0.0, 1.0, 0.0, 1.0]))
        self.fc = nn.Linear(2, 1, bias=False)

    def forward(self, x):
        return self.fc(F.max_pool1d(self.conv(x) * self.odd, 2))


def test_max_pool_counts_every_position_of_its_window():
    states, _ = _check_equal(_Window().double(), (1, 1, 4))
    assert states["conv.weight"].effective.all()


class _ConstantPad(nn.Module):
    """A pad of value 1 is a constant source: conv2's tap that reads only the pad is constant."""

    def __init__(self, module: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 1, 1, bias=False)
        self.conv2 = nn.Conv1d(1, 1, 3, bias=False)
        self.pad = nn.ConstantPad1d((2, 0), 1.0) if module else None

    def forward(self, x):
        y = self.conv1(x)
        y = self.pad(y) if self.pad is not None else F.pad(y, (2, 0), value=1.0)
        return self.conv2(y)[..., :1]


@pytest.mark.parametrize("module", [False, True], ids=["F.pad", "nn.ConstantPad1d"])
def test_a_constant_pad_is_a_constant_source(module):
    states, _ = _check_equal(_ConstantPad(module).double(), (1, 1, 3))
    ws = states["conv2.weight"]
    assert ws.constant[0, 0, :2].all() and ws.effective[0, 0, 2] and not ws.effective[0, 0, :2].any()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 2), st.booleans(), st.integers(2, 7), st.integers(0, 2**16))
def test_sparse_and_dense_boolean_convs_agree(nd, cin, cout_per, k, stride, dil, depthwise, size, seed):
    from netgraph.torch._tapconv import BoolConv

    groups = cin if depthwise else 1
    cout = cout_per * groups
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand((cout, cin // groups) + (k,) * nd, generator=gen) < 0.3
    out_size = (size - dil * (k - 1) - 1) // stride + 1
    if out_size < 1:
        return
    in_shape, out_shape = (2, cin) + (size,) * nd, (2, cout) + (out_size,) * nd
    x = torch.rand(in_shape, generator=gen) < 0.5
    co = torch.rand(out_shape, generator=gen) < 0.5
    inside = torch.rand((1, 1) + (size,) * nd, generator=gen) < 0.8
    dense, sparse = (BoolConv(mask, stride, dil, groups, in_shape, out_shape, route=r) for r in ("dense", "sparse"))
    assert torch.equal(dense.forward(x), sparse.forward(x))
    assert torch.equal(dense.backward(co), sparse.backward(co))
    assert torch.equal(dense.correlate(x, co) & mask, sparse.correlate(x, co))
    assert torch.equal(dense.read_any(x) & mask, sparse.read_any(x) & mask)
    ref = dense.correlate(inside.expand(in_shape).contiguous(), co, kept_only=False)
    assert torch.equal(ref & mask, sparse.written_any(co, inside) & mask)


def _mixed_channels(shape, kinds, gen, density):
    """A boolean map whose channels are, by ``kinds`` (cycled): 0 empty, 1 full, 2 / 3 one of
    two partial patterns shared between channels, 4 a partial pattern of its own (partial:
    each position marked with probability ``density``)."""
    n, c = shape[:2]
    shared = [torch.rand((n,) + shape[2:], generator=gen) < density for _ in range(2)]
    out = torch.empty(shape, dtype=torch.bool)
    for j in range(c):
        kind = kinds[j % len(kinds)]
        if kind < 2:
            out[:, j] = bool(kind)
        else:
            out[:, j] = shared[kind - 2] if kind < 4 else torch.rand((n,) + shape[2:], generator=gen) < density
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 2), st.booleans(), st.integers(2, 6), st.integers(1, 2),
       st.lists(st.integers(0, 4), min_size=1, max_size=6), st.lists(st.integers(0, 4), min_size=1, max_size=6),
       st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0]), st.sampled_from([0.1, 0.5]), st.integers(0, 2**16))
def test_channel_patterns_route_equals_the_plain_dense_route(nd, cin, cout_per, k, stride, dil, depthwise, size,
                                                             n, kinds_in, kinds_out, density, partial, seed):
    """The fast route (one convolution per distinct channel pattern, full / empty channels
    merged) gives the same booleans as torch's dense conv over every channel."""
    from netgraph.torch._tapconv import BoolConv

    groups = cin if depthwise else 1
    cout = cout_per * groups
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand((cout, cin // groups) + (k,) * nd, generator=gen) < density
    out_size = (size - dil * (k - 1) - 1) // stride + 1
    if out_size < 1:
        return
    in_shape, out_shape = (n, cin) + (size,) * nd, (n, cout) + (out_size,) * nd
    x = _mixed_channels(in_shape, kinds_in, gen, partial)
    co = _mixed_channels(out_shape, kinds_out, gen, partial)
    inside = torch.rand((1, 1) + (size,) * nd, generator=gen) < 0.8
    ref = BoolConv(mask, stride, dil, groups, in_shape, out_shape, route="dense")
    for route in ("patterns", "auto"):
        fast = BoolConv(mask, stride, dil, groups, in_shape, out_shape, route=route)
        assert torch.equal(ref.forward(x), fast.forward(x))
        assert torch.equal(ref.backward(co), fast.backward(co))
        assert torch.equal(ref.correlate(x, co), fast.correlate(x, co))
        assert torch.equal(ref.correlate(x, co, kept_only=False), fast.correlate(x, co, kept_only=False))
        assert torch.equal(ref.read_any(x) & mask, fast.read_any(x) & mask)
        assert torch.equal(ref.written_any(co, inside) & mask, fast.written_any(co, inside) & mask)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2), st.integers(1, 24), st.integers(1, 12), st.sampled_from([0.0, 0.2, 0.6]),
       st.integers(0, 2**16))
def test_channel_patterns_are_the_distinct_non_empty_channels(n, channels, distinct, density, seed):
    """Each channel equals its pattern (or is empty, index -1); the patterns are distinct and
    non-empty — also past the first 8, found by the dictionary."""
    from netgraph.torch._tapconv import channel_patterns

    gen = torch.Generator().manual_seed(seed)
    base = [torch.rand((n, 3, 5), generator=gen) < density for _ in range(distinct)]
    pick = torch.randint(0, distinct, (channels,), generator=gen)
    t = torch.stack([base[int(i)] for i in pick], 1)
    patterns, index = channel_patterns(t)
    assert patterns.dtype == torch.float32 and patterns.shape[:1] + patterns.shape[2:] == (n, 3, 5)
    for c in range(channels):
        if index[c] < 0:
            assert not t[:, c].any()
        else:
            assert torch.equal(patterns[:, int(index[c])] > 0.5, t[:, c])
    rows = {tuple(patterns[:, j].flatten().tolist()) for j in range(patterns.shape[1])}
    assert len(rows) == patterns.shape[1] and all(any(r) for r in rows)
    assert set(index.tolist()) - {-1} == set(range(patterns.shape[1]))


def _small_torchvision_like():
    from netgraph.testing import models as zoo

    return {
        "efficientnet": lambda: zoo.EfficientNet(classes=5, width=0.25, depth=1),
        "shufflenet": lambda: zoo.ShuffleNetV2((1, 2, 1), (8, 16, 32, 64, 64), classes=5),
        "mobilenet_v2": lambda: zoo.MobileNetV2(classes=5, width=0.25),
        "densenet": lambda: zoo.DenseNetTV(growth=4, blocks=(2, 2), init=8, bn_size=2, classes=5),
        "vgg": lambda: zoo.CifarVGG((8, "M", 16, "M", 16, "M", 32, "M", 32, "M"), classes=5),
    }


@pytest.mark.parametrize("name", sorted(_small_torchvision_like()))
@pytest.mark.parametrize("rate", [0.5, 0.9])
def test_torchvision_like_copies_equal_the_probe_and_prune_soundly(name, rate):
    """Squeeze-excitation gates, channel shuffles, dense concatenations, depthwise convs."""
    from torch.nn.utils import prune

    torch.manual_seed(0)
    model = randomize_bn(_small_torchvision_like()[name](), torch.Generator().manual_seed(1)).double().eval()
    params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    prune.global_unstructured(params, pruning_method=prune.RandomUnstructured, amount=rate)
    shape = (1, 3, 32, 32)
    _check_equal(model, shape)
    traced = trace_model(model, shape)
    assert not traced.graph.warnings
    pruned = prune_model(model, traced)
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        a, b = model(x), pruned(x)
    assert float((a - b).abs().max()) <= 1e-9 * max(1.0, float(a.abs().max()))


def test_torchvision_models_if_available():
    tv = pytest.importorskip("torchvision")
    from torch.nn.utils import prune

    for name in ("resnet18", "mobilenet_v2", "shufflenet_v2_x0_5", "efficientnet_b0"):
        torch.manual_seed(0)
        model = randomize_bn(getattr(tv.models, name)(weights=None), torch.Generator().manual_seed(1))
        model = model.double().eval()
        params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        prune.global_unstructured(params, pruning_method=prune.RandomUnstructured, amount=0.99)
        shape = (1, 3, 32, 32)
        _check_equal(model, shape)
        traced = trace_model(model, shape)
        assert not traced.graph.warnings, (name, traced.graph.warnings[:1])  # e.g. stochastic depth
        pruned = prune_model(model, traced)
        x = torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            a, b = model(x), pruned(x)
        assert float((a - b).abs().max()) <= 1e-9 * max(1.0, float(a.abs().max())), name


def test_a_handler_that_fails_falls_back_soundly_with_a_warning(monkeypatch):
    from netgraph.torch import _taps

    def broken(self, node):
        raise RuntimeError("not covered")

    monkeypatch.setattr(_taps._Pass, "f_mul", broken)
    model, shape = build(DEAD_VALUE)
    traced = trace_model(model, shape)
    rep = traced.audit()
    assert any("not modelled per position" in w for w in rep.warnings)
    probe = tap_probe(model, shape)
    for name, ws in traced.weight_states().items():  # over-approximated, never a false "dead"
        assert not (probe[name] & ~ws.effective).any(), name


class _Net3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(2, 3, 3, padding=1, bias=True)
        self.b = nn.Conv3d(3, 3, 3, stride=2, padding=1, groups=3, bias=False, padding_mode="replicate")
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        y = F.max_pool3d(torch.relu(self.a(x)), 2)
        return self.fc(F.adaptive_avg_pool3d(self.b(y) * torch.sigmoid(y[:, :1]), 1).flatten(1))


@pytest.mark.parametrize("density", [0.1, 0.4])
def test_conv3d_equals_the_probe(density):
    torch.manual_seed(3)
    model = _Net3d().double().eval()
    rng = np.random.default_rng(int(density * 10))
    with torch.no_grad():
        for m in (model.a, model.b, model.fc):
            m.weight.mul_(torch.from_numpy(rng.random(m.weight.shape) < density))
    _check_equal(model, (1, 2, 4, 4, 4))


class _Attention(nn.Module):
    """softmax(q kᵀ) v on (N, L, E) tokens: a product of activations per position."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.fc = nn.Linear(dim, 2)

    def forward(self, x):
        att = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), dim=-1)
        return self.fc((att @ self.v(x)).mean(1))


@pytest.mark.parametrize("densities", [(1.0, 1.0, 0.0), (0.3, 0.3, 0.3), (0.0, 1.0, 1.0), (0.5, 0.2, 0.6)])
def test_attention_products_equal_the_probe(densities):
    torch.manual_seed(1)
    model = _Attention().double().eval()
    rng = np.random.default_rng(7)
    with torch.no_grad():
        for m, d in zip((model.q, model.k, model.v), densities):
            m.weight.mul_(torch.from_numpy(rng.random(m.weight.shape) < d))
    states, _ = _check_equal(model, (1, 3, 4))
    if densities[2] == 0.0:  # no value path: the scores multiply zeros, q and k are dead
        assert not states["q.weight"].effective.any() and not states["k.weight"].effective.any()
