"""From a checkpoint to a :class:`LayeredGraph`, without model code.

Contract
--------
* If the checkpoint carries a topology spec (``meta["topology"]``, written by netgraph's
  trainer or :func:`graph_to_spec`), the exact graph is rebuilt from it
  (``graph.topology == "stored"``).
* Otherwise the forward order is inferred from the weights' shapes and names
  (``graph.topology == "inferred-chain"``).  Linear ``(out, in)`` and Conv ``(out, in, *k)``
  (1-D or 2-D kernels) chain when ``out`` of one equals ``in`` of the next; a conv followed
  by a linear whose ``in_features`` is a multiple ``k`` of the conv's channels is a flatten
  (channel c → features ``c*k … c*k+k-1``).

  - **Names order within a prefix.**  A key's *prefix* is its text before the first digit
    (``features.``, ``classifier.``, ``fc``, ``layer``); within a prefix the numbers in the
    keys give the order (natural order: ``net.2`` before ``net.10``), and consecutive layers
    must chain, else the file is refused.
  - **Shapes order the prefixes.**  Prefixes are placed in the one order their shapes
    allow (torchvision's ``features.N`` then ``classifier.N``).  No order, several orders,
    or more candidates than the search may try (a bounded, iterative search) → a refusal.
  - **Named skips are refused.**  A key with a word that names a skip or a projection
    shortcut (``downsample``, ``shortcut``, ``skip``, ``residual``, ``proj``…) means the
    network is not a chain, and where the shortcut joins is not in the file.
* **No silent chain.**  Without model code, a skip connection that carries no weight (a
  ResNet's identity shortcut) is invisible; a plain chain would call the weights it keeps
  alive dead.  So, by default (``skips="plausible"``), the inferred graph is a *sound
  over-approximation*: it adds an identity skip between every two groups of equal width
  that are not separated by a flatten (the input and every layer output count; consecutive
  ones suffice, identities compose).  Every network made of the inferred chain plus any
  such additive identity skips is a subgraph of it, and adding connections can only make
  units accessible or coaccessible, so a weight it calls dead is dead in all of them; a
  weight it calls effective may be dead in the real network (an upper bound).  When the
  skips change the verdict of any weight the audit says how many, in its warnings.
  ``skips="none"`` trusts the plain chain (exact when the network has no skips).
* **The assumption is stated.**  Every inferred graph carries, first in ``warnings``,
  what it assumes: the order, and that only elementwise ops (activations, BatchNorm,
  dropout), pooling and flatten sit between the layers.  An op that mixes units
  (``cumsum``, attention, a matrix product without weights) cannot be seen in a
  state_dict; such a network needs ``--model``.
* ``X.bias`` non-zero → constant seeds on ``X``'s outputs.  A BatchNorm (``P.weight``,
  ``P.bias``, ``P.running_mean``, ``P.running_var``) is channel identity; only its shift
  matters (a constant source).  It is attributed to the one layer with as many outputs,
  or, when several have, to the last one stored before it in a torch file (registration
  order); in a safetensors file (sorted keys) to all of them, with a warning — counting a
  shift as a constant source where there is none only keeps weights, never removes live ones.
* Every step is iterative and near-linear in the number of tensors (10,000-layer chains).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re
from typing import Mapping

import numpy as np
from .._lazy import sparse as sp  # scipy.sparse, imported on first use (start-up)

from ._checkpoint import Checkpoint, PrunableWeight, effective_tensor, natural_key
from .._graph import GraphBuilder, LayeredGraph
from .._spec import graph_from_spec
from ..errors import BadCheckpoint, ChainNotInferable

__all__ = ["graph_from_checkpoint", "infer_chain", "revived_warning", "SKIP_WORDS"]

_MAX_STEPS = 200_000  # moves of the prefix-order search before it gives up (refusal)
_NEED_MODEL = "give the model (--model pkg.module:factory) so netgraph can trace it"
#: Words (start of a name token) that mark a skip connection or a projection shortcut.
SKIP_WORDS = ("downsampl", "shortcut", "skip", "residual", "proj")
_SKIPS = ("plausible", "none")
_SKIP = ":possible-skip"  # name suffix of the identity blocks of possible skips (the stream reads it)


def graph_from_checkpoint(ckpt: Checkpoint, *, skips: str = "plausible") -> LayeredGraph:
    """The graph of a checkpoint: from its topology spec (exact), else inferred (see the module).

    Parameters
    ----------
    ckpt : Checkpoint
    skips : {"plausible", "none"}
        For an inferred graph only: over-approximate identity skips between equal-width
        groups (sound; the default) or trust a plain chain.

    Raises
    ------
    ChainNotInferable
        No stored topology and the order cannot be inferred soundly (see the module).
    """
    topo = ckpt.meta.get("topology") if ckpt.meta else None
    if topo:
        prunable = ckpt.prunable()
        g = graph_from_spec(topo, {k: w.mask for k, w in prunable.items()}, ckpt.tensors, source=ckpt.path)
        return dataclasses.replace(g, topology="stored")
    return infer_chain(ckpt, skips=skips)


def _bias_key(name: str) -> str:
    return name[: -len("weight")] + "bias" if name.endswith("weight") else name + ".bias"


def _compatible(a: PrunableWeight, b: PrunableWeight) -> int | None:
    """Expansion factor if ``b`` can follow ``a`` (1 = direct), else None."""
    out_a, in_b = a.mask.shape[0], b.mask.shape[1]
    conv_a, conv_b = a.mask.ndim > 2, b.mask.ndim > 2
    if out_a == in_b:
        return 1
    if conv_a and not conv_b and in_b % out_a == 0:
        return in_b // out_a
    return None


def _skip_word(name: str) -> str | None:
    for token in re.split(r"[^a-z]+", name.lower()):
        for word in SKIP_WORDS:
            if token.startswith(word):
                return token
    return None


def _prefix(name: str) -> str:
    """The text of a key before its first (ASCII) digit: layers sharing it are ordered by number."""
    return natural_key(name)[0]


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _segment_orders(segs: list[list[PrunableWeight]], path: str) -> list[int]:
    """The one order of the prefix segments that the shapes allow; refuses otherwise.

    Two segments with the same widths and kinds at both ends can trade places in any
    order, so they are refused at once.  Otherwise a bounded, iterative depth-first search
    for Hamiltonian paths of the compatibility graph (last layer of one segment → first
    layer of the next) stops at two; successors come from indexes by width (never a
    comparison of all pairs), and every move or skipped candidate counts against the budget.
    """
    n = len(segs)
    if n == 1:
        return [0]
    names = [f"{s[0].name}…" if len(s) > 1 else s[0].name for s in segs]
    firsts = [s[0] for s in segs]
    lasts = [s[-1] for s in segs]
    seen: dict[tuple, int] = {}
    for i in range(n):
        sig = (firsts[i].mask.shape[1], firsts[i].mask.ndim > 2, lasts[i].mask.shape[0], lasts[i].mask.ndim > 2)
        if sig in seen:
            j = seen[sig]
            raise ChainNotInferable(
                f"{path}: the forward order is ambiguous: {names[j]} and {names[i]} take {sig[0]} and give "
                f"{sig[2]} units, so the shapes cannot tell which comes first; {_NEED_MODEL}")
        seen[sig] = i
    by_in: dict[int, list[int]] = {}
    flat_by_out: dict[int, list[int]] = {}  # linear-first segments reachable by a flatten
    conv_outs = {w.mask.shape[0] for w in lasts if w.mask.ndim > 2}
    for j, w in enumerate(firsts):
        by_in.setdefault(w.mask.shape[1], []).append(j)
        if w.mask.ndim == 2 and conv_outs:
            for d in _divisors(w.mask.shape[1]):
                if d in conv_outs and d != w.mask.shape[1]:
                    flat_by_out.setdefault(d, []).append(j)
    empty: list[int] = []
    succ = [(by_in.get(w.mask.shape[0], empty), flat_by_out.get(w.mask.shape[0], empty) if w.mask.ndim > 2 else empty)
            for w in lasts]  # shared lists: O(n) memory
    # A segment nothing can precede must come first; two such segments: no order at all.
    out_count: dict[int, int] = {}
    conv_out_count: dict[int, int] = {}
    for w in lasts:
        out_count[w.mask.shape[0]] = out_count.get(w.mask.shape[0], 0) + 1
        if w.mask.ndim > 2:
            conv_out_count[w.mask.shape[0]] = conv_out_count.get(w.mask.shape[0], 0) + 1
    starts = []
    for j, w in enumerate(firsts):
        width = w.mask.shape[1]
        preds = out_count.get(width, 0) - (lasts[j].mask.shape[0] == width)
        if w.mask.ndim == 2 and conv_out_count and preds == 0:
            preds = sum(conv_out_count.get(d, 0) - (d == lasts[j].mask.shape[0] and lasts[j].mask.ndim > 2)
                        for d in _divisors(width) if d != width)
        if preds == 0:
            starts.append(j)
    if len(starts) > 1:
        raise ChainNotInferable(
            f"{path}: the weight shapes do not chain in any order: nothing can come before "
            f"{names[starts[0]]} {tuple(firsts[starts[0]].mask.shape)} nor before {names[starts[1]]} "
            f"{tuple(firsts[starts[1]].mask.shape)}; {_NEED_MODEL}")
    found: list[list[int]] = []
    steps = 0
    used = [False] * n
    exhausted = True
    for start in starts or range(n):
        stack = [[start, 0]]  # (segment, position in its successor lists)
        used[start] = True
        while stack and exhausted:
            if len(stack) == n:
                found.append([f[0] for f in stack])
                if len(found) >= 2:
                    break
                used[stack.pop()[0]] = False
                continue
            top = stack[-1]
            direct, flat = succ[top[0]]
            j = -1
            while top[1] < len(direct) + len(flat):
                steps += 1
                cand = direct[top[1]] if top[1] < len(direct) else flat[top[1] - len(direct)]
                top[1] += 1
                if not used[cand]:
                    j = cand
                    break
            if steps > _MAX_STEPS:
                exhausted = False
            elif j < 0:
                used[stack.pop()[0]] = False
            else:
                used[j] = True
                stack.append([j, 0])
        for f in stack:
            used[f[0]] = False
        if len(found) >= 2 or not exhausted:
            break
    if len(found) == 1 and exhausted:
        return found[0]
    if len(found) >= 2:
        a, b = found[:2]
        raise ChainNotInferable(
            f"{path}: the forward order is ambiguous: {_short(names[i] for i in a)} and "
            f"{_short(names[i] for i in b)} both fit the shapes; {_NEED_MODEL}")
    if exhausted:
        shapes = _short((f"{s[0].name} {tuple(s[0].mask.shape)}" + (
            f" … {s[-1].name} {tuple(s[-1].mask.shape)}" if len(s) > 1 else "") for s in segs), sep=", ")
        raise ChainNotInferable(f"{path}: the weight shapes do not chain in any order ({shapes}); {_NEED_MODEL}")
    raise ChainNotInferable(
        f"{path}: {n} groups of layers (key prefixes) admit too many candidate orders to check within "
        f"{_MAX_STEPS:,} search steps; {_NEED_MODEL}")


def _short(items, limit: int = 8, sep: str = " -> ") -> str:
    items = list(items)
    if len(items) > limit:
        items = items[:limit // 2] + [f"… ({len(items) - limit + 1} more) …"] + items[-(limit // 2 - 1):]
    return sep.join(items)


def _check_tensors(tensors: Mapping[str, np.ndarray], bn_prefixes: set[str], path: str) -> None:
    """Every tensor must be understood: an unknown one could be an op that matters."""
    for key, t in tensors.items():
        if ".parametrizations." in key:
            raise ChainNotInferable(
                f"{path}: tensor {key!r} is a torch.nn.utils.parametrize original (torch.ao.pruning); its masks "
                "are not in the state_dict, so what is pruned is unknown: call sparsifier.squash_mask() (or "
                "parametrize.remove_parametrizations(module, 'weight')) before saving"
            )
        base = key[:-5] if key.endswith(("_orig", "_mask")) else key
        prefix = base.rsplit(".", 1)[0] if "." in base else ""
        leaf = base.rsplit(".", 1)[-1]
        if prefix in bn_prefixes and leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            continue
        if leaf == "bias" and t.ndim == 1:
            continue
        if leaf == "weight" and t.ndim in (2, 3, 4):
            continue
        if leaf == "weight":
            raise ChainNotInferable(
                f"{path}: weight {base!r} has {t.ndim} dimension(s) {tuple(t.shape)}; without model code "
                f"netgraph reads Linear (2-D) and Conv1d/Conv2d (3-D/4-D) weights only; {_NEED_MODEL}"
            )
        if t.ndim == 0:
            continue  # counters
        raise ChainNotInferable(
            f"{path}: tensor {key!r} {tuple(t.shape)} is not a Linear/Conv weight, bias or BatchNorm "
            f"statistic, so its role in the network is unknown; {_NEED_MODEL}"
        )


def infer_chain(ckpt: Checkpoint, *, skips: str = "plausible") -> LayeredGraph:
    """Infer the graph of a checkpoint from its weights' shapes and names (see the module contract).

    Parameters
    ----------
    ckpt : Checkpoint
    skips : {"plausible", "none"}
        ``"plausible"`` (default): add identity skips between equal-width groups, a sound
        over-approximation of any residual network with this chain of weights.
        ``"none"``: a plain chain (exact only if the network has no skip connection).

    Returns
    -------
    LayeredGraph
        ``topology == "inferred-chain"``; ``warnings[0]`` states the assumption.

    Raises
    ------
    ChainNotInferable
        Named skips, unknown tensors, or not exactly one order (one line; asks for --model).
    BadCheckpoint
        No prunable weight, or a bias of the wrong shape.
    """
    if skips not in _SKIPS:
        raise ValueError(f"skips must be one of {_SKIPS}, got {skips!r}")
    path = ckpt.path
    prunable = ckpt.prunable()
    tensors = ckpt.tensors
    bn_prefixes = {k[: -len(".running_mean")] for k in tensors if k.endswith(".running_mean")}
    _check_tensors(tensors, bn_prefixes, path)
    layers = [w for w in prunable.values() if w.name.rsplit(".", 1)[-1] == "weight" and w.mask.ndim in (2, 3, 4)]
    if not layers:
        raise BadCheckpoint(f"{path}: no prunable weight (Linear/Conv) found among {len(tensors)} tensors")
    for key in [w.name for w in layers] + sorted(bn_prefixes):
        word = _skip_word(key)
        if word is not None:
            raise ChainNotInferable(
                f"{path}: {key!r} names a skip connection or shortcut ({word!r}): the network is not a chain "
                f"and where the shortcut joins is not stored in a state_dict; {_NEED_MODEL}")
    # Layers sharing a prefix keep their natural key order (prunable() is in natural order).
    segments: dict[str, list[PrunableWeight]] = {}
    for w in layers:
        segments.setdefault(_prefix(w.name), []).append(w)
    segs = list(segments.values())
    for s in segs:
        for a, b in zip(s, s[1:]):
            if _compatible(a, b) is None:
                raise ChainNotInferable(
                    f"{path}: {a.name!r} {tuple(a.mask.shape)} and {b.name!r} {tuple(b.mask.shape)} are consecutive "
                    f"in the numbers of their names but do not chain ({a.mask.shape[0]} outputs, "
                    f"{b.mask.shape[1]} inputs); {_NEED_MODEL}")
    order = _segment_orders(segs, path)
    chain_layers = [w for i in order for w in segs[i]]
    return _build_chain(chain_layers, tensors, bn_prefixes, path, ckpt.format == "safetensors", skips)


def _stored_key(name: str, tensors: Mapping[str, np.ndarray]) -> str:
    return name if name in tensors else name + "_orig"


def _build_chain(layers: list[PrunableWeight], tensors: Mapping[str, np.ndarray], bn_prefixes: set[str],
                 path: str, sorted_keys: bool, skips: str) -> LayeredGraph:
    def builder(with_skips: bool) -> tuple[GraphBuilder, int, list[str]]:
        b = GraphBuilder()
        warnings: list[str] = []
        b.input("input", layers[0].mask.shape[1])
        src = "input"
        outs: list[tuple[str, str, int]] = []  # (layer name, output group, width)
        last_of_width: dict[int, str] = {layers[0].mask.shape[1]: "input"}  # skip candidates
        count_of_width: dict[int, int] = {layers[0].mask.shape[1]: 1}  # groups of that width (this domain)
        n_skips = 0
        for i, w in enumerate(layers):
            if i > 0:
                factor = _compatible(layers[i - 1], w)
                if factor != 1:
                    flat = f"{src}:flatten"
                    b.expand(src, flat, factor)
                    if with_skips:
                        n_skips += _possible_concats(b, src, flat, layers[i - 1], factor,
                                                     count_of_width.get(layers[i - 1].mask.shape[0], 1))
                    src = flat
                    last_of_width = {w.mask.shape[1]: flat}  # no identity skip across a flatten
                    count_of_width = {w.mask.shape[1]: 1}
            dst = w.name[: -len(".weight")] if w.name.endswith(".weight") else w.name
            b.weight(w.name, src, dst, w.mask)
            bias = effective_tensor(tensors, _bias_key(w.name))
            if bias is not None:
                if bias.shape != (w.mask.shape[0],):
                    raise BadCheckpoint(
                        f"{path}: bias {_bias_key(w.name)!r} has shape {tuple(bias.shape)} but "
                        f"{w.name!r} has {w.mask.shape[0]} outputs"
                    )
                b.constant(dst, bias != 0)
            width = w.mask.shape[0]
            if with_skips and width in last_of_width:
                b.identity(last_of_width[width], dst, name=f"{last_of_width[width]}->{dst}{_SKIP}")
                n_skips += 1
            last_of_width[width] = dst
            count_of_width[width] = count_of_width.get(width, 0) + 1
            outs.append((w.name, dst, width))
            src = dst
        _attach_batchnorms(b, outs, tensors, bn_prefixes, path, sorted_keys, warnings)
        return b, n_skips, warnings

    assumption = (
        f"topology inferred from the weight shapes without model code: assumed the chain {_short(w.name for w in layers)} "
        "with only elementwise ops (activation, BatchNorm, dropout), pooling and flatten between layers; "
        "an op that mixes units (cumsum, attention, a product of activations) is invisible in a state_dict "
        "and would make this audit wrong")
    b, n_skips, warnings = builder(skips == "plausible")
    if n_skips:
        assumption += (
            "; identity skips between equal-width layers (as in a ResNet) and concatenations of equal-width "
            "tensors before a flatten cannot be ruled out, so they are assumed possible (a sound "
            "over-approximation: a weight called dead is dead with or without them); any other "
            "concatenation is assumed absent")
    elif skips == "none":
        assumption += "; no skip connection or concatenation (skips='none')"
    else:
        assumption += "; no two layers have equal widths, so no identity skip fits; concatenations are assumed absent"
    b.warn(f"{assumption}; {_NEED_MODEL} for the exact graph")
    for msg in warnings:
        b.warn(msg)
    graph = b.build(topology="inferred-chain")
    if n_skips:  # the plain chain: the same graph without the possible skips
        plain = dataclasses.replace(graph, blocks=tuple(x for x in graph.blocks if not x.name.endswith(_SKIP)))
        extra = _revived(plain, graph)
        if extra:
            graph = dataclasses.replace(graph, warnings=graph.warnings + (revived_warning(extra),))
    return graph


def _possible_concats(b: GraphBuilder, src: str, flat: str, conv: PrunableWeight, factor: int, parts: int) -> int:
    """Over-approximate a concatenation of ``m`` equal-width tensors just before a flatten.

    ``cat([t_1 … t_m], dim=1).flatten(1)`` with ``C`` channels each and ``s`` positions
    (``m * s == factor``; ``s`` a square for a 2-D conv) puts channel ``c`` of part ``p`` at
    features ``p*C*s + c*s … + s-1``.  The parts are groups of width ``C`` (at most
    ``parts`` of them: the input and the layer outputs since the last flatten), which all
    reach channel ``c`` of ``src`` through the possible identity skips, so one block per
    admissible ``m`` from ``src`` covers them.  Returns the number of blocks added.
    """
    width = conv.mask.shape[0]
    added = 0
    for m in range(2, min(parts, factor) + 1):
        s = factor // m
        if factor % m or (conv.mask.ndim == 4 and math.isqrt(s) ** 2 != s):
            continue
        c = np.arange(width, dtype=np.int64)
        p = np.arange(m, dtype=np.int64)
        j = np.arange(s, dtype=np.int64)
        cols = (p[None, :, None] * width * s + c[:, None, None] * s + j[None, None, :]).reshape(width, -1)
        rows = np.repeat(c, m * s)
        matrix = sp.coo_matrix((np.ones(rows.size, bool), (rows, cols.ravel())), shape=(width, width * factor))
        b.connect(src, flat, matrix, name=f"{src}->{flat}:concat-of-{m}{_SKIP}",
                  note=f"a concatenation of {m} tensors of {width} channels before the flatten cannot be ruled out")
        added += 1
    return added


def revived_warning(extra: int) -> str:
    """The warning of an inferred chain whose possible skips keep ``extra`` kept weights alive."""
    return (f"{extra:,} kept weight(s) would be dead in a plain chain but an identity skip between "
            "equal-width layers could keep them alive; they are counted as effective (an upper bound)")


def _revived(plain: LayeredGraph, over: LayeredGraph) -> int:
    """How many kept weights are effective in ``over`` but dead in ``plain`` (same weighted blocks)."""
    from .._reach import _propagate  # accessibility and coaccessibility only: no constants needed

    def ends(g: LayeredGraph):
        acc = _propagate(g, {s: np.ones(g.groups[s].width, bool) for s in g.sources}, forward=True)
        coacc = _propagate(g, {s: np.ones(g.groups[s].width, bool) for s in g.sinks}, forward=False)
        return acc, coacc

    (ap, cp), (ao, co) = ends(plain), ends(over)
    total = 0
    for b in plain.weighted_blocks:  # the same Block objects in both graphs
        ep = ap[b.src][b.rows] & cp[b.dst][b.cols]
        eo = ao[b.src][b.rows] & co[b.dst][b.cols]
        total += int(b.taps[eo & ~ep].sum())
    return total


def _attach_batchnorms(b: GraphBuilder, outs: list[tuple[str, str, int]], tensors: Mapping[str, np.ndarray],
                       bn_prefixes: set[str], path: str, sorted_keys: bool, warnings: list[str]) -> None:
    """BatchNorm shifts as constant seeds (see the module contract); near-linear in the tensors."""
    stored = {k: i for i, k in enumerate(tensors)}  # file order: registration order for torch.save
    by_width: dict[int, list[tuple[int, str]]] = {}
    for name, group, width in outs:  # in chain order; sorted by stored position below
        by_width.setdefault(width, []).append((stored.get(_stored_key(name, tensors), -1), group))
    for v in by_width.values():
        v.sort()
    seeds: dict[str, np.ndarray] = {}
    shared: dict[int, list[str]] = {}  # width -> BatchNorms attributed to all layers of that width
    shared_seeds: dict[int, np.ndarray] = {}
    for prefix in sorted(bn_prefixes, key=natural_key):
        width = tensors[prefix + ".running_mean"].shape[0]
        candidates = by_width.get(width)
        if not candidates:
            raise ChainNotInferable(
                f"{path}: BatchNorm {prefix!r} has {width} channels but no layer has {width} outputs; {_NEED_MODEL}"
            )
        gamma = effective_tensor(tensors, prefix + ".weight")
        gamma = np.ones(width) if gamma is None else gamma
        beta = effective_tensor(tensors, prefix + ".bias")
        beta = np.zeros(width) if beta is None else beta
        mean = tensors[prefix + ".running_mean"]
        # shift = beta - mean * gamma / sqrt(var + eps): non-zero unless beta and mean*gamma vanish.
        shift = (beta != 0) | ((mean != 0) & (gamma != 0))
        target = None
        if len(candidates) == 1:
            target = candidates[0][1]
        elif not sorted_keys:
            here = stored.get(prefix + ".running_mean", 0)
            k = bisect.bisect_left(candidates, (here, "")) - 1
            if k >= 0 and candidates[k][0] >= 0:
                target = candidates[k][1]
        if target is not None:
            seeds[target] = seeds[target] | shift if target in seeds else shift
        else:
            shared.setdefault(width, []).append(prefix)
            shared_seeds[width] = shared_seeds[width] | shift if width in shared_seeds else shift
    for width, prefixes in shared.items():
        groups = [g for _, g in by_width[width]]
        shown = ", ".join(repr(p) for p in prefixes[:3]) + (f" and {len(prefixes) - 3} more" if len(prefixes) > 3 else "")
        warnings.append(
            f"BatchNorm {shown} could follow {len(groups)} layers with {width} outputs; its shift "
            "is counted as a constant source on all of them (conservative)"
        )
        for g in groups:
            seeds[g] = seeds[g] | shared_seeds[width] if g in seeds else shared_seeds[width]
    for g, units in seeds.items():
        b.constant(g, units)
