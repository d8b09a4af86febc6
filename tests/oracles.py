"""Slow, obviously-correct references.

They read the raw description of a network (``tests.strategies.Net``) with explicit loops
and networkx, never netgraph's blocks, so a bug in netgraph's transpose, propagation or
counting cannot hide in its own oracle.
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np


def unit_edges(net):
    """Yield (src node, dst node, weight index or None) for every kept connection, by loops."""
    for op in net.ops:
        kind = op[0]
        if kind == "weight":
            _, name, src, dst, mask, groups = op
            out_ch, in_g = mask.shape[0], mask.shape[1]
            per_group = out_ch // groups
            for idx in itertools.product(*(range(s) for s in mask.shape)):
                if mask[idx]:
                    o, c = idx[0], idx[1]
                    i = (o // per_group) * in_g + c
                    yield (src, i), (dst, o), (name, idx)
        elif kind == "identity":
            for u in range(net.widths[op[1]]):
                yield (op[1], u), (op[2], u), None
        elif kind == "expand":
            _, src, dst, factor, channels_last = op
            w = net.widths[src]
            for c in range(w):
                for t in range(factor):
                    j = c + w * t if channels_last else c * factor + t
                    yield (src, c), (dst, j), None
        elif kind == "dense":
            for i in range(net.widths[op[1]]):
                for j in range(net.widths[op[2]]):
                    yield (op[1], i), (op[2], j), None


def sinks(net):
    outs = {op[2] if op[0] == "weight" else op[1] for op in net.ops}
    return [g for g in net.widths if g not in outs and g not in net.inputs]


def unit_graph(net) -> nx.DiGraph:
    G = nx.DiGraph()
    for g, w in net.widths.items():
        G.add_nodes_from((g, u) for u in range(w))
    for a, b, _ in unit_edges(net):
        G.add_edge(a, b)
    return G


def reachability_oracle(net):
    """accessible / coaccessible / constant unit sets, by networkx descendants / ancestors."""
    G = unit_graph(net)
    ins = [(s, u) for s in net.inputs for u in range(net.widths[s])]
    outs = [(s, u) for s in sinks(net) for u in range(net.widths[s])]
    acc = set(ins).union(*(nx.descendants(G, n) for n in ins))
    coacc = set(outs).union(*(nx.ancestors(G, n) for n in outs))
    seeds = [(g, u) for g, v in net.constants.items() for u in np.flatnonzero(v)]
    const = set(seeds).union(*(nx.descendants(G, n) for n in seeds)) if seeds else set()
    return acc, coacc, const


def weight_status_oracle(net):
    """Per weight name: counts of kept / accessible / coaccessible / effective / constant weights."""
    acc, coacc, const = reachability_oracle(net)
    counts = {}
    for a, b, w in unit_edges(net):
        if w is None:
            continue
        c = counts.setdefault(w[0], dict(kept=0, accessible=0, coaccessible=0, effective=0, constant=0))
        c["kept"] += 1
        c["accessible"] += a in acc
        c["coaccessible"] += b in coacc
        c["effective"] += (a in acc) and (b in coacc)
        c["constant"] += (a not in acc) and (a in const) and (b in coacc)
    for op in net.weight_ops:
        counts.setdefault(op[1], dict(kept=0, accessible=0, coaccessible=0, effective=0, constant=0))
    return counts


def dense_chain_product(masks, upto: int) -> np.ndarray:
    """S_a of a chain in the papers' orientation: ψ(W¹)…ψ(W^upto), W^ℓ = mask_ℓᵀ (in × out),
    as exact Python-int path counts (object arrays never overflow)."""
    n_in = masks[0].shape[1]
    s = np.eye(n_in, dtype=object)
    for m in masks[:upto]:
        s = s.dot(m.T.astype(int).astype(object))
    return s


def mlp_forward(weights, biases, x):
    """float64 ReLU MLP with weights in PyTorch layout (out, in); no activation on the last layer."""
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.T + (b if b is not None else 0.0)
        if i < len(weights) - 1:
            h = np.maximum(h, 0.0)
    return h


# --------------------------------------------------------------------------------------
# Models (issue 3): the linearised gradient probe
# --------------------------------------------------------------------------------------

def gradient_probe(model, input_shape) -> dict:
    """Effective weights of a torch model by the effective-sparsity method, independent of fx.

    A float64 copy with |mask| as weights (mask = ``weight_mask`` in prune's format, else
    ``weight != 0``), zero biases, BatchNorm / activations / dropout as identity, max-pool
    as avg-pool, fed an all-ones input: every value is >= 0 and nothing cancels, so weight
    ``w`` is effective iff ``grad(sum(outputs)) * w != 0``.  Returns parameter path
    (``"layer1.0.conv1.weight"``) → bool array of the weight's shape, for Linear and ConvNd.
    """
    import copy

    import torch
    import torch.nn as nn
    from torch.nn.utils import prune

    memo = {}
    for mod in model.modules():
        for value in vars(mod).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    m = copy.deepcopy(model, memo)
    masks = {}
    for name, mod in m.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            mask = getattr(mod, "weight_mask", None)
            mask = (mask != 0) if mask is not None else (mod.weight.detach() != 0)
            for hook in list(mod._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    prune.remove(mod, hook._tensor_name)
            mod.weight = nn.Parameter(mask.double())
            if mod.bias is not None:
                mod.bias = nn.Parameter(torch.zeros_like(mod.bias, dtype=torch.float64), requires_grad=False)
            masks[f"{name}.weight" if name else "weight"] = mask.numpy()

    def replacement(mod):
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) or isinstance(mod, (
                nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Dropout, nn.Identity)):
            return nn.Identity()
        if isinstance(mod, nn.MaxPool2d):
            return nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding, ceil_mode=mod.ceil_mode)
        if isinstance(mod, nn.AdaptiveMaxPool2d):
            return nn.AdaptiveAvgPool2d(mod.output_size)
        return None

    for name, mod in list(m.named_modules()):
        for child_name, child in list(mod.named_children()):
            new = replacement(child)
            if new is not None:
                setattr(mod, child_name, new)
    m = m.double().eval()
    out = m(torch.ones(input_shape, dtype=torch.float64))
    outs = out if isinstance(out, (tuple, list)) else [out]
    sum(o.sum() for o in outs).backward()
    result = {}
    for name, mod in m.named_modules():
        key = f"{name}.weight" if name else "weight"
        if key in masks:
            g = mod.weight.grad
            score = (g * mod.weight.detach()) if g is not None else torch.zeros_like(mod.weight)
            result[key] = (score != 0).numpy() & masks[key]
    return result
