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
