"""Mask parametrizations: band-stop (relaxed MP), coarse-to-fine (CTF), and PMP's prior.

Contract
--------
Every prunable weight is stored as a *latent* tensor ``ŵ`` in standardized units (the
model multiplies by a fixed per-layer scale ``g = gain/√fan_in`` in its forward pass), so
one global threshold treats layers of different fan-in alike.  A parametrization maps the
latents to soft masks ``ψ ∈ [0, 1]`` of the same shapes:

* **band-stop** (``fine``, ``mp``, ``mp-tc``): ``ψ_f(ŵ) = 2·sigmoid(s·ŵ²) − 1`` entrywise;
  ``s`` (crispness) is annealed upward.  ``ψ_f(ŵ) ≥ ½ ⇔ s·ŵ² ≥ ln 3``: the crisp mask.
* **coarse-to-fine** (``ctf``): ``ψ = ψ_c(ψ_f(ŵ)) ⊙ ψ_f(ŵ)`` (coarse-to-fine Eq. 3).
  ``ψ_c`` is a product of *gates*; a gate is the band-stop of a group's kept fraction
  ``f`` (mean of the current mask over the group): ``γ(f) = f²/(f² + θ²)`` with
  ``θ = ρ·d``, ``d = 1 − rate`` the target density and ``ρ`` (``gate_ratio``, ½ by
  default): a group kept at less than ρ times the average density is switched off as a
  whole.  Groups (coarse-to-fine Eq. 2 writes them as adjacency matrices P_r, P_c; here they
  are reshapes and means, never (d·d)² matrices), in priority order, each computed on the
  mask that the previous gates left:

  1. *block*: a head / channel (declared by the model per weight, :class:`BlockLayout`),
  2. *column* (paper orientation ``(in, out)``): all weights into one output unit,
  3. *row*: all weights out of one input unit.

* **coarse** (structured: group gates only, :func:`unit_gate_masks`): one gate per *unit*
  of every non-sink group of the model's declared netgraph topology, shared by the two
  layers that meet there — layer ℓ's output (column) gate *is* layer ℓ+1's input (row)
  gate, and a conv channel's gate is fc's channel *block* gate through the flatten
  expansion (block priority: a flatten unit's gate is multiplied by its channel's).  A
  weight's mask is the product of its two units' gates, so a crisp structured mask is a
  full rectangle between kept units of adjacent groups and every group keeps its strongest
  unit: **connected by construction** (all kept weights effective).  A unit's gate is
  ``γ(r) = r²/(r² + θ_g²)`` of its incident ψ_f mass relative to its group's strongest unit;
  ``θ_g`` is calibrated (:func:`unit_gate_thresholds`) so that group ``g`` keeps the fraction
  ``t·Q_g`` of its units, ``Q`` from :func:`unit_group_fractions` (every layer's kept rectangle
  ``Q_src·Q_dst`` follows its ERK density, the allocation the other methods start from) and
  ``t`` the largest scale for which the initial crisp mask keeps at most ``c`` weights.  Training
  uses the gates straight-through (crisp forward, soft gradient), the budget on that crisp
  count, and the cross-entropy on the crisp structure *held fixed* in its backward pass:
  the weights learn, and a unit stays open because its incident latents grow (the
  magnitude prior), not through the gates' straight-through gradient.  The crisp finish
  re-calibrates ``θ_g`` on the final latents and fills the budget to exactly ``c``
  effective weights with MP+TC's routine.

  On a traced graph the plan is first contracted by :func:`trainer._tc.unit_classes`: units
  joined by a one-to-one structural block (a residual add's inputs and output, a slice of a
  concatenation, BN's identity) form one *class* with one gate, so the layers that meet at a
  unit share its gate there too; conv weights contribute their taps' mass and conv groups map
  each weight to its input unit.  The designs tried before this one, with their measured
  accuracies, are in ``docs/trainer-experiments.md``.
* **PMP** (probabilistic magnitude pruning, our reading of ``pmp-summary.md``, of which
  only a summary exists): a divergence term aligns the empirical distribution of ``|ŵ|``
  (all prunable latents together) with a prior, and the prior's quantile at the target rate
  is the pruning threshold, so any fixed rate is implemented by the alignment itself (no
  budget term).  The divergence is the 1-D Wasserstein-1 distance, computed by sorting:
  ``W1 = mean_i |x_(i) − Q((i + ½)/N)|``.  The prior is the law of the latents'
  initialisation (:func:`empirical_prior_quantiles`: the sorted initial ``|ŵ|``, ERK
  allocation included) whose lower ``rate`` mass is squeezed toward zero by a factor ``ε``
  (annealed from 1 to ``eps_end``: the crispness schedule)::

      Q(u) = ε · Qinit(u)        u <  rate      (the spike: pruned weights)
      Q(u) = Qinit(u)            u >= rate      (the slab: kept weights)

  The threshold ``τ = Qinit(rate)`` is the ``c``-th largest initial ``|ŵ|`` (the same
  start-at-the-budget rule as the band-stop methods); the mask is the band-stop with
  ``ψ(θ) = ½`` at ``θ = τ(1 + ε)/2``, between the spike and the slab.  At ``ε = 1`` the
  divergence is exactly 0: it only implements the rate.  The half-normal prior that came first, and the measurements that replaced it, are in
  ``docs/trainer-experiments.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from netgraph.errors import NetgraphError

__all__ = [
    "LN3",
    "band_stop",
    "crispness_for_threshold",
    "BlockLayout",
    "group_gates",
    "ctf_mask",
    "coarse_mask",
    "gate_threshold",
    "calibrate_gate_threshold",
    "budget_loss",
    "halfnormal_quantile",
    "pmp_prior_quantiles",
    "wasserstein1_sorted",
    "pmp_threshold",
    "unit_gate_masks",
    "unit_gate_thresholds",
    "unit_group_fractions",
    "empirical_prior_quantiles",
]

LN3 = math.log(3.0)


def band_stop(w: torch.Tensor, s: float | torch.Tensor) -> torch.Tensor:
    """ψ_f(ŵ) = 2·sigmoid(s·ŵ²) − 1, entrywise; symmetric, in [0, 1), → 1 for large |ŵ|.

    >>> [round(v, 6) for v in band_stop(torch.tensor([0.0, 1.0]), LN3).tolist()]  # ψ(±sqrt(ln3/s)) = 1/2
    [0.0, 0.5]
    """
    return 2.0 * torch.sigmoid(s * w * w) - 1.0


def crispness_for_threshold(tau: float) -> float:
    """The ``s`` for which ``ψ_f(τ) = ½`` (the crisp threshold is ``|ŵ| ≥ τ``)."""
    if not tau > 0:
        raise NetgraphError(f"a band-stop threshold must be positive, got tau={tau!r}")
    return LN3 / (tau * tau)


@dataclass(frozen=True)
class BlockLayout:
    """How a 2-D weight ``(out, in)`` splits into blocks (heads / channels) for CTF.

    ``whole``: the whole tensor is one block (a head's weight).  Otherwise the input
    dimension is split into ``in_blocks`` blocks: channels first (unit ``b·k + j`` is in
    block ``b``) or channels last (unit ``j·in_blocks + b`` is in block ``b``, the node-major
    flatten of a GCN).  ``in_blocks = 0`` and not ``whole``: no block gate.
    """

    whole: bool = False
    in_blocks: int = 0
    channels_last: bool = False
    columns: bool = True  # False for a classifier: its output units (the classes) are never removed whole

    def view(self, m: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """``m`` reshaped so that block means are a reduction; returns the view and its reduced dims."""
        out, inp = m.shape
        if self.whole:
            return m, (0, 1)
        if self.channels_last:
            return m.reshape(out, inp // self.in_blocks, self.in_blocks), (0, 1)
        return m.reshape(out, self.in_blocks, inp // self.in_blocks), (0, 2)

    @property
    def active(self) -> bool:
        return self.whole or self.in_blocks > 0


def _gate(frac: torch.Tensor, theta: float) -> torch.Tensor:
    """γ(f) = f² / (f² + θ²): 0 at f = 0, ½ at θ, → 1 above.  A band-stop sigmoid of f
    saturates (zero gradient) while ψ_f is still soft and every group's mass is far above θ,
    and then the budget cannot close any group; this rational gate keeps a gradient."""
    f2 = frac * frac
    return f2 / (f2 + theta * theta)


def group_gates(fine: torch.Tensor, layout: BlockLayout, theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block, column and row gates of one ``(out, in)`` mask, broadcastable to its shape.

    The cascade implements the priority block > column > row: each gate is computed on the
    mask the previous gates left (``fine ⊙ block``, then ``⊙ column``).
    """
    if fine.dim() != 2:
        raise NetgraphError(f"CTF gates need a 2-D (out, in) weight, got shape {tuple(fine.shape)}")
    one = torch.ones((), dtype=fine.dtype, device=fine.device)
    if layout.active:
        v, dims = layout.view(fine)
        block = _gate(v.mean(dim=dims, keepdim=True), theta)  # (1, [1,] blocks) or (1, 1)
        block = (block * torch.ones_like(v)).reshape(fine.shape) if not layout.whole else block
    else:
        block = one
    m1 = fine * block
    col = _gate(m1.mean(dim=1, keepdim=True), theta) if layout.columns else one  # (out, 1): into an output unit
    m2 = m1 * col
    row = _gate(m2.mean(dim=0, keepdim=True), theta)  # (1, in): all weights out of an input unit
    return block, col, row


def ctf_mask(fine: torch.Tensor, layout: BlockLayout, theta: float) -> torch.Tensor:
    """ψ = ψ_c(ψ_f) ⊙ ψ_f (coarse-to-fine Eq. 3)."""
    block, col, row = group_gates(fine, layout, theta)
    return fine * block * col * row


def coarse_mask(fine: torch.Tensor, layout: BlockLayout, theta: float) -> torch.Tensor:
    """ψ = ψ_c(ψ_f): gates only (structured pruning)."""
    block, col, row = group_gates(fine, layout, theta)
    return block * col * row * torch.ones_like(fine)


def gate_threshold(rate: float, ratio: float) -> float:
    """θ = ratio·(1 − rate): the group mass at which a gate is ½."""
    return ratio * (1.0 - rate)


def calibrate_gate_threshold(kept, target: float, *, lo: float = 1e-6, hi: float = 1.0, steps: int = 60) -> float:
    """The gate threshold ``θ`` at which ``kept(θ)`` (a crisp count, non-increasing in ``θ``)
    first falls to ``target`` or below: bisection in ``log θ`` on ``[lo, hi]``, deterministic.

    (Used by the former per-layer-gate ``coarse`` to start its crisp mask at ``c``; kept for
    the API.)  A count is a step function, so the result is the smallest bracketed
    ``θ`` with ``kept(θ) ≤ target`` (to ``steps`` halvings).

    >>> round(calibrate_gate_threshold(lambda t: 100 if t < 0.5 else 0, 25), 3)
    0.5
    """
    if kept(hi) > target:
        return hi
    if kept(lo) <= target:
        return lo
    a, b = math.log(lo), math.log(hi)
    for _ in range(steps):
        mid = 0.5 * (a + b)
        if kept(math.exp(mid)) > target:
            a = mid
        else:
            b = mid
    return math.exp(b)


def budget_loss(kept: torch.Tensor, target: float, lam: float) -> torch.Tensor:
    """λ·((Σ kept − c)/c)²: tc-pruning Eq. 1 / 4 and coarse-to-fine Eq. 4, measured relative to
    the budget.  In raw counts (the papers' form) the term's gradient is ~c times larger and,
    with Adam's per-parameter normalisation, shrinks every weight at the full learning rate
    until the budget is met; relative to ``c`` the cross-entropy keeps a say."""
    return lam * ((kept - target) / max(target, 1.0)) ** 2


def halfnormal_quantile(u: torch.Tensor) -> torch.Tensor:
    """Quantile function of |N(0, 1)|: Φ⁻¹((1 + u)/2)."""
    return torch.special.ndtri(0.5 * (1.0 + u))


def pmp_prior_quantiles(n: int, rate: float, eps: float, *, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """The prior's quantiles at ``(i + ½)/n``, ``i = 0..n−1`` (sorted ascending)."""
    u = (torch.arange(n, dtype=torch.float64, device=device) + 0.5) / n
    q = halfnormal_quantile(u)
    q = torch.where(u < rate, eps * q, q)
    return q.to(dtype)


def empirical_prior_quantiles(sorted_init: torch.Tensor, n_spike: int, eps: float) -> torch.Tensor:
    """PMP's prior as used by the trainer: the sorted initial ``|ŵ|`` (the law of the
    initialisation, ERK allocation included) with its ``n_spike`` smallest values squeezed
    by ``ε`` (the spike); the rest is the slab.

    >>> empirical_prior_quantiles(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2, 0.5).tolist()
    [0.5, 1.0, 3.0, 4.0]
    """
    q = sorted_init.clone()
    q[:n_spike] = q[:n_spike] * eps
    return q


def pmp_threshold(rate: float) -> float:
    """τ = the prior's quantile at the target rate."""
    return float(halfnormal_quantile(torch.tensor(rate, dtype=torch.float64)))


def wasserstein1_sorted(values: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein-1 distance between the empirical law of ``values`` and a law given by
    ``quantiles`` (sorted, same length): ``mean |sort(values) − quantiles|``.

    >>> wasserstein1_sorted(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0])).item()
    0.5
    """
    x, _ = torch.sort(values.reshape(-1))
    return (x - quantiles).abs().mean()


def unit_gate_masks(plan, fines: Mapping[str, torch.Tensor], theta: float | Mapping[str, float], *,
                    keep_fraction: float | Mapping[str, float] | None = None,
                    thresholds: dict | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``coarse``'s structured masks from *unit* gates that follow the model's declared topology.

    ``plan`` is :func:`trainer._tc.plan_of` of the model's netgraph graph (the one source of
    truth for the topology; weighted blocks must be 2-D ``(out, in)`` with no conv groups).
    Every unit of every non-sink group gets one gate, computed from the soft mask mass
    ``ψ_f`` of *all* weights incident to it (its column in the weighted blocks into the
    group, its row in the blocks out of it, and, through a structural block such as the
    GCN's flatten expansion, the masses of its images: a conv channel's gate sees fc's whole
    channel block — block priority).  With ``f_u`` the mean incident ψ_f of unit ``u`` and
    ``r_u = f_u / max_{u' in its group} f_{u'}`` (the max detached; a structural block's
    image multiplies its own ``f`` by its pre-image's gate first), the gate is
    ``γ(r) = r²/(r² + θ_g²)``, crisp ``r ≥ θ_g``; ``theta`` is one ``θ`` or one per group
    (:func:`unit_gate_thresholds`).  With ``keep_fraction = q`` instead, ``θ_g`` is the
    ``⌈q·n_g⌉``-th largest ``r`` of group ``g`` (written into ``thresholds``).  A weight's mask is the product of the gates
    of the two units it joins, so **layer ℓ's output gate is layer ℓ+1's input gate**: a
    crisp structured mask is the full rectangle between kept units of adjacent groups, and
    since every group keeps its strongest unit (``r = 1 ≥ θ_g`` for ``θ_g ≤ 1``), every kept
    weight is on a source-to-sink path — connected by construction.

    Returns ``(st, soft)`` per weight name: ``st`` is straight-through (the crisp 0/1 product
    forward, the soft product's gradient backward), ``soft`` the soft product.
    """
    mass: dict[str, torch.Tensor] = {}
    count: dict[str, torch.Tensor] = {}

    def add(g, m, n):
        mass[g] = mass[g] + m if g in mass else m
        count[g] = count[g] + n if g in count else n

    for s in plan.steps:
        if s.kind != "weighted":
            continue
        f = fines[s.name]
        if f.dim() == 2 and s.conv_groups == 1 and s.src_cls is None:
            add(s.dst, f.sum(dim=1), torch.full((f.shape[0],), float(f.shape[1]), dtype=f.dtype, device=f.device))
            add(s.src, f.sum(dim=0), torch.full((f.shape[1],), float(f.shape[0]), dtype=f.dtype, device=f.device))
            continue
        # conv taps, conv groups, unit classes (traced graphs): per-unit sums, then per class
        taps = f[0, 0].numel() if f.dim() > 2 else 1
        f2 = f.reshape(f.shape[0], f.shape[1], -1).sum(dim=2) if f.dim() > 2 else f
        out_ch, in_pg = f2.shape
        gr = s.conv_groups
        dst_m = f2.sum(dim=1)
        src_m = f2.reshape(gr, out_ch // gr, in_pg).sum(dim=1).reshape(gr * in_pg)
        dst_n = torch.full_like(dst_m, float(in_pg * taps))
        src_n = torch.full_like(src_m, float(out_ch // gr * taps))
        for g, cls, m, n in ((s.dst, s.dst_cls, dst_m, dst_n), (s.src, s.src_cls, src_m, src_n)):
            if cls is not None:
                z = torch.zeros(plan.widths[g], dtype=f.dtype, device=f.device)
                m, n = z.index_add(0, cls, m), z.index_add(0, cls, n)
            add(g, m, n)
    for s in reversed(plan.steps):  # a structural block's source unit owns its images' masses
        if s.kind == "pairs" and s.dst in mass:
            z = torch.zeros(plan.widths[s.src], dtype=mass[s.dst].dtype, device=mass[s.dst].device)
            add(s.src, z.index_add(0, s.rows, mass[s.dst][s.cols]), z.index_add(0, s.rows, count[s.dst][s.cols]))
    st: dict[str, torch.Tensor] = {}
    soft: dict[str, torch.Tensor] = {}
    parent_st: dict[str, torch.Tensor] = {}
    parent_soft: dict[str, torch.Tensor] = {}
    for g in plan.order:
        if g in plan.sinks or g not in mass:
            if g in parent_st:  # fed by a structural block only: its pre-image's gate
                st[g], soft[g] = parent_st[g], parent_soft[g]
            else:  # sinks (classes) are never removed
                st[g] = soft[g] = torch.ones(plan.widths[g], dtype=_dtype(fines), device=_device(fines))
        else:
            frac = mass[g] / count[g].clamp_min(1.0)
            if g in parent_st:
                frac = frac * parent_st[g]
            r = frac / frac.detach().max().clamp_min(1e-30)
            if keep_fraction is not None:  # per-group θ: keep this fraction of the group's units
                live = r.detach()[r.detach() > 0] if g in parent_st else r.detach()
                q = keep_fraction[g] if isinstance(keep_fraction, Mapping) else keep_fraction
                k = max(1, math.ceil(q * live.numel()))
                th = float(torch.sort(live, descending=True).values[min(k, live.numel()) - 1])
                if thresholds is not None:
                    thresholds[g] = th
            else:
                th = theta[g] if isinstance(theta, Mapping) else theta
            z = _gate(r, th)
            hard = (r.detach() >= th).to(z.dtype)
            st[g] = hard + (z - z.detach())
            soft[g] = z
            if g in parent_st:
                st[g] = st[g] * parent_st[g]
                soft[g] = soft[g] * parent_soft[g]
        for s in plan.steps:
            if s.kind == "pairs" and s.src == g:
                zz = torch.zeros(plan.widths[s.dst], dtype=st[g].dtype, device=st[g].device)
                parent_st[s.dst] = zz.index_add(0, s.cols, st[g][s.rows]).clamp(max=1.0)
                parent_soft[s.dst] = zz.index_add(0, s.cols, soft[g][s.rows]).clamp(max=1.0)
    out_st, out_soft = {}, {}
    for s in plan.steps:
        if s.kind == "weighted":
            shape = tuple(fines[s.name].shape)
            out_st[s.name] = _outer(st, s, shape)
            out_soft[s.name] = _outer(soft, s, shape)
    return out_st, out_soft


def _outer(gates: Mapping[str, torch.Tensor], s, shape: tuple[int, ...]) -> torch.Tensor:
    """``gate[dst] gate[src]ᵀ`` in a weight's shape (classes, conv groups and taps resolved)."""
    d, r = gates[s.dst], gates[s.src]
    if s.dst_cls is not None:
        d, r = d[s.dst_cls], r[s.src_cls]
    if len(shape) == 2 and s.conv_groups == 1:
        return d[:, None] * r[None, :]
    out_ch, in_pg, gr = shape[0], shape[1], s.conv_groups
    rr = r.reshape(gr, 1, in_pg).expand(gr, out_ch // gr, in_pg).reshape(out_ch, in_pg)
    m = d[:, None] * rr
    return m.reshape(m.shape + (1,) * (len(shape) - 2)).expand(shape)


def _dtype(t: Mapping[str, torch.Tensor]):
    return next(iter(t.values())).dtype


def _device(t: Mapping[str, torch.Tensor]):
    return next(iter(t.values())).device


def unit_group_fractions(plan, densities: Mapping[str, float]) -> dict[str, float]:
    """Per-group kept fractions ``Q_g`` whose structured products follow per-layer densities.

    A crisp structured mask keeps the full rectangle between kept units, so layer ``ℓ``
    (``src → dst``) keeps the fraction ``Q_src·Q_dst`` of its weights.  ``Q`` solves
    ``log Q_src + log Q_dst = log d_ℓ`` for every weighted layer in the least-squares,
    minimum-norm sense (sinks fixed at ``Q = 1``; a group fed by a structural block, such as
    the flatten, has its own ``Q``: its fraction of *all* its units), clipped to ``≤ 1``.
    With ``densities`` the ERK densities this is the ERK allocation made structured.

    >>> from types import SimpleNamespace as N
    >>> plan = N(steps=[N(kind="weighted", name="a", src="x", dst="h"), N(kind="weighted", name="b", src="h", dst="y")],
    ...          sinks=("y",), order=("x", "h", "y"))
    >>> {g: round(q, 3) for g, q in unit_group_fractions(plan, {"a": 0.04, "b": 0.2}).items()}
    {'x': 0.2, 'h': 0.2}
    """
    groups = [g for g in plan.order if g not in plan.sinks]
    col = {g: i for i, g in enumerate(groups)}
    rows, rhs = [], []
    for s in plan.steps:
        if s.kind != "weighted":
            continue
        row = [0.0] * len(groups)
        for g in (s.src, s.dst):
            if g in col:
                row[col[g]] += 1.0
        rows.append(row)
        rhs.append(math.log(max(float(densities[s.name]), 1e-12)))
    a = torch.tensor(rows, dtype=torch.float64)
    b = torch.tensor(rhs, dtype=torch.float64)[:, None]
    x = torch.linalg.pinv(a) @ b
    return {g: min(1.0, math.exp(float(x[col[g], 0]))) for g in groups}


def unit_gate_thresholds(plan, fines: Mapping[str, torch.Tensor], target: float, *, steps: int = 40,
                         fractions: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per-group ``θ_g`` for :func:`unit_gate_masks`, the crisp structured mask keeping at
    most ``target`` weights.  Without ``fractions`` every gated group keeps the same fraction
    ``q`` of its units, ``q`` the largest (to ``steps`` halvings) that fits (a structured
    analogue of a uniform layer density: one ``θ`` for all groups let the groups' noise
    decide, and a group whose units' masses are nearly equal was kept whole while a noisier
    one was cut to a few units).  With ``fractions`` (:func:`unit_group_fractions`) group
    ``g`` keeps ``min(1, t·Q_g)`` of its units, ``t`` the largest scale that fits."""
    if fractions is None:
        scale_hi = 1.0

        def qs(t: float):
            return t
    else:
        scale_hi = 1.0 / max(1e-12, min(fractions.values()))
        parent = {s.dst: s.src for s in plan.steps if s.kind == "pairs"}

        def qs(t: float):
            # a group fed by a structural block keeps a fraction of its *live* units (its kept pre-images')
            return {g: min(1.0, t * q / (max(1e-12, min(1.0, t * fractions[parent[g]])) if parent.get(g) in fractions else 1.0))
                    for g, q in fractions.items()}

    def run(t: float) -> tuple[int, dict]:
        th: dict[str, float] = {}
        st, _ = unit_gate_masks(plan, fines, 1.0, keep_fraction=qs(t), thresholds=th)
        return sum(int((m >= 0.5).sum()) for m in st.values()), th

    lo, hi = 0.0, scale_hi
    if run(hi)[0] <= target:
        return run(hi)[1]
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if run(mid)[0] <= target:
            lo = mid
        else:
            hi = mid
    return run(lo)[1]
