"""Pruning methods as strategy objects: each owns its mask parametrization, its loss terms and
its crisp finish.  The loop (:mod:`trainer._loop`) and the pruner (:mod:`trainer._pruner`)
call these methods and know no method names.

Contract
--------
A method sees the :class:`~trainer._pruner.Pruner` ``pr`` (the plan of the traced or declared
graph, the normalized latents ``pr.latents()``, the budget ``pr.c``, the schedule
``pr.progress()``) and provides

* ``crispness(pr)``: the band-stop ``s`` now,
* ``soft(pr, s)``: ψ per weight (crisp mask: ``ψ ≥ ½``),
* ``relaxed(pr)``: ``(masks, terms)`` — the masks the forward pass multiplies in (with
  gradients) and the extra loss terms (budget, η, divergence) of this step,
* ``crisp(pr)``: boolean masks keeping exactly ``c`` weights (for mp-tc and coarse: ``c``
  *effective* weights, none dead).

=========  ======================================================================
mp, fine   CE(ŵ ⊙ ψ_f) + λ((Σψ_f − c)/c)²
mp-tc      CE(ŵ ⊙ ψ_f ⊙ Φ) + λ((Σ ψ_f ⊙ Φ − c)/c)² + η Σ ψ_f ⊙ (1 − Φ)/c   (tc-pruning Eq. 4)
ctf        CE(ŵ ⊙ ψ_c(ψ_f) ⊙ ψ_f) + λ((Σψ − c)/c)²                   (coarse-to-fine Eq. 4)
coarse     CE(ŵ ⊙ sg(U)) + λ((ΣU − c)/c)²   (U: shared unit gates, straight-through; sg: no grad)
pmp        CE(ŵ ⊙ ψ_f) + μ·N·W1(|ŵ|, prior)   (prior: initial |ŵ|, spike squeezed; no budget)
dense      CE(ŵ)  (the unpruned baseline; rate must be 0)
=========  ======================================================================
"""

from __future__ import annotations

import torch

from ._masks import (
    band_stop,
    budget_loss,
    crispness_for_threshold,
    ctf_mask,
    empirical_prior_quantiles,
    gate_threshold,
    unit_gate_masks,
    unit_gate_thresholds,
    unit_group_fractions,
    wasserstein1_sorted,
)
from ._tc import tc_step

__all__ = ["Method", "METHOD_CLASSES", "METHODS", "method_for"]


class Method:
    """Relaxed magnitude pruning (``mp``; ``fine`` is the same mask in the CTF tables)."""

    name = "mp"
    prunes = True  # False: the dense baseline
    connected = False  # True: the crisp finish keeps c *effective* weights

    def setup(self, pr) -> None:
        """Called once after the latents are standardized and ERK-allocated."""

    def crispness(self, pr) -> float:
        return crispness_for_threshold(pr.tau0) * pr.crisp_growth ** pr.progress()

    def soft(self, pr, s: float) -> dict[str, torch.Tensor]:
        return {n: band_stop(w, s) for n, w in pr.latents().items()}

    def relaxed(self, pr) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        psi = self.soft(pr, self.crispness(pr))
        kept = sum(p.sum() for p in psi.values())
        return psi, {"budget": budget_loss(kept, pr.c, pr.lam)}

    def scores(self, pr) -> dict[str, torch.Tensor]:
        """Ranking used to crisp the masks at the exact budget (higher = kept first)."""
        return {n: w.detach().abs() for n, w in pr.latents().items()}

    @torch.no_grad()
    def crisp(self, pr) -> dict[str, torch.Tensor]:
        sc = self.scores(pr)
        if self.connected:
            return pr.top_effective(sc)
        return pr.top(sc, int(pr.c))


class Fine(Method):
    name = "fine"


class MagnitudeTC(Method):
    """MP + TC: the rank-1 TC step (:func:`trainer._tc.tc_step`)."""

    name = "mp-tc"
    connected = True

    def relaxed(self, pr):
        psi = self.soft(pr, self.crispness(pr))
        masks, effective, dead = tc_step(pr.plan, psi)
        return masks, {"budget": budget_loss(effective, pr.c, pr.lam),
                       "eta": pr.eta * dead / max(pr.c, 1.0)}  # in units of the budget, like the budget term


class CoarseToFine(Method):
    """ψ = ψ_c(ψ_f) ⊙ ψ_f with block > column > row gates (coarse-to-fine Eq. 2–3)."""

    name = "ctf"

    def setup(self, pr) -> None:
        self.theta = gate_threshold(pr.rate, pr.gate_ratio)

    def soft(self, pr, s):
        out = {}
        for n, w in pr.latents().items():
            fine = band_stop(w, s)
            if fine.dim() == 2:
                out[n] = ctf_mask(fine, pr.layouts[n], self.theta)
            else:  # conv: (out, in/groups · taps), the block is an input channel's taps
                out[n] = ctf_mask(fine.reshape(fine.shape[0], -1), pr.layouts[n], self.theta).reshape(fine.shape)
        return out

    def scores(self, pr):
        s = self.crispness(pr)
        psi = self.soft(pr, s)
        out = {}
        for n, w in pr.latents().items():
            fine = band_stop(w.detach(), s)
            out[n] = psi[n].detach() / fine.clamp_min(1e-30) * w.detach().abs()
        return out


class Coarse(Method):
    """Structured: shared unit gates only (:func:`trainer._masks.unit_gate_masks`)."""

    name = "coarse"
    connected = True

    def setup(self, pr) -> None:
        self.theta = self.calibrated(pr)

    @torch.no_grad()
    def calibrated(self, pr) -> dict[str, float]:
        """Per-group unit-gate thresholds: group ``g`` keeps ``t·Q_g`` of its units (ERK
        structured), ``t`` the largest for which the crisp structured mask keeps at most
        ``c`` weights.  Recomputed from the seeded initialisation on resume (same values)
        and on the final latents for the crisp finish."""
        fines = {n: band_stop(w, self.crispness(pr)) for n, w in pr.latents().items()}
        dens = pr.erk_densities()
        return unit_gate_thresholds(pr.unit_plan, fines, pr.c, fractions=unit_group_fractions(pr.unit_plan, dens))

    def soft(self, pr, s):
        fines = {n: band_stop(w, s) for n, w in pr.latents().items()}
        return unit_gate_masks(pr.unit_plan, fines, self.theta)[0]

    def relaxed(self, pr):
        psi = self.soft(pr, self.crispness(pr))
        kept = sum(p.sum() for p in psi.values())
        # the CE trains the weights through the crisp structure, not the unit gates (see _masks)
        return {n: p.detach() for n, p in psi.items()}, {"budget": budget_loss(kept, pr.c, pr.lam)}

    def scores(self, pr):
        lat = pr.latents()
        fines = {n: band_stop(p.detach(), self.crispness(pr)) for n, p in lat.items()}
        crisp, soft = unit_gate_masks(pr.unit_plan, fines, self.calibrated(pr))
        out = {}
        for n, w in lat.items():
            mag = w.detach().abs()
            # the crisp structured mask first (kept rectangles), then soft gates × magnitude
            out[n] = (crisp[n].detach() >= 0.5).to(mag.dtype) + 0.5 * soft[n] * mag / (1.0 + mag)
        return out


class ProbabilisticMP(Method):
    """PMP: a W1 divergence to the initialisation prior implements the rate (see _masks)."""

    name = "pmp"

    def setup(self, pr) -> None:
        with torch.no_grad():
            mags = torch.cat([w.detach().abs().reshape(-1) for w in pr.latents().values()])
        self.init = torch.sort(mags).values

    def eps(self, pr) -> float:
        return float(pr.pmp_eps_end ** pr.progress())

    def crispness(self, pr) -> float:
        return crispness_for_threshold(pr.tau0 * (1.0 + self.eps(pr)) / 2.0)

    def relaxed(self, pr):
        lat = pr.latents()
        psi = self.soft(pr, self.crispness(pr))
        mags = torch.cat([w.reshape(-1).abs() for w in lat.values()])
        init = self.init.to(mags.device)
        q = empirical_prior_quantiles(init, mags.numel() - int(pr.c), self.eps(pr))
        return psi, {"divergence": pr.pmp_weight * mags.numel() * wasserstein1_sorted(mags, q)}


class Dense(Method):
    """The unpruned baseline (rate 0): no mask, no extra term."""

    name = "dense"
    prunes = False

    def crispness(self, pr) -> float:
        return 1.0

    def soft(self, pr, s):
        return {n: torch.ones_like(w) for n, w in pr.latents().items()}

    def relaxed(self, pr):
        return {}, {}

    @torch.no_grad()
    def crisp(self, pr):
        return {n: torch.ones_like(w, dtype=torch.bool) for n, w in pr.latents().items()}


METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls for cls in (Method, MagnitudeTC, CoarseToFine, Coarse, Fine, ProbabilisticMP, Dense)
}
METHODS = tuple(METHOD_CLASSES)


def method_for(name: str) -> Method:
    """A fresh strategy object for a method name (one of :data:`METHODS`)."""
    from netgraph.errors import NetgraphError

    if name not in METHOD_CLASSES:
        raise NetgraphError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHOD_CLASSES[name]()

