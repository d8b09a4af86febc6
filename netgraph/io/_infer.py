"""From a checkpoint to a :class:`LayeredGraph`, without model code.

Contract
--------
* If the checkpoint carries a topology spec (``meta["topology"]``, written by netgraph's
  trainer or :func:`graph_to_spec`), the exact graph is rebuilt from it.
* Otherwise the forward order is inferred from the weights' shapes: Linear ``(out, in)``
  and Conv ``(out, in, *k)`` (1-D or 2-D kernels) chain when ``out`` of one equals ``in``
  of the next; a conv followed by a linear whose ``in_features`` is a multiple ``k`` of the
  conv's channels is a flatten (channel c → features ``c*k … c*k+k-1``).  Key order in a
  file is not forward order (safetensors sorts keys; ``net.10`` sorts before ``net.2``):
  the shapes decide, and natural key order only breaks ties between orders the shapes
  allow.  No order, or several orders none of which is the natural one → a clear refusal
  that says the model is needed.
* ``X.bias`` non-zero → constant seeds on ``X``'s outputs.  A BatchNorm (``P.weight``,
  ``P.bias``, ``P.running_mean``, ``P.running_var``) is channel identity; only its shift
  matters (a constant source).  It is attributed to the one layer with as many outputs,
  or, when several have, to the last one stored before it in a torch file (registration
  order); in a safetensors file (sorted keys) to all of them, with a warning — counting a
  shift as a constant source where there is none only keeps weights, never removes live ones.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ._checkpoint import Checkpoint, PrunableWeight, effective_tensor, natural_key
from .._graph import GraphBuilder, LayeredGraph
from .._spec import graph_from_spec
from ..errors import BadCheckpoint, ChainNotInferable

__all__ = ["graph_from_checkpoint", "infer_chain"]

_MAX_STEPS = 200_000
_NEED_MODEL = "give the model (--model pkg.module:factory) so netgraph can trace it"


def graph_from_checkpoint(ckpt: Checkpoint) -> LayeredGraph:
    """The exact graph of a checkpoint: from its topology spec, else an inferred chain."""
    topo = ckpt.meta.get("topology") if ckpt.meta else None
    if topo:
        prunable = ckpt.prunable()
        return graph_from_spec(topo, {k: w.mask for k, w in prunable.items()}, ckpt.tensors, source=ckpt.path)
    return infer_chain(ckpt)


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


def _orders(layers: list[PrunableWeight]) -> tuple[list[list[int]], bool]:
    """Up to two Hamiltonian chains of the compatibility graph; bool = search completed."""
    n = len(layers)
    nxt = [[j for j in range(n) if j != i and _compatible(layers[i], layers[j]) is not None] for i in range(n)]
    found: list[list[int]] = []
    steps = 0
    complete = True

    def dfs(path: list[int], used: set[int]) -> bool:
        nonlocal steps, complete
        steps += 1
        if steps > _MAX_STEPS:
            complete = False
            return True
        if len(path) == n:
            found.append(list(path))
            return len(found) >= 2
        for j in nxt[path[-1]]:
            if j not in used:
                path.append(j)
                used.add(j)
                if dfs(path, used):
                    return True
                used.discard(j)
                path.pop()
        return False

    for start in range(n):
        if dfs([start], {start}):
            break
    return found, complete


def infer_chain(ckpt: Checkpoint) -> LayeredGraph:
    """Infer a chain from the shapes of a checkpoint's weights (see the module contract)."""
    path = ckpt.path
    prunable = ckpt.prunable()
    tensors = ckpt.tensors
    bn_prefixes = {k[: -len(".running_mean")] for k in tensors if k.endswith(".running_mean")}
    # Every tensor must be understood: an unknown one could be an op that matters.
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
    layers = [w for w in prunable.values() if w.name.rsplit(".", 1)[-1] == "weight" and w.mask.ndim in (2, 3, 4)]
    if not layers:
        raise BadCheckpoint(f"{path}: no prunable weight (Linear/Conv) found among {len(tensors)} tensors")
    warnings: list[str] = []
    natural = list(range(len(layers)))  # `prunable()` is in natural key order
    natural_ok = all(_compatible(layers[i], layers[i + 1]) is not None for i in range(len(layers) - 1))
    orders, complete = _orders(layers)
    if natural_ok:
        order = natural
        if len(orders) > 1 or not complete:
            warnings.append("several forward orders fit the weight shapes; natural key order was used")
    elif len(orders) == 1 and complete:
        order = orders[0]
    elif not orders and complete:
        shapes = ", ".join(f"{w.name} {tuple(w.mask.shape)}" for w in layers)
        raise ChainNotInferable(f"{path}: the weight shapes do not chain in any order ({shapes}); {_NEED_MODEL}")
    else:
        a, b = (orders + [[]])[:2]
        raise ChainNotInferable(
            f"{path}: the forward order is ambiguous: "
            f"{' -> '.join(layers[i].name for i in a)} and {' -> '.join(layers[i].name for i in b) or 'others'} "
            f"both fit the shapes; {_NEED_MODEL}"
        )
    chain_layers = [layers[i] for i in order]
    return _build_chain(chain_layers, tensors, bn_prefixes, warnings, path, ckpt.format == "safetensors")


def _stored_key(name: str, tensors: Mapping[str, np.ndarray]) -> str:
    return name if name in tensors else name + "_orig"


def _build_chain(layers: list[PrunableWeight], tensors: Mapping[str, np.ndarray], bn_prefixes: set[str],
                 warnings: list[str], path: str, sorted_keys: bool) -> LayeredGraph:
    b = GraphBuilder()
    first = layers[0]
    b.input("input", first.mask.shape[1])
    src = "input"
    outs: list[tuple[str, str, int]] = []  # (layer name, output group, width)
    for i, w in enumerate(layers):
        if i > 0:
            factor = _compatible(layers[i - 1], w)
            if factor != 1:
                flat = f"{src}:flatten"
                b.expand(src, flat, factor)
                src = flat
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
        outs.append((w.name, dst, w.mask.shape[0]))
        src = dst
    stored = {k: i for i, k in enumerate(tensors)}  # file order: registration order for torch.save
    for prefix in sorted(bn_prefixes, key=natural_key):
        width = tensors[prefix + ".running_mean"].shape[0]
        candidates = [o for o in outs if o[2] == width]
        if not candidates:
            raise ChainNotInferable(
                f"{path}: BatchNorm {prefix!r} has {width} channels but no layer has {width} outputs; {_NEED_MODEL}"
            )
        if len(candidates) > 1 and not sorted_keys:
            here = stored.get(prefix + ".running_mean", 0)
            before = [o for o in candidates if stored.get(_stored_key(o[0], tensors), -1) < here]
            candidates = before[-1:] or candidates
        if len(candidates) > 1:
            warnings.append(
                f"BatchNorm {prefix!r} could follow {len(candidates)} layers with {width} outputs; its shift "
                "is counted as a constant source on all of them (conservative)"
            )
        gamma = effective_tensor(tensors, prefix + ".weight")
        gamma = np.ones(width) if gamma is None else gamma
        beta = effective_tensor(tensors, prefix + ".bias")
        beta = np.zeros(width) if beta is None else beta
        mean = tensors[prefix + ".running_mean"]
        # shift = beta - mean * gamma / sqrt(var + eps): non-zero unless beta and mean*gamma vanish.
        for _, group, _ in candidates:
            b.constant(group, (beta != 0) | ((mean != 0) & (gamma != 0)))
    for msg in warnings:
        b.warn(msg)
    return b.build()
