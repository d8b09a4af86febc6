"""The training loop: relaxed pruning (MP, MP+TC, CTF, coarse, fine, PMP), then a crisp finish.

Contract
--------
``train(config)`` runs two phases on one seeded ``torch.Generator`` (init, shuffling):

1. **Relaxed** (``epochs − finetune_epochs`` epochs): Adam on the latent weights with the
   method's loss (below); the band-stop crispness ``s`` grows geometrically from ``s₀``
   (where the crisp mask keeps exactly ``c = (1 − rate)·N`` of the initial latents) to
   ``s₀·crisp_growth``.  Learning rate: the papers' rule, ``ν ← ν·0.99`` when the epoch's
   loss rose, ``ν ← ν/0.99`` when it fell (clamped to ``[ν₀/100, 10·ν₀]`` so a long fall
   cannot blow it up).
2. **Crisp finish**: the soft masks are made crisp at the exact budget (the ``c`` weights
   with the highest score; for MP+TC and ``coarse`` the smallest top-k whose *effective* part reaches
   ``c``, keeping only that effective part, then trimmed to ``c`` by removals that kill
   nothing else — ``coarse`` ranks its re-calibrated crisp unit structure first), and the kept weights are fine-tuned with the masks fixed
   (``finetune_epochs``; cross-entropy only).

Losses (``ψ`` the method's soft mask, ``Φ = φ_l φ_rᵀ`` the (co)accessibility factor).  The
budget and η terms are measured in units of the budget ``c`` (``λ((K − c)/c)²``,
``η·Σψ(1 − Φ)/c``): in raw counts their gradients are ~c times larger than the papers'
λ = 10 suggests and, with Adam's per-parameter normalisation, they shrink every weight at
the full learning rate before the cross-entropy can act (measured: the SBU preset at 98 %
stayed at chance).

=========  ======================================================================
mp, fine   CE(ŵ ⊙ ψ_f) + λ(Σψ_f − c)²
mp-tc      CE(ŵ ⊙ ψ_f ⊙ Φ) + λ(Σ ψ_f ⊙ Φ − c)² + η Σ ψ_f ⊙ (1 − Φ)   (tc-pruning Eq. 4)
ctf        CE(ŵ ⊙ ψ_c(ψ_f) ⊙ ψ_f) + λ(Σψ − c)²                     (coarse-to-fine Eq. 4)
coarse     CE(ŵ ⊙ sg(U)) + λ(ΣU − c)²   (U: shared unit gates, straight-through; sg: no grad)
pmp        CE(ŵ ⊙ ψ_f) + μ·N·W1(|ŵ|, prior)   (prior: initial |ŵ|, spike squeezed; no budget)
dense      CE(ŵ)  (the unpruned baseline; rate must be 0)
=========  ======================================================================

A training state (model, optimiser, generator state, learning rate, epoch, history, fixed
masks) is written atomically every ``checkpoint_every`` epochs to ``<out>.state.pt``;
``resume=True`` continues from it and gives the same weights as an uninterrupted run.  A
NaN / infinite loss or weight stops training with :class:`netgraph.errors.TrainingDiverged`.
The result is written with :func:`netgraph.save_checkpoint` in
``torch.nn.utils.prune`` format with the topology spec and the audit in its meta.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from netgraph import audit
from netgraph import atomic_write, save_checkpoint
from netgraph import graph_to_spec
from netgraph.errors import NetgraphError, TrainingDiverged

from ._data import Dataset, load_dataset
from ._masks import (
    LN3,
    band_stop,
    budget_loss,
    crispness_for_threshold,
    ctf_mask,
    gate_threshold,
    halfnormal_quantile,
    empirical_prior_quantiles,
    unit_gate_masks,
    unit_gate_thresholds,
    unit_group_fractions,
    wasserstein1_sorted,
)
from ._models import GCN, MLP, gcn_preset
from ._tc import phi, plan_of, straight_through, tc_factors, tc_terms

__all__ = ["METHODS", "TrainConfig", "TrainResult", "train", "resolve_device", "build_for", "Trainer"]

METHODS = ("mp", "mp-tc", "ctf", "coarse", "fine", "pmp", "dense")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on (plain values, so it is stored in checkpoints).

    ``lam`` is λ of the budget (tc-pruning uses 10, coarse-to-fine 1000; counts of weights),
    ``eta`` the TC mixing weight, ``pmp_weight`` μ, ``gate_ratio`` ρ of the CTF gates,
    ``crisp_growth`` the factor by which ``s`` grows over the relaxed phase.
    ``finetune_epochs`` defaults to a fifth of ``epochs``.
    """

    model: str = "gcn"
    preset: str = "sbu"
    dataset: str = "synthetic-sbu"
    method: str = "mp"
    rate: float = 0.9
    epochs: int = 60
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    resume: bool = False
    lr: float = 0.02
    batch_size: int = 64
    lam: float = 1.0
    eta: float = 1.0
    crisp_growth: float = 30.0
    gate_ratio: float = 0.5
    pmp_weight: float = 0.01
    pmp_eps_end: float = 0.05
    finetune_epochs: int | None = None
    checkpoint_every: int = 10
    data_seed: int = 0
    mlp_hidden: tuple[int, ...] = (128, 64)
    progress: bool = True

    def validate(self) -> "TrainConfig":
        if self.method not in METHODS:
            raise NetgraphError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.model not in ("gcn", "mlp"):
            raise NetgraphError(f"unknown model {self.model!r}; choose gcn or mlp")
        if self.method == "dense":
            if self.rate != 0:
                raise NetgraphError(f"method 'dense' is the unpruned baseline; it needs rate 0, got {self.rate}")
        elif not 0.0 < self.rate < 1.0:
            raise NetgraphError(f"rate must be in (0, 1) (a fraction of weights to prune), got {self.rate}")
        if self.epochs < 1:
            raise NetgraphError(f"epochs must be at least 1, got {self.epochs}")
        ft = self.finetune
        if not 0 <= ft < self.epochs:
            raise NetgraphError(f"finetune_epochs must be in [0, epochs), got {ft} with epochs={self.epochs}")
        if self.batch_size < 1 or self.checkpoint_every < 1:
            raise NetgraphError("batch_size and checkpoint_every must be at least 1")
        return self

    @property
    def finetune(self) -> int:
        return self.epochs // 5 if self.finetune_epochs is None else int(self.finetune_epochs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mlp_hidden"] = list(self.mlp_hidden)
        return d


@dataclass(frozen=True)
class TrainResult:
    """What a run produced.  ``audit`` is :meth:`netgraph.AuditReport.to_dict`."""

    checkpoint: str | None
    accuracy: float
    target_rate: float
    achieved_rate: float
    kept: int
    prunable: int
    audit: dict
    history: tuple[dict, ...]
    masks: dict = field(repr=False, default_factory=dict)
    seconds: float = 0.0
    parameters: int = 0  # all parameters of the model (prunable weights, biases, attention logits)

    @property
    def effective_fraction(self) -> float:
        """Effective / kept weights (1.0 when nothing is dead)."""
        s = self.audit["summary"]
        return s["effective"] / s["kept"] if s["kept"] else 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise NetgraphError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NetgraphError(f"device {name!r} requested but CUDA is not available; use --device auto or cpu")
    return dev


def build_for(config: TrainConfig, data: Dataset, generator: torch.Generator):
    """The model a config asks for, shaped for ``data``."""
    if config.model == "gcn":
        if data.n_nodes == 0:
            raise NetgraphError(f"the GCN needs skeleton data (N, nodes, features); {data.name} is flat")
        cfg = gcn_preset(config.preset, n_nodes=data.n_nodes, in_features=data.in_features,
                         classes=data.classes, edges=data.edges)
        return GCN(cfg, generator=generator)
    flat = int(np.prod(data.x_train.shape[1:]))
    return MLP((flat, *config.mlp_hidden, data.classes), generator=generator)


class Trainer:
    """One run's state; :func:`train` drives it.  Exposed for tests that take it apart."""

    def __init__(self, config: TrainConfig, data: Dataset | None = None):
        self.config = config.validate()
        self.device = resolve_device(config.device)
        self.data = data if data is not None else load_dataset(config.dataset, seed=config.data_seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = build_for(config, self.data, self.generator).to(self.device)
        self.plan = plan_of(self.model.graph(), self.device)  # structure only; cached
        self.layouts = self.model.block_layouts()
        self.n = self.model.n_prunable()
        self.c = float(round((1.0 - config.rate) * self.n))
        if config.method != "dense":
            erk_allocate(self.model, config.rate)
        with torch.no_grad():
            mags = torch.cat([p.detach().abs().reshape(-1) for p in self.model.prunable().values()]).cpu()
        self.pmp_init = None
        if config.method == "pmp":
            # the prior is the law of the initial latents (after the ERK allocation; see _masks)
            self.pmp_init = torch.sort(mags).values.to(self.device)
            self.tau0 = float(torch.topk(mags, max(1, int(self.c))).values[-1])
        elif config.method == "dense":
            self.tau0 = 1.0
        else:
            # the c-th largest initial |ŵ|: the crisp mask starts at the budget
            k = max(1, int(self.c))
            self.tau0 = float(torch.topk(mags, k).values[-1])
        self.gate_theta = gate_threshold(config.rate, config.gate_ratio) if config.method in ("ctf", "coarse") else 0.0
        self.epoch = 0
        self.relax_epochs = config.epochs - config.finetune
        if config.method == "coarse":
            # gates alone: θ such that the initial crisp coarse mask keeps exactly c (see _masks)
            self.gate_theta = self._calibrated_gate_theta()
        if config.method != "dense":
            self._preserve_variance()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.lr = config.lr
        self.prev_loss = math.inf
        self.epoch = 0
        self.history: list[dict] = []
        self.fixed: dict[str, torch.Tensor] | None = None  # crisp masks of the finish phase
        self.relax_epochs = config.epochs - config.finetune
        self.x_train = self.data.x_train.to(self.device)
        self.y_train = self.data.y_train.to(self.device)

    @torch.no_grad()
    def _calibrated_gate_theta(self) -> dict[str, float]:
        """``coarse``'s per-group unit-gate thresholds (``gate_ratio`` is unused): every
        gated group keeps the same fraction ``q`` of its units (its strongest by incident
        mass), ``q`` the largest for which the crisp structured mask keeps at most ``c``
        weights (bisection).  Recomputed from the seeded initialisation on resume (same
        values) and on the final latents for the crisp finish."""
        fines = {n: band_stop(w, self.crispness()) for n, w in self.model.prunable().items()}
        dens = erk_densities({n: tuple(w.shape) for n, w in self.model.prunable().items()}, self.config.rate)
        return unit_gate_thresholds(self.plan, fines, self.c, fractions=unit_group_fractions(self.plan, dens))

    @torch.no_grad()
    def _preserve_variance(self) -> None:
        """Rescale each layer so that ``scale·ŵ⊙ψ`` at the initial mask has the second moment
        of the dense initialisation: pruning 99 % of a layer would otherwise shrink its
        outputs ~10× per layer and the network would start with no signal."""
        psi = self.soft_masks(self.crispness())
        for name, w in self.model.prunable().items():
            moment = float((w * psi[name]).pow(2).mean())
            self.model.scales[name] = self.model.scales[name] / math.sqrt(max(moment, 1e-12))

    # -- schedules --------------------------------------------------------------------
    def progress(self, epoch: int | None = None) -> float:
        e = self.epoch if epoch is None else epoch
        return min(1.0, e / max(1, self.relax_epochs - 1))

    def crispness(self) -> float:
        if self.config.method == "pmp":
            return crispness_for_threshold(self.tau0 * (1.0 + self.pmp_eps()) / 2.0)
        return crispness_for_threshold(self.tau0) * self.config.crisp_growth ** self.progress()

    def pmp_eps(self) -> float:
        return float(self.config.pmp_eps_end ** self.progress())

    # -- masks ------------------------------------------------------------------------
    def soft_masks(self, s: float) -> dict[str, torch.Tensor]:
        """ψ of every prunable weight for the config's method."""
        m = self.config.method
        out = {}
        for name, w in self.model.prunable().items():
            fine = band_stop(w, s)
            if m == "ctf":
                out[name] = ctf_mask(fine, self.layouts[name], self.gate_theta)
            elif m == "coarse":
                out[name] = fine  # replaced below: coarse's gates couple layers
            else:
                out[name] = fine
        if m == "coarse":
            out = unit_gate_masks(self.plan, out, self.gate_theta)[0]
        return out

    def scores(self, psi: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Ranking used to crisp the masks at the exact budget (higher = kept first)."""
        m = self.config.method
        out = {}
        if m == "coarse":
            # re-calibrated on the final latents: the crisp structure is at (at most) the budget
            fines = {n: band_stop(p.detach(), self.crispness()) for n, p in self.model.prunable().items()}
            crisp, soft = unit_gate_masks(self.plan, fines, self._calibrated_gate_theta())
        for name, w in self.model.prunable().items():
            mag = w.detach().abs()
            if m == "ctf":
                fine = band_stop(w.detach(), self.crispness())
                out[name] = psi[name].detach() / fine.clamp_min(1e-30) * mag
            elif m == "coarse":
                # the crisp structured mask first (kept rectangles), then soft gates × magnitude
                out[name] = (crisp[name].detach() >= 0.5).to(mag.dtype) + 0.5 * soft[name] * mag / (1.0 + mag)
            else:
                out[name] = mag
        return out

    def tc(self, crisp: Mapping[str, torch.Tensor], psi: Mapping[str, torch.Tensor] | None = None):
        """Φ per weight: straight-through when ``psi`` is given, plain crisp otherwise."""
        masks = {n: straight_through(crisp[n], psi[n]) for n in crisp} if psi is not None else \
            {n: crisp[n].float() for n in crisp}
        r, l = phi(self.plan, masks)
        return tc_factors(self.plan, r, l)

    # -- one epoch ----------------------------------------------------------------------
    def loss_terms(self, xb, yb) -> dict[str, torch.Tensor]:
        cfg = self.config
        if self.fixed is not None:
            return {"ce": F.cross_entropy(self.model(xb, self.fixed), yb)}
        if cfg.method == "dense":
            return {"ce": F.cross_entropy(self.model(xb), yb)}
        s = self.crispness()
        psi = self.soft_masks(s)
        terms = {}
        if cfg.method == "mp-tc":
            crisp = {n: (p.detach() >= 0.5) for n, p in psi.items()}
            factors = self.tc(crisp, psi)
            eff_masks = {n: psi[n] * factors[n] for n in psi}
            terms["ce"] = F.cross_entropy(self.model(xb, eff_masks), yb)
            effective, dead = tc_terms(psi, factors)
            terms["budget"] = budget_loss(effective, self.c, cfg.lam)
            terms["eta"] = cfg.eta * dead / max(self.c, 1.0)  # in units of the budget, like the budget term
        else:
            if cfg.method == "coarse":
                # the CE trains the weights through the crisp structure, not the unit gates (see _masks)
                terms["ce"] = F.cross_entropy(self.model(xb, {n: p.detach() for n, p in psi.items()}), yb)
            else:
                terms["ce"] = F.cross_entropy(self.model(xb, psi), yb)
            if cfg.method == "pmp":
                lat = torch.cat([w.reshape(-1).abs() for w in self.model.prunable().values()])
                q = empirical_prior_quantiles(self.pmp_init, lat.numel() - int(self.c), self.pmp_eps())
                terms["divergence"] = cfg.pmp_weight * lat.numel() * wasserstein1_sorted(lat, q)
            else:
                kept = sum(p.sum() for p in psi.values())
                terms["budget"] = budget_loss(kept, self.c, cfg.lam)
        return terms

    def run_epoch(self) -> dict:
        cfg = self.config
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr
        n = self.x_train.shape[0]
        order = torch.randperm(n, generator=self.generator).to(self.device)
        sums: dict[str, float] = {}
        steps = 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            terms = self.loss_terms(self.x_train[idx], self.y_train[idx])
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                raise TrainingDiverged(f"epoch {self.epoch + 1}: the loss became {float(loss.detach())} ({detail}); "
                                       f"lower the learning rate (lr={self.lr:.3g}) or λ (lam={cfg.lam})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            steps += 1
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                raise TrainingDiverged(f"epoch {self.epoch + 1}: parameter {name!r} became NaN/infinite; "
                                       f"lower the learning rate (lr={self.lr:.3g})")
        rec = {k: v / steps for k, v in sums.items()}
        # the papers' adaptive learning rate, on the epoch's mean loss
        if rec["loss"] > self.prev_loss:
            self.lr *= 0.99
        else:
            self.lr /= 0.99
        self.lr = min(max(self.lr, cfg.lr / 100.0), cfg.lr * 10.0)
        self.prev_loss = rec["loss"]
        rec.update(epoch=self.epoch + 1, lr=self.lr, crisp_kept=self.crisp_kept(),
                   phase="finish" if self.fixed is not None else "relaxed")
        if self.fixed is None and cfg.method != "dense":
            rec["s"] = self.crispness()
        self.epoch += 1
        return rec

    @torch.no_grad()
    def crisp_kept(self) -> int:
        if self.fixed is not None:
            return int(sum(m.sum() for m in self.fixed.values()))
        if self.config.method == "dense":
            return self.n
        return int(sum((p >= 0.5).sum() for p in self.soft_masks(self.crispness()).values()))

    # -- crisp finish -------------------------------------------------------------------
    @torch.no_grad()
    def effective(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        f = self.tc(masks)
        return {n: masks[n] & (f[n] > 0) for n in masks}

    @torch.no_grad()
    def crisp_masks(self) -> dict[str, torch.Tensor]:
        """The soft masks made crisp at the exact budget (see the module contract)."""
        names = list(self.model.prunable())
        if self.config.method == "dense":
            return {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.model.prunable().items()}
        psi = self.soft_masks(self.crispness())
        sc = self.scores(psi)
        flat = torch.cat([sc[n].reshape(-1) for n in names])
        order = torch.argsort(flat, descending=True, stable=True)
        sizes = [sc[n].numel() for n in names]
        shapes = [sc[n].shape for n in names]

        def top(k: int) -> dict[str, torch.Tensor]:
            keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
            keep[order[:k]] = True
            return {n: part.reshape(s) for n, part, s in zip(names, torch.split(keep, sizes), shapes)}

        c = int(self.c)
        if self.config.method not in ("mp-tc", "coarse"):
            return top(c)

        def count(k):
            eff = self.effective(top(k))
            return eff, int(sum(m.sum() for m in eff.values()))

        lo, hi = c, flat.numel()
        eff, got = count(hi)
        if got < c:  # even all weights do not give c effective ones (cannot happen for a connected model)
            return eff
        while lo < hi:  # smallest k whose effective part reaches c
            mid = (lo + hi) // 2
            if count(mid)[1] >= c:
                hi = mid
            else:
                lo = mid + 1
        eff, got = count(lo)
        # trim the overshoot: drop the lowest-scored effective weights whose removal kills nothing else
        if got > c:
            rank = {n: sc[n] for n in names}
            cand = torch.cat([torch.where(eff[n].reshape(-1), rank[n].reshape(-1), torch.full_like(rank[n].reshape(-1), math.inf))
                              for n in names])
            offsets = np.cumsum([0] + sizes)
            for pos in torch.argsort(cand)[: 4 * (got - c) + 64].tolist():
                if got <= c or not math.isfinite(float(cand[pos])):
                    break
                j = int(np.searchsorted(offsets, pos, side="right") - 1)
                n = names[j]
                trial = dict(eff)
                flat_m = trial[n].reshape(-1).clone()
                flat_m[pos - offsets[j]] = False
                trial[n] = flat_m.reshape(shapes[j])
                new = self.effective(trial)
                new_got = int(sum(m.sum() for m in new.values()))
                if new_got == got - 1:
                    eff, got = new, new_got
        return eff

    def start_finish(self) -> None:
        self.fixed = self.crisp_masks()
        self.prev_loss = math.inf

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def accuracy(self, masks: Mapping[str, torch.Tensor] | None = None) -> float:
        self.model.eval()
        x, y = self.data.x_test.to(self.device), self.data.y_test.to(self.device)
        fm = {n: m.float() for n, m in masks.items()} if masks is not None else None
        correct = 0
        for start in range(0, x.shape[0], 1024):
            pred = self.model(x[start:start + 1024], fm).argmax(dim=1)
            correct += int((pred == y[start:start + 1024]).sum())
        self.model.train()
        return correct / max(1, x.shape[0])

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "lr": self.lr,
            "prev_loss": self.prev_loss,
            "history": list(self.history),
            "fixed": None if self.fixed is None else {n: m.cpu() for n, m in self.fixed.items()},
        }

    def load_state(self, st: Mapping) -> None:
        mine, theirs = self.config.to_dict(), dict(st["config"])
        for k in ("resume", "progress", "out", "device", "checkpoint_every"):
            mine.pop(k, None)
            theirs.pop(k, None)
        if mine != theirs:
            diff = sorted(k for k in mine if mine.get(k) != theirs.get(k))
            raise NetgraphError(f"the training state was written with different settings ({', '.join(diff)}); "
                                "resume with the same options or start afresh without --resume")
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.generator.set_state(st["generator"])
        self.epoch = int(st["epoch"])
        self.lr = float(st["lr"])
        self.prev_loss = float(st["prev_loss"])
        self.history = list(st["history"])
        self.fixed = None if st["fixed"] is None else {n: m.to(self.device).bool() for n, m in st["fixed"].items()}


def erk_densities(shapes: Mapping[str, tuple[int, ...]], rate: float, cap: float = 0.95) -> dict[str, float]:
    """Erdős–Rényi-kernel densities (Evci et al., RigL): ``d ∝ (fan_in + fan_out)/(fan_in·fan_out)``,
    scaled so that ``Σ d·size = (1 − rate)·Σ size``, capped at ``cap`` (the excess is spread
    over the other layers)."""
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    raw = {n: (s[0] + int(np.prod(s[1:]))) / sizes[n] for n, s in shapes.items()}
    budget = (1.0 - rate) * sum(sizes.values())
    fixed: dict[str, float] = {}
    while True:
        free = [n for n in shapes if n not in fixed]
        left = budget - sum(fixed[n] * sizes[n] for n in fixed)
        eps = left / max(1e-12, sum(raw[n] * sizes[n] for n in free))
        over = [n for n in free if eps * raw[n] > cap]
        if not over or len(fixed) == len(shapes):
            return {**fixed, **{n: min(cap, eps * raw[n]) for n in free}}
        fixed.update({n: cap for n in over})


@torch.no_grad()
def erk_allocate(model, rate: float) -> None:
    """Rescale the N(0, 1) latents per layer so that one global magnitude threshold keeps
    about the ERK density of every layer: a small layer (the SBU preset's 16×8 conv) is not
    cut to a single weight by a uniform 98 % rate."""
    params = model.prunable()
    dens = erk_densities({n: tuple(p.shape) for n, p in params.items()}, rate)
    q_global = float(halfnormal_quantile(torch.tensor(rate, dtype=torch.float64)))
    for n, p in params.items():
        q_layer = float(halfnormal_quantile(torch.tensor(1.0 - dens[n], dtype=torch.float64)))
        p.mul_(q_global / max(q_layer, 1e-3))


def _state_path(out: str) -> str:
    return out + ".state.pt"


def _save_state(path: str, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def train(config: TrainConfig, *, data: Dataset | None = None, stop_after: int | None = None) -> TrainResult:
    """Train, crisp, fine-tune, audit and (when ``config.out`` is set) save a pruned model.

    Parameters
    ----------
    config : TrainConfig
    data : Dataset, optional
        Use this instead of loading ``config.dataset`` (tests, the ablation's cache).
    stop_after : int, optional
        Stop (after writing the training state) once this many epochs are done, as a kill
        would; used to test resumption.  The result is then of the unfinished run.

    Returns
    -------
    TrainResult
    """
    t0 = time.perf_counter()
    tr = Trainer(config, data)
    cfg = tr.config
    state_path = _state_path(cfg.out) if cfg.out else None
    if cfg.resume:
        if not state_path or not os.path.exists(state_path):
            raise NetgraphError(f"--resume: no training state at {state_path!r}; run without --resume first")
        tr.load_state(torch.load(state_path, map_location=tr.device, weights_only=True))
    from tqdm import tqdm

    bar = tqdm(total=cfg.epochs, initial=tr.epoch, file=sys.stderr, disable=not cfg.progress,
               desc=f"{cfg.method} rate={cfg.rate:g}", leave=False)
    try:
        while tr.epoch < cfg.epochs:
            if tr.fixed is None and tr.epoch >= tr.relax_epochs:
                tr.start_finish()
            rec = tr.run_epoch()
            tr.history.append(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3g}", kept=rec["crisp_kept"], lr=f"{rec['lr']:.2g}")
            if state_path and (tr.epoch % cfg.checkpoint_every == 0 or (stop_after and tr.epoch >= stop_after)):
                _save_state(state_path, tr.state())
            if stop_after is not None and tr.epoch >= stop_after and tr.epoch < cfg.epochs:
                break
    finally:
        bar.close()
    if tr.fixed is None:
        tr.start_finish()
    return _finish(tr, t0, finished=tr.epoch >= cfg.epochs)


def _finish(tr: Trainer, t0: float, *, finished: bool) -> TrainResult:
    cfg = tr.config
    masks = tr.fixed
    np_masks = {n: m.cpu().numpy() for n, m in masks.items()}
    graph = tr.model.graph(np_masks)
    report = audit(graph, source=cfg.out or "<trainer>").to_dict()
    kept = int(sum(int(m.sum()) for m in np_masks.values()))
    acc = tr.accuracy(masks)
    achieved = 1.0 - kept / tr.n
    path = None
    if cfg.out and finished:
        meta = {
            "method": cfg.method,
            "target_rate": float(cfg.rate),
            "achieved_rate": float(achieved),
            "accuracy": float(acc),
            "topology": graph_to_spec(graph, tr.model.bias_keys()),
            "audit": report,
            "model": tr.model.describe(),
            "dataset": cfg.dataset,
            "config": cfg.to_dict(),
            "history": [dict(h) for h in tr.history],
        }
        save_checkpoint(cfg.out, tr.model.export_state_dict(masks), meta)
        path = cfg.out
        sp = _state_path(cfg.out)
        if os.path.exists(sp):
            os.unlink(sp)
    return TrainResult(path, acc, float(cfg.rate), float(achieved), kept, tr.n, report, tuple(tr.history),
                       {n: m.cpu() for n, m in masks.items()}, time.perf_counter() - t0, tr.model.n_parameters())
