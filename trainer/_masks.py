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

* **coarse**: ``ψ = ψ_c(ψ_f(ŵ))`` (the gates only: structured pruning).  Here ``θ`` is not
  ``ρ·d``: it is *calibrated* (:func:`calibrate_gate_threshold`) so that the initial crisp
  coarse mask (gate product ≥ ½) keeps ``c`` weights (at most ``c``: counts jump by groups), the same start-at-the-budget
  rule that fixes ``s₀`` for the band-stop.  Why: ``ρ·d`` suits CTF, where a gate only removes
  groups that ψ_f has already thinned and ψ_f does the rest of the budget; with the gates
  alone every group's mass (≈ the soft ψ_f density, far above ``ρ·d``) opens its gate, the
  relaxed mask starts at ~N instead of ``c`` (the SBU preset at 95 %: Σψ ≈ 17.6·c), and the
  budget, ~300× its size at the start and normalised per weight by Adam, shrinks every latent
  alike until the mass falls to ``c``.  No group is preferred, the signal dies and the
  network stayed at chance (12–23 %) at every rate.  Calibrated, the budget starts near its
  minimum, the cross-entropy trains from the first epoch and the budget only arbitrates
  between groups.  (A ``θ`` that puts the *soft* mass at ``c`` instead was tried: it needs
  gates ≈ 0.05, the effective weight then grows like a high power of ``ŵ`` and training
  diverged.)  Known limit: at 98 % on the SBU preset the global ``θ`` closes every group of
  the ERK-sparse fc layer at the start (its soft mass ~1e-5), the variance preservation
  scales that layer up ~1e4 and the loss explodes when its gates open: coarse stays near
  chance there.  Tried next and *not* kept (measured, seed 0, 40 epochs, all at chance): (a)
  straight-through gates (crisp gate product forward, soft gradient backward, as MP+TC's Φ)
  with one ``θ`` per layer calibrated to its ERK share (no layer empty, no 1e4 rescale, budget
  on the straight-through crisp count, which starts at ``c``): 22.8 %, CE flat at ln 8.  The
  initial structured mask is *disconnected* — it keeps a near-random rectangle of units per
  layer, and consecutive layers do not agree on the units they share (at 98 %: fc keeps 215
  weights of which 1 is effective; conv keeps 5 of 8 filters, fc's kept input blocks mostly
  belong to the other 3) — and a crisp forward gives a dead path no gradient to revive it.
  (b) The same per-layer ``θ`` with the soft forward and the straight-through budget: 24.6 %;
  fc's gates all sit in [0.3, 0.6], whole layers flip across ½ between steps (crisp count
  150–5,800 around a budget of 215) and the budget term dominates.  (c) Per-layer ``θ``, soft
  forward, soft budget: 12.3 %.  For reference ``fine`` at 98 % keeps CE ≈ 2.0 for ~15
  epochs before it learns, so coarse has little time before the budget bites.  What a fix
  likely needs: gates shared by the two layers that meet at a unit (an output gate of layer
  ℓ *is* the input gate of layer ℓ+1), so a structured mask is connected by construction.
* **PMP** (probabilistic magnitude pruning, our reading of ``pmp-summary.md``, of which
  only a summary exists): a divergence term aligns the empirical distribution of ``|ŵ|``
  (all prunable latents together) with a prior, and the prior's quantile at the target rate
  is the pruning threshold, so any fixed rate is implemented by the alignment itself (no
  budget term).  The divergence is the 1-D Wasserstein-1 distance, computed by sorting:
  ``W1 = mean_i |x_(i) − Q((i + ½)/N)|``.  The prior is the half-normal of the latents'
  initialisation whose lower ``rate`` mass is squeezed toward zero by a factor ``ε``
  (annealed from 1 to ``eps_end``: the crispness schedule)::

      Q(u) = ε · Qhn(u)          u <  rate      (the spike: pruned weights)
      Q(u) = Qhn(u)              u >= rate      (the slab: kept weights)

  with ``Qhn(u) = Φ⁻¹((1 + u)/2)``.  The threshold is ``τ = Qhn(rate)``; the mask is the
  band-stop with ``ψ(θ) = ½`` at ``θ = τ(1 + ε)/2``, between the spike and the slab.
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

    Used by ``coarse`` so that its initial crisp mask keeps exactly ``c`` weights (see the
    module contract); a count is a step function, so the result is the smallest bracketed
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


def concat_abs(latents: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([w.reshape(-1).abs() for w in latents.values()])
