"""Hypothesis strategies for masked networks.

Contract
--------
* :func:`layered_nets`, :func:`masked_mlps` and :func:`masked_conv_nets` yield a
  :class:`~netgraph.testing.Net`: the masks (``net.masks``, PyTorch layout) *and* the graph
  (``net.graph``).  :func:`chain_masks` yields a plain list of ``(out, in)`` masks.
* Shrinking goes towards few, narrow groups, dense masks, no skip and no constant, so a
  shrunk counterexample shows only what the failure needs.
* ``sparsity=(lo, hi)``: every weight's fraction of pruned entries lies in ``[lo, hi]``
  (as close as the weight's size allows: within ``1 / size``).
* :func:`model_specs` / :func:`pruned_models` build torch models (``SpecNet`` from
  ``netgraph.testing.models``); torch is imported only when they draw.

Nothing here imports torch at import time.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ._net import Net

__all__ = ["chain_masks", "layered_nets", "masked_mlps", "masked_conv_nets", "model_specs",
           "pruned_models", "LAYER_KINDS"]

#: The kinds of layer :func:`layered_nets` draws from (pass a subset as ``kinds=``).
LAYER_KINDS = ("linear", "conv", "expand", "dense", "concat")

# Shrinks to the first entry: dense masks are the simplest to read in a counterexample.
_DENSITIES = (1.0, 0.6, 0.3, 0.1, 0.0)


def _mask(draw, shape, density=None) -> np.ndarray:
    """A bool mask; each entry kept with probability ``density`` (drawn when None)."""
    if density is None:
        density = draw(st.sampled_from(_DENSITIES))
    if density >= 1.0:
        return np.ones(shape, bool)
    if density <= 0.0:
        return np.zeros(shape, bool)
    # entries shrink towards 0 = kept
    cut = int(round(density * 10))
    return draw(hnp.arrays(np.int8, shape, elements=st.integers(0, 9))) < cut


def _check_sparsity(sparsity) -> tuple[float, float]:
    lo, hi = (float(s) for s in sparsity)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"sparsity must be (lo, hi) with 0 <= lo <= hi <= 1, got {sparsity!r}")
    return lo, hi


def _mask_at(draw, shape, sparsity: tuple[float, float]) -> np.ndarray:
    """A bool mask whose fraction of pruned entries lies in ``sparsity`` (within 1/size)."""
    lo, hi = sparsity
    size = int(np.prod(shape))
    k_min = math.ceil(size * (1.0 - hi) - 1e-9)
    k_max = math.floor(size * (1.0 - lo) + 1e-9)
    if k_min > k_max:  # no integer count in range: the nearest one
        k_min = k_max = min(size, max(0, round(size * (1.0 - (lo + hi) / 2))))
    k = draw(st.integers(k_min, k_max).map(lambda v: k_max - (v - k_min)))  # shrinks to dense
    flat = np.zeros(size, bool)
    if k:
        order = draw(st.permutations(range(size)))  # shrinks to the first k positions
        flat[list(order[:k])] = True
    return flat.reshape(shape)


@st.composite
def chain_masks(draw, min_layers: int = 1, max_layers: int = 5, max_width: int = 6) -> list[np.ndarray]:
    """Masks ``(out, in)`` of an MLP chain (width 1 and all-zero masks included); feed them to
    :func:`netgraph.chain`."""
    n = draw(st.integers(min_layers, max_layers))
    widths = draw(st.lists(st.integers(1, max_width), min_size=n + 1, max_size=n + 1))
    return [_mask(draw, (widths[i + 1], widths[i])) for i in range(n)]


@st.composite
def masked_mlps(draw, min_layers: int = 1, max_layers: int = 4, max_width: int = 8,
                sparsity: tuple[float, float] = (0.0, 1.0), bias: bool = False) -> Net:
    """An MLP ``x -> h0 -> h1 -> …`` with weights ``fc{i}.weight`` pruned at ``sparsity``.

    Parameters
    ----------
    sparsity : (lo, hi)
        Fraction of pruned weights of every layer (within ``1 / size`` of the range).
    bias : bool
        Draw non-zero biases (constant seeds) on some hidden units.
    """
    sparsity = _check_sparsity(sparsity)
    n = draw(st.integers(min_layers, max_layers))
    widths = draw(st.lists(st.integers(1, max_width), min_size=n + 1, max_size=n + 1))
    names = ["x"] + [f"h{i}" for i in range(n)]
    ops = [("weight", f"fc{i}.weight", names[i], names[i + 1],
            _mask_at(draw, (widths[i + 1], widths[i]), sparsity), 1) for i in range(n)]
    consts = {}
    if bias:
        for i in range(n - 1):
            seeds = _mask(draw, (widths[i + 1],), 0.5)
            if seeds.any():
                consts[names[i + 1]] = seeds
    return Net(dict(zip(names, widths)), ["x"], ops, consts)


@st.composite
def masked_conv_nets(draw, max_blocks: int = 3, max_channels: int = 6,
                     sparsity: tuple[float, float] = (0.0, 1.0), kernels=(1, 3), bias: bool = False) -> Net:
    """A conv net: conv blocks (grouped / depthwise, residual identity skips, concatenation of
    a branch), a flatten (channels first or last) and a linear head, pruned at ``sparsity``.

    Spatial size is not modelled (a kernel is a set of taps that all read the input channel);
    for padding effects use the torch cases (``TAP_READS_ONLY_PADDING``).
    """
    sparsity = _check_sparsity(sparsity)
    widths = {"x": draw(st.integers(1, max_channels))}
    ops: list[tuple] = []
    consts: dict[str, np.ndarray] = {}
    prev = "x"
    for k in range(draw(st.integers(1, max_blocks))):
        c = widths[prev]
        dst = f"conv{k}"
        groups = draw(st.sampled_from([1, "dw", 2]))
        if groups == "dw":
            groups = c
            out = c * draw(st.integers(1, 2))
        elif groups == 2 and c % 2 == 0:
            out = 2 * draw(st.integers(1, max(1, max_channels // 2)))
        else:
            groups, out = 1, draw(st.integers(1, max_channels))
        ks = draw(st.sampled_from(list(kernels)))
        widths[dst] = out
        ops.append(("weight", f"{dst}.weight", prev, dst, _mask_at(draw, (out, c // groups, ks, ks), sparsity),
                    groups))
        if bias and draw(st.booleans()):
            consts[dst] = _mask(draw, (out,), 0.5)
        style = draw(st.sampled_from(["plain", "residual", "concat"]))
        if style == "residual" and out == c:
            res = f"res{k}"
            widths[res] = out
            ops.append(("identity", dst, res))
            ops.append(("identity", prev, res))
            dst = res
        elif style == "concat":
            br = f"branch{k}"
            widths[br] = draw(st.integers(1, max_channels))
            ops.append(("weight", f"{br}.weight", prev, br,
                        _mask_at(draw, (widths[br], c, 1, 1), sparsity), 1))
            cat = f"cat{k}"
            widths[cat] = out + widths[br]
            ops.append(("connect", dst, cat, np.eye(out, widths[cat], dtype=bool)))
            ops.append(("connect", br, cat, np.eye(widths[br], widths[cat], k=out, dtype=bool)))
            dst = cat
        prev = dst
    factor = draw(st.integers(1, 4))
    widths["flat"] = widths[prev] * factor
    ops.append(("expand", prev, "flat", factor, draw(st.booleans())))
    prev = "flat"
    for i in range(draw(st.integers(1, 2))):
        widths[f"fc{i}"] = draw(st.integers(1, max_channels))
        ops.append(("weight", f"fc{i}.weight", prev, f"fc{i}",
                    _mask_at(draw, (widths[f"fc{i}"], widths[prev]), sparsity), 1))
        prev = f"fc{i}"
    return Net(widths, ["x"], ops, consts)


@st.composite
def layered_nets(draw, max_groups: int = 6, max_width: int = 6, constants: bool = True, *,
                 kinds=LAYER_KINDS, max_inputs: int = 2, skips: bool = True) -> Net:
    """Random layered DAGs: a spine of layers, skip edges (weighted or identity) from any
    earlier group, concatenations, flatten expansions (channels first or last), grouped
    convs, all-to-all blocks, one or two inputs, and constant seeds (biases).

    Parameters
    ----------
    max_groups : int
        At most ``max_groups - 1`` spine layers (a concatenation adds a branch group).
    kinds : subset of ``LAYER_KINDS``
        ``("linear",)`` gives MLPs with skip connections.
    max_inputs : {1, 2}
    skips, constants : bool
    """
    bad = [k for k in kinds if k not in LAYER_KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {LAYER_KINDS}, got {kinds!r}")
    widths = {"x": draw(st.integers(1, max_width))}
    inputs = ["x"]
    if max_inputs > 1 and draw(st.booleans()):
        widths["x2"] = draw(st.integers(1, max_width))
        inputs.append("x2")
    names = list(inputs)
    ops: list[tuple] = []
    n_hidden = draw(st.integers(1, max_groups - 1))
    kind_choices = [k for k in LAYER_KINDS if k in kinds]
    for k in range(n_hidden):
        prev = names[-1]
        dst = f"g{k}"
        kind = draw(st.sampled_from(kind_choices))
        residual = None
        if kind == "expand" and widths[prev] <= 2 * max_width:
            factor = draw(st.sampled_from([2, 3]))
            widths[dst] = widths[prev] * factor
            ops.append(("expand", prev, dst, factor, draw(st.booleans())))
        elif kind == "dense":
            widths[dst] = draw(st.integers(1, max_width))
            ops.append(("dense", prev, dst))
        elif kind == "conv":
            divisors = [d for d in (2, 3) if widths[prev] % d == 0]
            groups = draw(st.sampled_from([1] + divisors * 2))
            out = groups * draw(st.integers(1, max(1, max_width // groups)))
            widths[dst] = out
            k_h = draw(st.integers(1, 2))
            ops.append(("weight", f"{dst}.weight", prev, dst,
                        _mask(draw, (out, widths[prev] // groups, k_h, 2)), groups))
        elif kind == "concat":
            # dst = cat(prev, branch), the branch a weighted layer from any earlier group
            src = draw(st.sampled_from(names[::-1]))
            br = f"{dst}.branch"
            widths[br] = draw(st.integers(1, max_width))
            ops.append(("weight", f"{br}.weight", src, br, _mask(draw, (widths[br], widths[src])), 1))
            w = widths[prev] + widths[br]
            widths[dst] = w
            ops.append(("connect", prev, dst, np.eye(widths[prev], w, dtype=bool)))
            ops.append(("connect", br, dst, np.eye(widths[br], w, k=widths[prev], dtype=bool)))
        else:
            if skips and len(names) > 1 and draw(st.integers(0, 2)) == 2:
                # a residual block: dst = linear(prev) + earlier, by an identity skip
                residual = draw(st.sampled_from(names[:-1]))
                widths[dst] = widths[residual]
            else:
                widths[dst] = draw(st.integers(1, max_width))
            ops.append(("weight", f"{dst}.weight", prev, dst, _mask(draw, (widths[dst], widths[prev])), 1))
            if residual is not None:
                ops.append(("identity", residual, dst))
        # skip edges from any earlier group into dst (shrinks to none)
        if skips:
            for j, earlier in enumerate(names[:-1]):
                if earlier != residual and draw(st.integers(0, 3)) == 3:
                    if widths[earlier] == widths[dst] and not draw(st.integers(0, 3)) == 3:
                        ops.append(("identity", earlier, dst))
                    else:
                        ops.append(("weight", f"{dst}.skip{j}.weight", earlier, dst,
                                    _mask(draw, (widths[dst], widths[earlier])), 1))
        names.append(dst)
    # every input must feed something, else it is merely dead (the spine starts at the last one)
    for s in inputs:
        if not any(op[2 if op[0] == "weight" else 1] == s for op in ops):
            last = names[-1]
            ops.append(("weight", f"{last}.from_{s}.weight", s, last, _mask(draw, (widths[last], widths[s])), 1))
    consts = {}
    if constants:
        for g in names[len(inputs):]:
            if draw(st.integers(0, 2)) == 2:
                consts[g] = _mask(draw, (widths[g],), 0.5)
    return Net(widths, inputs, ops, consts)


# --------------------------------------------------------------------------------------
# Models: random architectures for netgraph.testing.models.SpecNet, and random pruning
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

    from .models import SpecNet, randomize_bn

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
