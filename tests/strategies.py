"""Hypothesis strategies: random networks described as plain data.

A :class:`Net` is a list of operations on named groups, kept as raw arrays so that the
oracles in ``tests/oracles.py`` can build their own reference from it, independently of
netgraph's block representation.  ``Net.build()`` turns it into a ``LayeredGraph``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from netgraph import GraphBuilder, LayeredGraph


@dataclass
class Net:
    """Groups (name → width), inputs, and ops in forward order.

    ops: ("weight", name, src, dst, mask (out, in/groups, *k) bool, conv_groups)
         ("identity", src, dst) | ("expand", src, dst, factor, channels_last) | ("dense", src, dst)
    constants: group → bool vector of constant seeds.
    """

    widths: dict[str, int]
    inputs: list[str]
    ops: list[tuple]
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    def build(self) -> LayeredGraph:
        b = GraphBuilder()
        for s in self.inputs:
            b.input(s, self.widths[s])
        for op in self.ops:
            kind = op[0]
            if kind == "weight":
                _, name, src, dst, mask, groups = op
                b.weight(name, src, dst, mask, conv_groups=groups)
            elif kind == "identity":
                b.identity(op[1], op[2])
            elif kind == "expand":
                b.expand(op[1], op[2], op[3], channels_last=op[4])
            elif kind == "dense":
                b.dense(op[1], op[2], self.widths[op[2]])
        for g, seeds in self.constants.items():
            b.constant(g, seeds)
        return b.build()

    @property
    def weight_ops(self):
        return [op for op in self.ops if op[0] == "weight"]


def _mask(draw, shape, density=None) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    if density is None:
        density = draw(st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.0]))
    return np.random.default_rng(seed).random(shape) < density


@st.composite
def chain_masks(draw, min_layers: int = 1, max_layers: int = 5, max_width: int = 6) -> list[np.ndarray]:
    """Masks ``(out, in)`` of an MLP chain (width 1 and all-zero masks included)."""
    n = draw(st.integers(min_layers, max_layers))
    widths = draw(st.lists(st.integers(1, max_width), min_size=n + 1, max_size=n + 1))
    return [_mask(draw, (widths[i + 1], widths[i])) for i in range(n)]


@st.composite
def layered_nets(draw, max_groups: int = 6, max_width: int = 6, constants: bool = True) -> Net:
    """Random layered DAGs: a weighted spine, skip edges (weighted or identity), flatten
    expansions (channels first or last), grouped convs, all-to-all blocks and constant seeds."""
    widths = {"x": draw(st.integers(1, max_width))}
    inputs = ["x"]
    if draw(st.booleans()):
        widths["x2"] = draw(st.integers(1, max_width))
        inputs.append("x2")
    names = list(inputs)
    ops: list[tuple] = []
    n_hidden = draw(st.integers(1, max_groups - 1))
    for k in range(n_hidden):
        prev = names[-1]
        dst = f"g{k}"
        kind = draw(st.sampled_from(["linear", "linear", "conv", "expand", "dense"]))
        if kind == "expand" and widths[prev] * 3 <= 2 * max_width * 3:
            factor = draw(st.integers(1, 3))
            widths[dst] = widths[prev] * factor
            ops.append(("expand", prev, dst, factor, draw(st.booleans())))
        elif kind == "dense":
            widths[dst] = draw(st.integers(1, max_width))
            ops.append(("dense", prev, dst))
        elif kind == "conv":
            groups = draw(st.sampled_from([d for d in (1, 2, 3) if widths[prev] % d == 0]))
            out = groups * draw(st.integers(1, max(1, max_width // groups)))
            widths[dst] = out
            k_h = draw(st.integers(1, 2))
            ops.append(("weight", f"{dst}.weight", prev, dst,
                        _mask(draw, (out, widths[prev] // groups, k_h, 2)), groups))
        else:
            widths[dst] = draw(st.integers(1, max_width))
            ops.append(("weight", f"{dst}.weight", prev, dst, _mask(draw, (widths[dst], widths[prev])), 1))
        # skip edges from any earlier group into dst
        for j, earlier in enumerate(names[:-1]):
            if draw(st.integers(0, 3)) == 0:
                if widths[earlier] == widths[dst] and draw(st.booleans()):
                    ops.append(("identity", earlier, dst))
                else:
                    ops.append(("weight", f"{dst}.skip{j}.weight", earlier, dst,
                                _mask(draw, (widths[dst], widths[earlier])), 1))
        names.append(dst)
    # a second input must feed something, else it is merely dead
    if "x2" in inputs and not any(op[1 if op[0] != "weight" else 2] == "x2" for op in ops):
        last = names[-1]
        ops.append(("weight", f"{last}.from_x2.weight", "x2", last, _mask(draw, (widths[last], widths["x2"])), 1))
    consts = {}
    if constants:
        for g in names[len(inputs):]:
            if draw(st.integers(0, 2)) == 0:
                consts[g] = _mask(draw, (widths[g],), 0.5)
    return Net(widths, inputs, ops, consts)


# Hand-picked corner cases, used as @example's.
EMPTY_LAYER = Net({"x": 3, "g0": 2, "g1": 2}, ["x"], [
    ("weight", "g0.weight", "x", "g0", np.zeros((2, 3), bool), 1),
    ("weight", "g1.weight", "g0", "g1", np.ones((2, 2), bool), 1)])
WIDTH_ONE = Net({"x": 1, "g0": 1, "g1": 1}, ["x"], [
    ("weight", "g0.weight", "x", "g0", np.ones((1, 1), bool), 1),
    ("weight", "g1.weight", "g0", "g1", np.ones((1, 1), bool), 1)])
SKIP_AROUND_DEAD = Net({"x": 2, "g0": 2, "g1": 2}, ["x"], [
    ("weight", "g0.weight", "x", "g0", np.array([[1, 0], [0, 0]], bool), 1),
    ("weight", "g1.weight", "g0", "g1", np.zeros((2, 2), bool), 1),
    ("identity", "x", "g1")])
CONSTANT_FED = Net({"x": 2, "g0": 2, "g1": 1}, ["x"], [
    ("weight", "g0.weight", "x", "g0", np.array([[1, 1], [0, 0]], bool), 1),
    ("weight", "g1.weight", "g0", "g1", np.array([[0, 1]], bool), 1)],
    {"g0": np.array([False, True])})


# --------------------------------------------------------------------------------------
# Models (issue 3): random architectures for tests/models.SpecNet, and random pruning
# --------------------------------------------------------------------------------------

@st.composite
def model_specs(draw, kind: str | None = None) -> dict:
    """A random small architecture: an MLP, or a conv stack with residual pairs,
    concatenations, BatchNorm, grouped / depthwise convs, pooling; with or without biases."""
    kind = kind or draw(st.sampled_from(["mlp", "conv"]))
    spec = {"kind": kind, "bias": draw(st.booleans()), "out": draw(st.integers(1, 4))}
    if kind == "mlp":
        spec["in"] = draw(st.integers(1, 8))
        spec["layers"] = []
        spec["head"] = draw(st.lists(st.integers(1, 8), min_size=0, max_size=3))
        return spec
    spec["in"] = draw(st.integers(1, 4))
    spec["size"] = draw(st.sampled_from([1, 2, 4]))
    layers, c = [], spec["in"]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["conv", "conv", "res", "cat", "pool"]))
        if op == "conv":
            groups = draw(st.sampled_from([1, 1, "dw", 2]))
            out = draw(st.integers(1, 6))
            if groups == 2 and (c % 2 or out % 2):
                groups = 1
            layers.append({"op": "conv", "out": out, "k": draw(st.sampled_from([1, 3])), "groups": groups,
                           "mult": draw(st.integers(1, 2)), "bn": draw(st.booleans()),
                           "act": draw(st.sampled_from(["relu", "relu", "none", "sigmoid"]))})
            c = c * layers[-1]["mult"] if groups == "dw" else out
        elif op == "cat":
            out = draw(st.integers(1, 3))
            layers.append({"op": "cat", "out": out})
            c += 2 * out
        else:
            layers.append({"op": op})
    spec["layers"] = layers
    spec["head"] = draw(st.lists(st.integers(1, 6), min_size=0, max_size=2))
    return spec


@st.composite
def pruned_models(draw, kind: str | None = None, fmt: str | None = None):
    """(model, input_shape): a ``SpecNet`` with random weights, random BatchNorm statistics,
    pruned at a random rate up to 99.9 %, in torch's prune format or as plain zeros."""
    import torch
    import torch.nn as nn
    from torch.nn.utils import prune

    from netgraph.testing.models import SpecNet, randomize_bn

    spec = draw(model_specs(kind))
    seed = draw(st.integers(0, 2**31 - 1))
    rate = draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999]))
    fmt = fmt or draw(st.sampled_from(["prune", "plain"]))
    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # module initialisation only; restored below
    try:
        model = SpecNet(spec)
    finally:
        torch.random.set_rng_state(torch_state)
    randomize_bn(model, gen)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)) and mod.bias is not None:
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen))
    for mod in model.modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            mask = (torch.rand(mod.weight.shape, generator=gen) >= rate).float()
            if fmt == "prune":
                prune.custom_from_mask(mod, "weight", mask)
            else:
                with torch.no_grad():
                    mod.weight.mul_(mask)
    return model.eval(), model.input_shape()
