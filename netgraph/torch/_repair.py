"""Repair a traced PyTorch model: prune the dead, reconnect the budget, compact the layers.

Contract
--------
Every function takes the caller's model and its :class:`~netgraph.torch._trace.TracedModel`
and returns a *new* model (a deep copy); the caller's model is never modified.

* :func:`prune_model` zeroes every dead weight that is not *constant*.  Such a weight reads
  a unit whose value is exactly 0 for every input, or writes a unit that reaches no output,
  so the outputs do not change at all.  Constant weights (they carry an input-independent
  value to a coaccessible unit) are kept, or, with ``fold_constants=True``, removed with
  their contribution added to the layer's bias wherever that contribution is the same at
  every position (it may not be next to zero padding); the fold is exact up to the
  rounding of the bias dtype (exact to 1e-12 relative in float64).
* :func:`reconnect_model` removes all dead weights (folding constants where exact) and gives
  the freed budget to the highest-scoring unkept weights ``(i, j)`` with ``i`` accessible
  and ``j`` coaccessible (after the removal): the same number of kept weights, 100 %
  effective.  Prune-format weights change their mask; plain weights take the added
  weights' scores as values.
* :func:`compact_model` prunes, then physically removes the units (rows, columns,
  channels, BatchNorm entries) whose value is 0 or reaches no output, keeping units tied
  by residual adds, concatenations, flattens and depthwise convs consistent; inputs,
  outputs and units read by ops without a slicing rule stay.  It measures the CPU speedup.
* :func:`verify` runs two models in float64 on seeded random inputs and returns the
  largest relative output difference.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.sparse.csgraph import connected_components
from torch.nn.utils import prune

from .._graph import pair_selector
from .._reach import EFFECTIVE, Reachability, unit_states
from ._builder import mask_of as _mask_of, value_of as _value_of
from ._trace import TracedModel, example_tensor
from ..errors import NetgraphError

__all__ = ["prune_model", "reconnect_model", "compact_model", "CompactResult", "verify",
           "strip_pruning"]


# --------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------

def _copy(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also copies prune's computed ``weight`` attributes.

    torch's prune stores ``weight = weight_orig * weight_mask`` as a plain attribute; when
    it was computed with autograd on, it is not a leaf and deepcopy refuses it.
    """
    memo: dict[int, object] = {}
    for mod in model.modules():
        for value in vars(mod).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def _as_double(model: nn.Module) -> nn.Module:
    """A float64 copy in eval mode; prune's computed attributes are recomputed too
    (a pruned submodule that its parent reads without calling, like
    ``MultiheadAttention.out_proj``, never runs its pre-hook)."""
    new = _copy(model).double().eval()
    with torch.no_grad():
        for mod in new.modules():
            for hook in list(mod._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    hook(mod, None)
    return new


def _kept(mod: nn.Module, name: str) -> np.ndarray:
    return _mask_of(mod, name).astype(bool)


def _set_kept(mod: nn.Module, name: str, keep: np.ndarray) -> None:
    """Make ``keep`` the kept weights: the mask buffer in prune's format, else zero the rest."""
    mask = getattr(mod, f"{name}_mask", None)
    t = torch.from_numpy(np.ascontiguousarray(keep))
    with torch.no_grad():
        if isinstance(mask, torch.Tensor):
            mask.copy_(t.to(mask.dtype))
            setattr(mod, name, getattr(mod, f"{name}_orig") * mask)
        else:
            w = getattr(mod, name)
            w.mul_(t.to(device=w.device, dtype=w.dtype))


def _selections(traced: TracedModel, reach: Reachability, model: nn.Module):
    """Per weighted block: (module, param, kept, effective, constant) boolean weight arrays
    (tap level where the traced model has it, channel level otherwise)."""
    out = {}
    tap = traced.taps().weight_states
    for b in traced.graph.weighted_blocks:
        qual, param = traced.params[b.name]
        mod = model.get_submodule(qual)
        kept = _kept(mod, param)
        ws = tap.get(b.name)
        if ws is not None and ws.kept.shape == kept.shape and np.array_equal(ws.kept, kept):
            eff, cst = ws.effective.copy(), ws.constant.copy()
        else:
            ws = reach.weight_states(b, kept)
            eff, cst = ws.effective, ws.constant
        out[b.name] = (mod, param, kept, eff, cst)
    return out


# --------------------------------------------------------------------------------------
# prune
# --------------------------------------------------------------------------------------

def prune_model(model: nn.Module, traced: TracedModel, *, fold_constants: bool = False) -> nn.Module:
    """A copy of ``model`` with every dead, non-constant weight removed (outputs unchanged).

    Parameters
    ----------
    model : nn.Module
        The model ``traced`` was made from (plain, or in torch's prune format).
    traced : TracedModel
        From :func:`netgraph.trace_model`.
    fold_constants : bool
        Also remove constant weights, adding their (input-independent) contribution to the
        layer's bias where it is uniform over positions; a missing bias is created.

    Returns
    -------
    nn.Module
        A deep copy; pruned weights are zeroed (plain) or unmasked (prune format).
    """
    new = _copy(model)
    reach = traced.reachability()
    sel = _selections(traced, reach, new)
    folded = _fold(model, traced, sel) if fold_constants else {}
    for name, (mod, param, kept, eff, cst) in sel.items():
        keep = eff | (cst & ~folded.get(name, np.zeros_like(cst)))
        if name in folded:
            _add_bias(mod, folded[name + ":bias"])
        if not np.array_equal(keep, kept):
            _set_kept(mod, param, keep)
    return new


def _fold(model: nn.Module, traced: TracedModel, sel) -> dict[str, np.ndarray]:
    """Which constant weights can be folded exactly, and the bias increments (float64)."""
    layers = {}
    for name, (mod, param, kept, eff, cst) in sel.items():
        if cst.any() and param == "weight" and isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) \
                and getattr(mod, "bias_orig", None) is None:
            layers[name] = traced.params[name][0]
    if not layers:
        return {}
    probe = _as_double(model)
    seen: dict[str, list[torch.Tensor]] = {q: [] for q in layers.values()}
    handles = [probe.get_submodule(q).register_forward_hook(
        lambda m, inp, out, q=q: seen[q].append(inp[0].detach())) for q in layers.values()]
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for _ in range(2):
            probe(torch.randn(traced.input_shape, generator=gen, dtype=torch.float64))
    for h in handles:
        h.remove()
    result: dict[str, np.ndarray] = {}
    for name, qual in layers.items():
        mod, param, kept, eff, cst = sel[name]
        pm = probe.get_submodule(qual)
        w = _value_of(pm, "weight").double() * torch.from_numpy(cst).double()
        outs = []
        for x in seen[qual]:
            if isinstance(pm, nn.Linear):
                y = F.linear(x, w)
                y = y.reshape(-1, y.shape[-1]).T  # (out, positions)
            else:
                y = pm._conv_forward(x, w, None)
                y = y.transpose(0, 1).reshape(y.shape[1], -1)
            outs.append(y)
        y = torch.cat(outs, dim=1)  # (out, positions of both runs)
        scale = y.abs().amax(dim=1)
        uniform = (y.amax(dim=1) - y.amin(dim=1)) <= 1e-12 * torch.clamp(scale, min=1e-300)
        ok = uniform.numpy()
        fold = cst & ok.reshape((-1,) + (1,) * (cst.ndim - 1))
        if fold.any():
            inc = torch.where(uniform, y[:, 0], torch.zeros_like(y[:, 0])).numpy()
            result[name] = fold
            result[name + ":bias"] = inc
    return result


def _add_bias(mod: nn.Module, inc: np.ndarray) -> None:
    w = mod.weight_orig if hasattr(mod, "weight_orig") else mod.weight
    with torch.no_grad():
        if mod.bias is None:
            mod.bias = nn.Parameter(torch.zeros(inc.shape[0], dtype=w.dtype, device=w.device))
        b64 = mod.bias.detach().double() + torch.from_numpy(inc)
        mod.bias.copy_(b64.to(mod.bias.dtype))


# --------------------------------------------------------------------------------------
# reconnect
# --------------------------------------------------------------------------------------

def reconnect_model(model: nn.Module, traced: TracedModel, *,
                    scores: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A copy with the dead weights replaced by the best effective candidates (same count).

    Parameters
    ----------
    scores : mapping of weight name → tensor of the weight's shape, optional
        Higher is better.  Default: ``|weight_orig|`` (torch's prune format keeps the dense
        weights); required for plain models, whose pruned weights are zeros.

    Returns
    -------
    nn.Module
        Prune-format weights get a new mask (``weight_orig`` unchanged); plain weights get
        the added weights' scores as values.  The kept count equals the input's as long as
        there are enough candidates (a collapsed network has none),
        and every kept weight is effective.

    Raises
    ------
    NetgraphError
        No scores for a plain model, or a score tensor of the wrong shape.
    """
    new = _copy(model)
    reach = traced.reachability()
    sel = _selections(traced, reach, new)
    folded = _fold(model, traced, sel)
    for name, (mod, param, kept, eff, cst) in sel.items():
        if name in folded:
            _add_bias(mod, folded[name + ":bias"])
        _set_kept(mod, param, eff)
    # Removing the dead keeps every effective weight effective but can make units lose
    # accessibility or coaccessibility (a unit coaccessible only through a dead weight), so
    # candidates are read from the graph without the dead.  Adding a candidate can make
    # new candidates (a unit becomes accessible), so the budget is spent in rounds.
    from ._trace import trace_model

    score = {name: _score(name, mod, param, kept.shape, scores) for name, (mod, param, kept, _, _) in sel.items()}
    keep = {name: eff.copy() for name, (_, _, _, eff, _) in sel.items()}
    budget = sum(int(kept.sum() - eff.sum()) for (_, _, kept, eff, _) in sel.values())
    while budget > 0:
        after_traced = trace_model(new, traced.input_shape)
        after, after_taps = after_traced.reachability(), after_traced.taps().candidates()
        chunks, owners, flats = [], [], []
        for k, name in enumerate(sel):
            b = traced.graph.block(name)
            if name in after_taps:  # tap level: the candidate reads an accessible position
                cand = after_taps[name] & ~keep[name]  # at a coaccessible one
            else:
                cand = pair_selector(b, after.accessible[b.src], after.coaccessible[b.dst]) & ~keep[name]
            idx = np.flatnonzero(cand)
            chunks.append(score[name].ravel()[idx])
            owners.append(np.full(idx.size, k))
            flats.append(idx)
        allscores = np.concatenate(chunks)
        if not allscores.size:
            break
        owner, flat = np.concatenate(owners), np.concatenate(flats)
        top = np.argsort(-allscores, kind="stable")[:budget]
        budget -= top.size
        for k, (name, (mod, param, _, _, _)) in enumerate(sel.items()):
            chosen = flat[top[owner[top] == k]]
            if not chosen.size:
                continue
            keep[name].ravel()[chosen] = True
            if getattr(mod, f"{param}_mask", None) is None:
                # plain weights: an added weight takes its score as value (the dense
                # weights, when that is what the scores are), as the checkpoint repair does
                w = getattr(mod, param)
                with torch.no_grad():
                    w.view(-1)[torch.from_numpy(chosen)] = torch.from_numpy(
                        score[name].ravel()[chosen]).to(w.dtype)
            else:
                _set_kept(mod, param, keep[name])
    return new


def _score(name, mod, param, shape, scores) -> np.ndarray:
    if scores is not None and name in scores:
        s = scores[name]
        s = s.detach().cpu().double().numpy() if isinstance(s, torch.Tensor) else np.asarray(s, np.float64)
        if s.shape != tuple(shape):
            raise NetgraphError(f"score tensor {name!r} has shape {s.shape} but the weight has shape "
                                f"{tuple(shape)}; scores must match their weights")
        if not np.isfinite(s).all():
            raise NetgraphError(f"score tensor {name!r} has NaN or infinite entries")
        return s
    orig = getattr(mod, f"{param}_orig", None)
    if isinstance(orig, torch.Tensor):
        return orig.detach().cpu().double().abs().numpy()
    raise NetgraphError(
        f"reconnect needs scores for {name!r}: the model is not in torch's prune format "
        "(no weight_orig with the dense weights); pass a score tensor per weight (--scores FILE)"
    )


# --------------------------------------------------------------------------------------
# compact
# --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class CompactResult:
    """A compacted model, its state_dict, and what it saved.

    ``widths`` maps each Linear/Conv/BatchNorm module to (units before, units after).
    ``seconds_*`` are median CPU inference times on the example input (the models are timed
    alternately, so both see the same machine load); the baseline is the dense model with
    the masks applied (what a dense runtime executes).
    """

    model: nn.Module = field(repr=False)
    state_dict: dict = field(repr=False)
    params_before: int
    params_after: int
    seconds_before: float
    seconds_after: float
    speedup: float
    widths: Mapping[str, tuple[int, int]]

    def to_dict(self) -> dict:
        return {"params_before": self.params_before, "params_after": self.params_after,
                "seconds_before": self.seconds_before, "seconds_after": self.seconds_after,
                "speedup": self.speedup, "widths": {k: list(v) for k, v in self.widths.items()}}


def strip_pruning(model: nn.Module) -> nn.Module:
    """A copy with torch's prune reparametrisation made permanent (``weight = orig * mask``)."""
    new = _copy(model)
    for mod in new.modules():
        for hook in list(mod._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(mod, hook._tensor_name)
    return new


def _keep_units(traced: TracedModel, reach: Reachability) -> dict[str, np.ndarray]:
    graph, plan = traced.graph, traced._plan
    names = list(graph.order)
    offset, total = {}, 0
    for g in names:
        offset[g] = total
        total += graph.groups[g].width
    rows, cols = [], []
    for src, dst, r, c in plan.ties:
        rows.append(offset[src] + np.asarray(r, np.int64))
        cols.append(offset[dst] + np.asarray(c, np.int64))
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    adj = sp.coo_matrix((np.ones(r.size, bool), (r, c)), shape=(total, total))
    _, label = connected_components(adj, directed=False)
    bad = np.zeros(total, bool)  # a unit that must stay
    states = unit_states(graph, reach)  # the audit's unit states: effective units stay; dead and
    for g in names:                     # unused ones go, unless they carry a constant to an output
        s = slice(offset[g], offset[g] + graph.groups[g].width)
        stays = (states[g] == EFFECTIVE) | (reach.constant[g] & reach.coaccessible[g])
        bad[s] = stays | (g in plan.pins)
    while True:
        stays = np.bincount(label, weights=bad, minlength=label.max() + 1) > 0
        keep = {g: stays[label[offset[g]:offset[g] + graph.groups[g].width]] for g in names}
        empty = [g for g in names if not keep[g].any()]
        if not empty:
            return keep
        for g in empty:  # a layer needs at least one unit: keep the first
            bad[offset[g]] = True


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _median_seconds(a: nn.Module, b: nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median forward time of two models, timed alternately so that both see the same load."""
    ta, tb = [], []
    with torch.inference_mode():
        for _ in range(3):
            a(x)
            b(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            a(x)
            t1 = time.perf_counter()
            b(x)
            t2 = time.perf_counter()
            ta.append(t1 - t0)
            tb.append(t2 - t1)
    return statistics.median(ta), statistics.median(tb)


def compact_model(model: nn.Module, traced: TracedModel, *, repeats: int = 20,
                  example_input=None) -> CompactResult:
    """Physically remove dead units: a smaller dense model with the same outputs.

    Parameters
    ----------
    repeats : int
        Timed forward passes of each model (median reported); 0 skips timing.
    example_input : Tensor or shape, optional
        Timing input; default ``traced.input_shape``.

    Returns
    -------
    CompactResult
    """
    pruned = strip_pruning(prune_model(model, traced))
    small = _copy(pruned).eval()
    keep = _keep_units(traced, traced.tap_reachability())  # the reachability the audit reports
    widths: dict[str, tuple[int, int]] = {}
    with torch.no_grad():
        for layer in traced._plan.layers:
            mod = small.get_submodule(layer.module)
            k_in = torch.from_numpy(np.flatnonzero(keep[layer.in_group]))
            k_out = torch.from_numpy(np.flatnonzero(keep[layer.out_group]))
            if layer.kind == "bn":
                widths[layer.module] = (mod.num_features, len(k_in))
                for attr in ("weight", "bias"):
                    p = getattr(mod, attr)
                    if p is not None:
                        setattr(mod, attr, nn.Parameter(p[k_in].clone(), requires_grad=p.requires_grad))
                for attr in ("running_mean", "running_var"):
                    t = getattr(mod, attr)
                    if t is not None:
                        setattr(mod, attr, t[k_in].clone())
                mod.num_features = len(k_in)
                continue
            w = mod.weight
            if layer.kind == "conv" and mod.groups > 1:
                if mod.groups != mod.in_channels:  # grouped (pinned): unchanged
                    widths[layer.module] = (w.shape[0], w.shape[0])
                    continue
                new_w = w[k_out]
                mod.groups = len(k_in)
            else:
                new_w = w[k_out][:, k_in]
            widths[layer.module] = (w.shape[0], len(k_out))
            mod.weight = nn.Parameter(new_w.clone(), requires_grad=w.requires_grad)
            if mod.bias is not None:
                mod.bias = nn.Parameter(mod.bias[k_out].clone(), requires_grad=mod.bias.requires_grad)
            if layer.kind == "linear":
                mod.in_features, mod.out_features = len(k_in), len(k_out)
            else:
                mod.in_channels, mod.out_channels = len(k_in), len(k_out)
    x = example_tensor(model, example_input if example_input is not None else traced.input_shape)
    try:
        with torch.no_grad():
            small(x)
    except Exception as exc:
        raise NetgraphError(
            f"the compacted model fails on an input of shape {tuple(x.shape)} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); the model's code probably hard-codes a width"
        ) from None
    before, after = _median_seconds(pruned.eval(), small, x, repeats) if repeats else (float("nan"),) * 2
    return CompactResult(small, small.state_dict(), _count(model), _count(small), before, after,
                         before / after if repeats and after > 0 else float("nan"), widths)


# --------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------

def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


def verify(original: nn.Module, repaired: nn.Module, input_shape, *, trials: int = 3, seed: int = 0) -> float:
    """Largest relative output difference of two models on seeded random float64 inputs.

    Relative to the largest absolute output of ``original`` (per output tensor).

    >>> net = nn.Linear(3, 2)
    >>> verify(net, net, (4, 3))
    0.0
    """
    a = _as_double(original)
    b = _as_double(repaired)
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    shape = tuple(int(s) for s in input_shape)
    with torch.no_grad():
        for _ in range(trials):
            x = torch.randn(shape, generator=gen, dtype=torch.float64)
            ya, yb = _tensors(a(x)), _tensors(b(x))
            if len(ya) != len(yb):
                return float("inf")
            for u, v in zip(ya, yb):
                if u.shape != v.shape:
                    return float("inf")
                scale = float(u.abs().max()) if u.numel() else 0.0
                diff = float((u - v).abs().max()) if u.numel() else 0.0
                if diff == 0.0:
                    continue
                if not np.isfinite(diff):
                    return float("inf")
                worst = max(worst, diff / scale if scale > 0 else float("inf"))
    return worst
