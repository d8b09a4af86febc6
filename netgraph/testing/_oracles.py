"""Slow, obviously-correct references.

Contract
--------
The graph oracles read the raw description of a network (:class:`~netgraph.testing.Net`)
with explicit loops and networkx, never netgraph's blocks, so a bug in netgraph's transpose,
propagation or counting cannot hide in its own oracle.  The model oracles
(:func:`gradient_probe`, :func:`influence_probe`) read a torch model by running it in
float64, never through the fx tracer.  networkx and torch are imported on first use.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["unit_edges", "sinks", "unit_graph", "reachability_oracle", "weight_status_oracle",
           "dense_chain_product", "mlp_forward", "gradient_probe", "influence_probe", "masked_copy"]


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
        elif kind == "connect":
            for i, j in zip(*np.nonzero(op[3])):
                yield (op[1], int(i)), (op[2], int(j)), None


def sinks(net):
    """Groups that feed nothing (and are not inputs): the outputs."""
    outs = {op[2] if op[0] == "weight" else op[1] for op in net.ops}
    return [g for g in net.widths if g not in outs and g not in net.inputs]


def unit_graph(net):
    """The unit-level ``networkx.DiGraph``: nodes ``(group, unit)``, one edge per kept connection."""
    import networkx as nx

    G = nx.DiGraph()
    for g, w in net.widths.items():
        G.add_nodes_from((g, u) for u in range(w))
    for a, b, _ in unit_edges(net):
        G.add_edge(a, b)
    return G


def reachability_oracle(net):
    """accessible / coaccessible / constant unit sets, by networkx descendants / ancestors."""
    import networkx as nx

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
# Models: the linearised gradient probe, and the influence probe (products, padding)
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


def influence_probe(model, input_shape, masks=None, *, trials: int = 3, seed: int = 0) -> dict:
    """Kept weights whose value changes the output, by float64 gradients at random points.

    A float64 copy of ``model`` (eval mode) gets random normal values on its kept weights
    (``masks``: parameter path → bool array of the weight's shape; default: the model's own,
    ``weight_mask`` in prune's format, else ``weight != 0``) and zeros elsewhere; biases and
    BatchNorm statistics stay as they are.  For ``trials`` random inputs and random output
    projections ``r``, weight ``w`` is reported when ``d(Σ r·y)/dw != 0`` in some trial.

    Unlike :func:`gradient_probe` nothing is linearised: products (gates ``x·σ(g)``),
    activations with ``f(0) != 0`` and zero padding act as they do in the model.  For models
    whose activations are smooth with a non-vanishing derivative (sigmoid, tanh, identity)
    the answer is exact with probability one; it is *effective ∪ constant* (a weight fed only
    by a bias influences the output by a constant), i.e. *effective* when the model has no
    bias or BatchNorm shift.  ReLU can hide influence at the sampled points (a unit whose
    pre-activation is negative everywhere), so do not use it as the truth for ReLU models.

    Returns
    -------
    dict str -> ndarray of bool
        For every Linear / ConvNd weight (``"gate.weight"``), the influential kept weights.
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
    gen = torch.Generator().manual_seed(seed)
    kept = {}
    for name, mod in m.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            key = f"{name}.weight" if name else "weight"
            own = getattr(mod, "weight_mask", None)
            own = (own != 0) if own is not None else (mod.weight.detach() != 0)
            mask = torch.as_tensor(np.asarray(masks[key]), dtype=torch.bool) if masks is not None and key in masks \
                else own
            for hook in list(mod._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    prune.remove(mod, hook._tensor_name)
            values = torch.randn(mod.weight.shape, generator=gen, dtype=torch.float64)
            mod.weight = nn.Parameter(values * mask)
            kept[key] = mask.numpy()
    m = m.double().eval()
    for p in m.parameters():
        if p.grad is not None:  # pragma: no cover - a fresh deepcopy has none
            p.grad = None
    weights = {n: mod.weight for n, mod in
               ((f"{name}.weight" if name else "weight", mod) for name, mod in m.named_modules())
               if n in kept}
    seen = {n: np.zeros(kept[n].shape, bool) for n in kept}
    for _ in range(trials):
        x = torch.randn(tuple(int(s) for s in input_shape), generator=gen, dtype=torch.float64)
        out = m(x)
        outs = out if isinstance(out, (tuple, list)) else [out]
        total = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64)).sum() for o in outs)
        grads = torch.autograd.grad(total, [weights[n] for n in kept], allow_unused=True)
        for n, g in zip(kept, grads):
            if g is not None:
                seen[n] |= (g != 0).numpy()
    return {n: seen[n] & kept[n] for n in kept}


def _float64_copy(model, masks):
    """A float64 eval-mode copy of ``model`` with prune's hooks folded in and every Linear /
    ConvNd weight listed in ``masks`` multiplied by its mask (the caller's model is untouched)."""
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
    for name, mod in m.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            for hook in list(mod._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    prune.remove(mod, hook._tensor_name)
            key = f"{name}.weight" if name else "weight"
            if key in masks:
                with torch.no_grad():
                    mod.weight.mul_(torch.as_tensor(np.asarray(masks[key], bool), dtype=mod.weight.dtype))
    return m.double().eval()


def masked_copy(model, masks):
    """A float64 copy of ``model`` (plain weights, eval mode) whose Linear / ConvNd weights
    listed in ``masks`` are the masks themselves (1.0 kept, 0.0 pruned): what the probes read
    as "this model pruned with these masks".  The caller's model is untouched."""
    import torch

    m = _float64_copy(model, {})
    for name, mod in m.named_modules():
        key = f"{name}.weight" if name else "weight"
        if key in masks:
            with torch.no_grad():
                mod.weight.copy_(torch.as_tensor(np.asarray(masks[key], bool), dtype=torch.float64))
    return m
