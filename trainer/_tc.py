"""Accessibility (φ_r) and coaccessibility (φ_l) networks and the TC loss (tc-pruning, Eq. 4).

Contract
--------
* The propagation walks the blocks of the :class:`netgraph.LayeredGraph` that the model
  declares (``model.graph()``): weighted blocks are matched to the model's prunable
  parameters **by name**; structural blocks (identity, expand, sparse, dense) are fixed 0/1
  matrices applied with index arithmetic.  There is no second copy of the topology here.
* Forward values are exact: with crisp 0/1 masks ``M``,
  ``φ_r[g] = h(Σ_{blocks b into g} C_bᵀ φ_r[src])`` from ``φ_r[source] = 1`` and
  ``φ_l[g] = h(Σ_{blocks b out of g} C_b φ_l[dst])`` from ``φ_l[sink] = 1``, ``h`` the
  Heaviside step (``h(0) = 0``).  These are netgraph's accessible / coaccessible vectors.
* Backward (straight-through): ``h`` back-propagates the gradient of ``sigmoid`` (evaluated
  at the pre-activation minus ½), and each weighted block's crisp ``M`` back-propagates
  ψ's gradient (``M_st = M + ψ − stop_grad(ψ)``).
* For a weighted block with PyTorch weight layout ``(out, in/groups, *kernel)`` the factor
  ``Φ = φ_l[dst] φ_r[src]ᵀ`` is broadcast to the weight's shape, so
  ``ŵ ⊙ ψ ⊙ Φ`` is zero exactly on the weights netgraph calls dead (or pruned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from netgraph import LayeredGraph
from netgraph.errors import InvalidGraph

__all__ = ["heaviside_st", "straight_through", "Plan", "plan_of", "phi", "tc_factors", "tc_terms"]


def heaviside_st(x: torch.Tensor) -> torch.Tensor:
    """Heaviside ``1[x > 0]`` forward; ``d sigmoid(x − ½)/dx`` backward.

    The pre-activations are (weighted) counts of kept paths, so ``x > 0`` is the same test
    as ``x ≥ 1`` for crisp inputs; centring the surrogate at ½ puts its slope where the
    step is.
    """
    soft = torch.sigmoid(x - 0.5)
    hard = (x > 0).to(x.dtype)
    return hard + (soft - soft.detach())


def straight_through(crisp: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """``crisp`` forward, ``soft``'s gradient backward."""
    return crisp.to(soft.dtype) + (soft - soft.detach())


@dataclass(frozen=True)
class _Step:
    kind: str  # "weighted" | "pairs" | "dense"
    name: str
    src: str
    dst: str
    rows: torch.Tensor | None = None  # structural pairs
    cols: torch.Tensor | None = None
    weight_shape: tuple[int, ...] = ()
    conv_groups: int = 1


@dataclass(frozen=True)
class Plan:
    """The block walk of one graph, with index tensors on a device (cache it: structure only)."""

    widths: Mapping[str, int]
    order: tuple[str, ...]
    sources: tuple[str, ...]
    sinks: tuple[str, ...]
    steps: tuple[_Step, ...]

    @property
    def weight_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if s.kind == "weighted")


def plan_of(graph: LayeredGraph, device: torch.device | str = "cpu") -> Plan:
    """Turn a graph's blocks into a :class:`Plan`; masks are *not* read (only the structure)."""
    steps = []
    for b in graph.blocks:
        if b.weighted:
            steps.append(_Step("weighted", b.name, b.src, b.dst, weight_shape=b.weight_shape,
                               conv_groups=b.conv_groups))
        elif b.kind == "dense":
            steps.append(_Step("dense", b.name, b.src, b.dst))
        else:
            steps.append(_Step("pairs", b.name, b.src, b.dst,
                               torch.as_tensor(b.rows, device=device),
                               torch.as_tensor(b.cols, device=device)))
    widths = {g: grp.width for g, grp in graph.groups.items()}
    return Plan(widths, tuple(graph.order), tuple(graph.sources), tuple(graph.sinks), tuple(steps))


def _pair_matrix(mask: torch.Tensor, step: _Step) -> torch.Tensor:
    """Collapse kernel taps: ``(out, in/groups, *k) -> (out, in/groups)`` (sum of kept taps)."""
    m = mask.reshape(mask.shape[0], mask.shape[1], -1).sum(dim=2) if mask.dim() > 2 else mask
    return m


def _weighted_forward(m: torch.Tensor, step: _Step, src: torch.Tensor) -> torch.Tensor:
    g = step.conv_groups
    out_ch, in_pg = m.shape
    if g == 1:
        return m @ src  # (out, in) @ (in,) -> (out,)
    return torch.bmm(m.reshape(g, out_ch // g, in_pg), src.reshape(g, in_pg, 1)).reshape(out_ch)


def _weighted_backward(m: torch.Tensor, step: _Step, dst: torch.Tensor) -> torch.Tensor:
    g = step.conv_groups
    out_ch, in_pg = m.shape
    if g == 1:
        return m.t() @ dst
    return torch.bmm(m.reshape(g, out_ch // g, in_pg).transpose(1, 2),
                     dst.reshape(g, out_ch // g, 1)).reshape(g * in_pg)


def phi(plan: Plan, masks: Mapping[str, torch.Tensor], *, dtype: torch.dtype | None = None,
        device: torch.device | str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """φ_r (accessibility) and φ_l (coaccessibility) of every group.

    Parameters
    ----------
    plan : Plan
        From :func:`plan_of` on the model's graph.
    masks : mapping name -> Tensor of the weight's shape
        Crisp masks, optionally straight-through (:func:`straight_through`) so that
        gradients flow to ψ.

    Returns
    -------
    phi_r, phi_l : dict group -> Tensor (width,)
        0/1 in the forward pass.
    """
    missing = [n for n in plan.weight_names if n not in masks]
    if missing:
        raise InvalidGraph(f"the graph has weighted blocks {missing[:3]} but no mask was given for them; "
                           "the model's graph() and its parameters must use the same names")
    some = next(iter(masks.values()), None)
    if some is not None:
        dtype, device = dtype or some.dtype, device or some.device
    else:  # a graph without weighted blocks
        dtype, device = dtype or torch.float64, device or "cpu"
    pairs = {n: _pair_matrix(masks[n], s) for s in plan.steps if s.kind == "weighted" for n in [s.name]}

    def run(forward: bool) -> dict[str, torch.Tensor]:
        ends = plan.sources if forward else plan.sinks
        pre: dict[str, torch.Tensor] = {}
        vec: dict[str, torch.Tensor] = {g: torch.ones(plan.widths[g], dtype=dtype, device=device) for g in ends}
        steps = plan.steps if forward else plan.steps[::-1]
        # Steps are in topological order of their source group (netgraph's block order), so
        # every block into g (resp. out of g) is seen before g is read.
        for s in steps:
            a, b = (s.src, s.dst) if forward else (s.dst, s.src)
            x = vec.get(a)
            if x is None:
                x = _close(pre, a, plan, dtype, device, vec, ends)
            if s.kind == "weighted":
                contrib = (_weighted_forward if forward else _weighted_backward)(pairs[s.name], s, x)
            elif s.kind == "dense":
                contrib = x.sum().expand(plan.widths[b])
            else:
                src_idx, dst_idx = (s.rows, s.cols) if forward else (s.cols, s.rows)
                contrib = torch.zeros(plan.widths[b], dtype=dtype, device=device).index_add(0, dst_idx, x[src_idx])
            pre[b] = pre[b] + contrib if b in pre else contrib
        for g in plan.order:
            if g not in vec:
                _close(pre, g, plan, dtype, device, vec, ends)
        return vec

    return run(True), run(False)


def _close(pre, g, plan, dtype, device, vec, ends):
    """Close group ``g``: apply h to its summed pre-activation (zeros when nothing feeds it)."""
    if g in ends:
        return vec[g]
    p = pre.get(g)
    v = heaviside_st(p) if p is not None else torch.zeros(plan.widths[g], dtype=dtype, device=device)
    vec[g] = v
    return v


def tc_factors(plan: Plan, phi_r: Mapping[str, torch.Tensor], phi_l: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``Φ_b = φ_l[dst] φ_r[src]ᵀ`` per weighted block, in the weight's own shape."""
    out = {}
    for s in plan.steps:
        if s.kind != "weighted":
            continue
        out_ch, in_pg = s.weight_shape[0], s.weight_shape[1]
        r = phi_r[s.src]
        if s.conv_groups == 1:
            src = r.reshape(1, in_pg).expand(out_ch, in_pg)
        else:
            g = s.conv_groups
            src = r.reshape(g, 1, in_pg).expand(g, out_ch // g, in_pg).reshape(out_ch, in_pg)
        f = phi_l[s.dst].reshape(out_ch, 1) * src
        extra = len(s.weight_shape) - 2
        out[s.name] = f.reshape(f.shape + (1,) * extra).expand(s.weight_shape)
    return out


def tc_terms(psi: Mapping[str, torch.Tensor], factors: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ φ_rᵀ ψ φ_l, Σ [1ᵀψ1 − φ_rᵀ ψ φ_l])`` over the weighted blocks: the effective mass and the η term."""
    eff = sum((psi[n] * factors[n]).sum() for n in factors)
    total = sum(psi[n].sum() for n in factors)
    return eff, total - eff
