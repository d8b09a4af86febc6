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

__all__ = ["heaviside_st", "straight_through", "Plan", "plan_of", "phi", "tc_factors", "tc_terms", "phi_st", "tc_step",
           "unit_classes"]


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
    src_cls: torch.Tensor | None = None  # unit -> class maps of a contracted plan (:func:`unit_classes`)
    dst_cls: torch.Tensor | None = None


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


# --------------------------------------------------------------------------------------
# The TC step in its rank-1 (per-unit) form
# --------------------------------------------------------------------------------------

def _kept_counts(crisp: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(out, in/groups)`` kept-tap counts of a crisp mask (no gradient)."""
    m = crisp.reshape(crisp.shape[0], crisp.shape[1], -1).sum(dim=2) if crisp.dim() > 2 else crisp
    return m.to(dtype)


def _src_of(v: torch.Tensor, out_ch: int, in_pg: int, groups: int) -> torch.Tensor:
    """A source-unit vector ``(groups·in_pg,)`` laid out as ``(out, in_pg)`` (the unit each weight reads)."""
    if groups == 1:
        return v.reshape(1, in_pg).expand(out_ch, in_pg)
    return v.reshape(groups, 1, in_pg).expand(groups, out_ch // groups, in_pg).reshape(out_ch, in_pg)


def _src_sum(m: torch.Tensor, groups: int) -> torch.Tensor:
    """Column sums of ``(out, in_pg)`` per group: the transpose of :func:`_src_of`."""
    out_ch, in_pg = m.shape
    if groups == 1:
        return m.sum(dim=0)
    return m.reshape(groups, out_ch // groups, in_pg).sum(dim=1).reshape(groups * in_pg)


class _KeptMatVec(torch.autograd.Function):
    """``y = K x`` (forward) or ``y = Kᵀ x`` (backward propagation) with ``K`` the crisp kept-tap
    counts; the gradient reaching the soft mask ψ is the rank-1 ``g xᵀ`` (straight-through:
    ``K`` forward, ψ's gradient backward), broadcast over kernel taps — never a full-shape
    straight-through tensor."""

    @staticmethod
    def forward(ctx, psi, k, x, groups: int, transpose: bool):
        ctx.save_for_backward(k, x)
        ctx.groups, ctx.transpose, ctx.psi_shape = groups, transpose, psi.shape
        out_ch, in_pg = k.shape
        if not transpose:
            return (k * _src_of(x, out_ch, in_pg, groups)).sum(dim=1) if groups > 1 else k @ x
        return _src_sum(k * x[:, None], groups) if groups > 1 else k.t() @ x

    @staticmethod
    def backward(ctx, g):
        k, x = ctx.saved_tensors
        out_ch, in_pg = k.shape
        groups = ctx.groups
        grad_psi = grad_x = None
        if not ctx.transpose:  # y[o] = Σ_i K[o,i] x[src(o,i)]
            if ctx.needs_input_grad[0]:
                grad_psi = g[:, None] * _src_of(x, out_ch, in_pg, groups)
            if ctx.needs_input_grad[2]:
                grad_x = _src_sum(k * g[:, None], groups) if groups > 1 else k.t() @ g
        else:  # y[src(o,i)] += K[o,i] x[o]
            if ctx.needs_input_grad[0]:
                grad_psi = x[:, None] * _src_of(g, out_ch, in_pg, groups)
            if ctx.needs_input_grad[2]:
                grad_x = (k * _src_of(g, out_ch, in_pg, groups)).sum(dim=1) if groups > 1 else k @ g
        if grad_psi is not None and len(ctx.psi_shape) > 2:
            grad_psi = grad_psi.reshape(grad_psi.shape + (1,) * (len(ctx.psi_shape) - 2)).expand(ctx.psi_shape)
        return grad_psi, None, grad_x, None, None


class _RankOneMask(torch.autograd.Function):
    """``ψ ⊙ (φ_l φ_rᵀ)`` broadcast over taps; the backward reduces ``g ⊙ ψ`` to the two unit
    vectors with two matrix–vector products instead of going through a full-shape ``Φ``."""

    @staticmethod
    def forward(ctx, psi, left, right, groups: int):
        out_ch, in_pg = psi.shape[0], psi.shape[1]
        f = left[:, None] * _src_of(right, out_ch, in_pg, groups)
        if psi.dim() > 2:
            f = f.reshape(f.shape + (1,) * (psi.dim() - 2))
        ctx.save_for_backward(psi, f, left, right)
        ctx.groups = groups
        return psi * f

    @staticmethod
    def backward(ctx, g):
        psi, f, left, right = ctx.saved_tensors
        groups = ctx.groups
        grad_psi = g * f if ctx.needs_input_grad[0] else None
        grad_l = grad_r = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gp = g * psi
            if gp.dim() > 2:
                gp = gp.reshape(gp.shape[0], gp.shape[1], -1).sum(dim=2)
            out_ch, in_pg = gp.shape
            if groups == 1:
                grad_l = gp @ right if ctx.needs_input_grad[1] else None
                grad_r = gp.t() @ left if ctx.needs_input_grad[2] else None
            else:
                grad_l = (gp * _src_of(right, out_ch, in_pg, groups)).sum(dim=1) if ctx.needs_input_grad[1] else None
                grad_r = _src_sum(gp * left[:, None], groups) if ctx.needs_input_grad[2] else None
        return grad_psi, grad_l, grad_r, None


def phi_st(plan: Plan, psi: Mapping[str, torch.Tensor], crisp: Mapping[str, torch.Tensor]
           ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """φ_r, φ_l for crisp masks with ψ's straight-through gradient, in rank-1 form.

    Forward values equal :func:`phi` on ``crisp``; gradients equal :func:`phi` on
    ``straight_through(crisp, psi)`` (a test checks both in float64).
    """
    missing = [n for n in plan.weight_names if n not in psi or n not in crisp]
    if missing:
        raise InvalidGraph(f"the graph has weighted blocks {missing[:3]} but no mask was given for them; "
                           "the model's graph() and its parameters must use the same names")
    some = next(iter(psi.values()), None)
    dtype = some.dtype if some is not None else torch.float64
    device = some.device if some is not None else "cpu"
    counts = {s.name: _kept_counts(crisp[s.name], dtype) for s in plan.steps if s.kind == "weighted"}

    def run(forward: bool) -> dict[str, torch.Tensor]:
        ends = plan.sources if forward else plan.sinks
        pre: dict[str, torch.Tensor] = {}
        vec = {g: torch.ones(plan.widths[g], dtype=dtype, device=device) for g in ends}
        for s in (plan.steps if forward else plan.steps[::-1]):
            a, b = (s.src, s.dst) if forward else (s.dst, s.src)
            x = vec.get(a)
            if x is None:
                x = _close(pre, a, plan, dtype, device, vec, ends)
            if s.kind == "weighted":
                contrib = _KeptMatVec.apply(psi[s.name], counts[s.name], x, s.conv_groups, not forward)
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


def tc_step(plan: Plan, psi: Mapping[str, torch.Tensor], crisp: Mapping[str, torch.Tensor] | None = None
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """One MP+TC step's masks and terms: ``(ψ ⊙ Φ per weight, Σ ψ⊙Φ, Σ ψ(1 − Φ))``.

    The same values and gradients as ``factors = tc_factors(plan, *phi(plan, ST(crisp, ψ)))``,
    ``ψ ⊙ factors`` and :func:`tc_terms`, but ``Φ = φ_l φ_rᵀ`` is formed per unit pair
    ``(out, in/groups)`` and broadcast over kernel taps, the straight-through masks are
    never built, and ``ψ ⊙ Φ`` is computed once.  ``crisp`` defaults to ``ψ ≥ ½``.
    """
    if crisp is None:
        crisp = {n: p.detach() >= 0.5 for n, p in psi.items()}
    phi_r, phi_l = phi_st(plan, psi, crisp)
    masks: dict[str, torch.Tensor] = {}
    eff = total = None
    for s in plan.steps:
        if s.kind != "weighted":
            continue
        p = psi[s.name]
        m = _RankOneMask.apply(p, phi_l[s.dst], phi_r[s.src], s.conv_groups)
        masks[s.name] = m
        e, t = m.sum(), p.sum()
        eff = e if eff is None else eff + e
        total = t if total is None else total + t
    if eff is None:
        eff = total = torch.zeros(())
    return masks, eff, total - eff


def unit_classes(plan: Plan) -> Plan:
    """The plan with units that must share one structured gate merged into *classes*.

    A structural block that is a partial bijection (every source unit and every destination
    unit appears at most once: the identity into a residual add, a slice of a concatenation,
    an elementwise op) ties its two units; the tied units form a class (union–find), and the
    groups tied together form a *family*, one group of the result whose units are the classes.
    Weighted steps keep their names and point to families, with ``src_cls`` / ``dst_cls``
    mapping their units to classes; other structural blocks (a flatten expansion, a dense
    block) join families as before.  A plan without tying blocks comes back with one family
    per group and identity class maps (``src_cls = dst_cls = None``).
    """
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(u):
        while parent.get(u, u) != u:
            parent[u] = parent.get(parent[u], parent[u])
            u = parent[u]
        return u

    tying = set()
    for i, s in enumerate(plan.steps):
        if s.kind != "pairs":
            continue
        r, c = s.rows.cpu().numpy(), s.cols.cpu().numpy()
        if len(np.unique(r)) == r.size and len(np.unique(c)) == c.size:
            tying.add(i)
            for a, b in zip(r.tolist(), c.tolist()):
                ra, rb = find((s.src, a)), find((s.dst, b))
                if ra != rb:
                    parent[rb] = ra
    if not tying:
        return plan
    # families: groups connected by tying blocks
    fam_of = {g: g for g in plan.order}

    def ffind(g):
        while fam_of[g] != g:
            fam_of[g] = fam_of[fam_of[g]]
            g = fam_of[g]
        return g

    for i in tying:
        s = plan.steps[i]
        a, b = ffind(s.src), ffind(s.dst)
        if a != b:
            if plan.order.index(a) < plan.order.index(b):
                fam_of[b] = a
            else:
                fam_of[a] = b
    fam = {g: ffind(g) for g in plan.order}
    cls_index: dict[str, dict] = {}
    cls_map: dict[str, torch.Tensor] = {}
    for g in plan.order:  # classes numbered in order of first appearance
        idx = cls_index.setdefault(fam[g], {})
        ids = []
        for u in range(plan.widths[g]):
            root = find((g, u))
            ids.append(idx.setdefault(root, len(idx)))
        some = next((s.rows for s in plan.steps if s.kind == "pairs"), None)
        cls_map[g] = torch.tensor(ids, dtype=torch.int64, device=some.device if some is not None else "cpu")
    widths = {f: len(cls_index[f]) for f in dict.fromkeys(fam.values())}
    steps = []
    for i, s in enumerate(plan.steps):
        if i in tying:
            continue
        if s.kind == "weighted":
            steps.append(_Step("weighted", s.name, fam[s.src], fam[s.dst], weight_shape=s.weight_shape,
                               conv_groups=s.conv_groups, src_cls=cls_map[s.src], dst_cls=cls_map[s.dst]))
        elif s.kind == "dense":
            steps.append(_Step("dense", s.name, fam[s.src], fam[s.dst]))
        else:
            steps.append(_Step("pairs", s.name, fam[s.src], fam[s.dst], cls_map[s.src][s.rows], cls_map[s.dst][s.cols]))
    order = tuple(dict.fromkeys(fam[g] for g in plan.order))
    return Plan(widths, order, tuple(dict.fromkeys(fam[g] for g in plan.sources)),
                tuple(dict.fromkeys(fam[g] for g in plan.sinks)), tuple(steps))
