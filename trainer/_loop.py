"""The training loop: relaxed pruning, then a crisp finish — for the built-in models and any
traceable model, on one process or many (torch.distributed).

Contract
--------
``train(config)`` runs two phases on one seeded ``torch.Generator`` (init, shuffling):

1. **Relaxed** (``epochs − finetune_epochs`` epochs): Adam on the latent weights with the
   method's loss (:mod:`trainer._methods`, attached by a :class:`trainer.Pruner`); the
   band-stop crispness ``s`` grows geometrically from ``s₀`` (where the crisp mask keeps
   exactly ``c = (1 − rate)·N`` of the initial latents) to ``s₀·crisp_growth``.  Learning
   rate: the papers' rule, ``ν ← ν·0.99`` when the epoch's loss rose, ``ν ← ν/0.99`` when it
   fell (clamped to ``[ν₀/100, 10·ν₀]``).
2. **Crisp finish** (``Pruner.finish``): exactly ``c`` kept weights (MP+TC and coarse: ``c``
   effective ones), fine-tuned with the masks fixed (``finetune_epochs``; cross-entropy only).

The loop knows no method names: everything method-specific is in the strategy object.

Models: ``gcn`` / ``mlp`` (they declare their ``graph()``) or ``pkg.module:factory`` (traced;
the dataset's inputs are reshaped — or, for 8×8 digits into a larger image, resized — to
``input_shape[1:]``).  The factory is called after ``torch.manual_seed(seed)``.

Many processes: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on CUDA); every rank
draws the same global batch order and takes its share of each global batch; the local
cross-entropy is scaled so that the averaged gradient is the global batch's; the budget and
TC terms depend only on the (replicated) weights, so they are the same on every rank.  Only
rank 0 writes (atomically).  BatchNorm statistics are per rank (as in plain DDP).

A training state (model, optimiser, generator state, learning rate, epoch, history, fixed
masks) is written atomically every ``checkpoint_every`` epochs to ``<out>.state.pt``;
``resume=True`` continues from it and gives the same weights as an uninterrupted run.  A
NaN / infinite loss or weight stops training with :class:`netgraph.errors.TrainingDiverged`.
The result is written with :func:`netgraph.save_checkpoint` in ``torch.nn.utils.prune``
format with the topology spec and the audit in its meta.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from netgraph import atomic_write, audit, graph_to_spec, save_checkpoint
from netgraph.errors import NetgraphError, TrainingDiverged

from ._config import BUILTIN_MODELS, METHODS, TrainConfig
from ._data import Dataset, load_dataset, resolve_callable
from ._models import GCN, MLP, gcn_preset
from ._pruner import Pruner, erk_allocate, erk_densities

__all__ = ["METHODS", "TrainConfig", "TrainResult", "train", "resolve_device", "build_for", "Trainer",
           "erk_densities", "erk_allocate", "choose_threads", "fit_inputs"]

SMALL_MODEL = 2_000_000  # prunable weights under which one CPU thread is the default


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
    parameters: int = 0  # all parameters of the model (prunable weights, biases, BN, attention logits)

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


def choose_threads(n_weights: int, requested: int | None = None, *, world: int = 1) -> int:
    """Set and return torch's CPU thread count.

    ``requested`` wins.  Otherwise ``OMP_NUM_THREADS`` (when set) is left as it is; a model
    under :data:`SMALL_MODEL` prunable weights gets 1 thread (its ops are too small to gain
    from more, and extra threads spin against other jobs on shared cores: measured 5–50×
    slower under load); a larger one gets the cores this process may use, divided among the
    ``world`` processes of a distributed run.
    """
    if requested is not None:
        n = int(requested)
    elif os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    elif n_weights < SMALL_MODEL:
        n = 1
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        n = max(1, cores // max(1, world))
    torch.set_num_threads(n)
    return n


def build_for(config: TrainConfig, data: Dataset, generator: torch.Generator):
    """The model a config asks for, shaped for ``data``."""
    if config.model == "gcn":
        if data.n_nodes == 0:
            raise NetgraphError(f"the GCN needs skeleton data (N, nodes, features); {data.name} is flat")
        cfg = gcn_preset(config.preset, n_nodes=data.n_nodes, in_features=data.in_features,
                         classes=data.classes, edges=data.edges)
        return GCN(cfg, generator=generator)
    if config.model == "mlp":
        flat = int(np.prod(data.x_train.shape[1:]))
        return MLP((flat, *config.mlp_hidden, data.classes), generator=generator)
    factory = resolve_callable(config.model, "--model")
    torch.manual_seed(config.seed)
    model = factory(**config.kwargs())
    if not isinstance(model, torch.nn.Module):
        raise NetgraphError(f"--model {config.model}: the factory returned {type(model).__name__}, not an nn.Module")
    return model


def fit_inputs(x: torch.Tensor, shape: tuple[int, ...] | None) -> torch.Tensor:
    """Samples ``x`` (N, ...) in the model's per-sample shape ``shape[1:]``: a reshape when the
    sizes agree; square single-channel images (8×8 digits, flat or not) are resized
    (bilinear) and repeated over ``C`` channels for a ``(C, H, W)`` input."""
    if shape is None:
        return x
    per = tuple(shape[1:])
    n = x.shape[0]
    if int(np.prod(per)) == int(np.prod(x.shape[1:])):
        return x.reshape(n, *per)
    side = math.isqrt(int(np.prod(x.shape[1:])))
    if len(per) == 3 and side * side == int(np.prod(x.shape[1:])) and per[0] in (1, 3):
        img = F.interpolate(x.reshape(n, 1, side, side), size=per[1:], mode="bilinear", align_corners=False)
        return img.expand(n, per[0], *per[1:]).contiguous()
    raise NetgraphError(f"the dataset's samples have shape {tuple(x.shape[1:])}, which does not fit the "
                        f"model's input shape {per} (--input-shape {','.join(map(str, shape))})")


def _dist():
    """``(rank, world)`` of a torchrun launch (``(0, 1)`` otherwise); initialises the group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if os.environ.get("NETGRAPH_DIST_BACKEND") == "nccl" else "gloo")
    return dist.get_rank(), dist.get_world_size()


class Trainer:
    """One run's state; :func:`train` drives it.  Exposed for tests and the ablation."""

    def __init__(self, config: TrainConfig, data: Dataset | None = None):
        self.config = cfg = config.validate()
        self.rank, self.world = _dist()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.data = data if data is not None else load_dataset(cfg.dataset, seed=cfg.data_seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.model = build_for(cfg, self.data, self.generator).to(self.device)
        self.traced = cfg.model not in BUILTIN_MODELS
        shape = cfg.input_shape
        if self.traced and shape is None:
            shape = (1, *self.data.x_train.shape[1:])
        self.input_shape = tuple(shape) if shape is not None else None
        self.x_train = fit_inputs(self.data.x_train, self.input_shape if self.traced else None).to(self.device)
        self.y_train = self.data.y_train.to(self.device)
        self.x_test = fit_inputs(self.data.x_test, self.input_shape if self.traced else None).to(self.device)
        self.y_test = self.data.y_test.to(self.device)
        self.relax_epochs = cfg.epochs - cfg.finetune
        self.pruner = Pruner(cfg.method, cfg.rate, epochs=self.relax_epochs, lam=cfg.lam, eta=cfg.eta,
                             crisp_growth=cfg.crisp_growth, gate_ratio=cfg.gate_ratio, pmp_weight=cfg.pmp_weight,
                             pmp_eps_end=cfg.pmp_eps_end, reinit=cfg.reinit)
        example = self.x_train[:1] if self.traced else None
        self.pruner.prepare(self.model, example)
        self.threads = choose_threads(self.pruner.n, cfg.threads, world=self.world)
        self.plan = self.pruner.plan
        self.n, self.c = self.pruner.n, self.pruner.c
        self.net = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.lr = cfg.lr
        self.prev_loss = math.inf
        self.epoch = 0
        self.history: list[dict] = []

    # -- views kept for tests and the ablation -------------------------------------------
    @property
    def fixed(self) -> dict[str, torch.Tensor] | None:
        return self.pruner.fixed

    @property
    def tau0(self) -> float:
        return self.pruner.tau0

    @property
    def gate_theta(self):
        return getattr(self.pruner.method, "theta", 0.0)

    def crispness(self) -> float:
        return self.pruner.crispness()

    def soft_masks(self, s: float) -> dict[str, torch.Tensor]:
        """ψ of every prunable weight for the config's method."""
        return self.pruner.method.soft(self.pruner, s)

    def crisp_masks(self) -> dict[str, torch.Tensor]:
        return self.pruner.method.crisp(self.pruner)

    def effective(self, masks):
        return self.pruner.effective(masks)

    def crisp_kept(self) -> int:
        return self.pruner.crisp_kept()

    # -- one epoch ----------------------------------------------------------------------
    def _autocast(self):
        if self.config.autocast == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run_epoch(self) -> dict:
        cfg = self.config
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr
        self.pruner.epoch = min(self.epoch, self.relax_epochs)
        n = self.x_train.shape[0]
        order = torch.randperm(n, generator=self.generator).to(self.device)
        sums: dict[str, float] = {}
        steps = 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            global_n = idx.numel()
            mine = idx[self.rank::self.world]
            with self._autocast():
                logits = self.net(self.x_train[mine]).float()
            if self.world == 1:
                ce = F.cross_entropy(logits, self.y_train[mine])
            else:  # DDP averages the ranks' gradients: this makes it the global batch's mean
                ce = F.cross_entropy(logits, self.y_train[mine], reduction="sum") * (self.world / global_n)
            terms = {"ce": ce, **self.pruner.loss_terms()}
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                raise TrainingDiverged(f"epoch {self.epoch + 1}: the loss became {float(loss.detach())} ({detail}); "
                                       f"lower the learning rate (lr={self.lr:.3g}) or λ (lam={cfg.lam})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / (self.world if k == "ce" else 1.0)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            steps += 1
        if self.world > 1:  # the epoch's loss is the global batch's, the same on every rank
            import torch.distributed as dist

            t = torch.tensor([sums["ce"]], dtype=torch.float64)
            dist.all_reduce(t)
            sums["ce"] = float(t[0])
            sums["loss"] = sum(v for k, v in sums.items() if k != "loss")
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
        if self.fixed is None and self.pruner.method.prunes:
            rec["s"] = self.crispness()
        self.epoch += 1
        self.pruner.epoch = min(self.epoch, self.relax_epochs)
        return rec

    def start_finish(self) -> None:
        self.pruner.finish()
        self.prev_loss = math.inf

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def accuracy(self, masks: Mapping[str, torch.Tensor] | None = None) -> float:
        """Test accuracy with the current masks, or with ``masks`` (crisp, by weight name)."""
        pr = self.pruner
        saved = (pr.fixed, getattr(pr, "_fixed_float", None))
        if masks is not None:
            pr.finish({n: torch.as_tensor(m) for n, m in masks.items()})
        self.model.eval()
        try:
            correct = 0
            for start in range(0, self.x_test.shape[0], 1024):
                with self._autocast():
                    pred = self.model(self.x_test[start:start + 1024]).argmax(dim=1)
                correct += int((pred == self.y_test[start:start + 1024]).sum())
        finally:
            self.model.train()
            if masks is not None:
                pr.fixed, pr._fixed_float = saved
        return correct / max(1, self.x_test.shape[0])

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
        for k in ("resume", "progress", "out", "device", "checkpoint_every", "threads"):
            mine.pop(k, None)
            theirs.pop(k, None)
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise NetgraphError(f"the training state was written with different settings ({', '.join(diff)}); "
                                "resume with the same options or start afresh without --resume")
        try:
            self.model.load_state_dict(st["model"])
            self.optimizer.load_state_dict(st["optimizer"])
            self.generator.set_state(st["generator"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise NetgraphError(f"the training state does not fit this model: {str(exc).splitlines()[0]}") from None
        self.epoch = int(st["epoch"])
        self.pruner.epoch = min(self.epoch, self.relax_epochs)
        self.lr = float(st["lr"])
        self.prev_loss = float(st["prev_loss"])
        self.history = list(st["history"])
        if st["fixed"] is not None:
            self.pruner.finish({n: m.to(self.device).bool() for n, m in st["fixed"].items()})


def _state_path(out: str) -> str:
    return out + ".state.pt"


def _save_state(path: str, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_state(path: str, device) -> dict:
    required = ("config", "epoch", "model", "optimizer", "generator", "lr", "prev_loss", "history", "fixed")
    try:
        from netgraph.io import load_state_file
    except ImportError:  # the validating loader not there: torch's safe loader
        st = torch.load(path, map_location="cpu", weights_only=True)
        missing = [k for k in required if not isinstance(st, dict) or k not in st]
        if missing:
            raise NetgraphError(f"{path}: not a training state (missing {', '.join(missing)})")
        return st
    return load_state_file(path, required=required)


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
        On every rank of a distributed run; only rank 0 writes files.
    """
    t0 = time.perf_counter()
    tr = Trainer(config, data)
    cfg = tr.config
    state_path = _state_path(cfg.out) if cfg.out else None
    if cfg.resume:
        if not state_path or not os.path.exists(state_path):
            raise NetgraphError(f"--resume: no training state at {state_path!r}; run without --resume first")
        tr.load_state(_load_state(state_path, tr.device))
    from tqdm import tqdm

    bar = tqdm(total=cfg.epochs, initial=tr.epoch, file=sys.stderr, disable=not cfg.progress or tr.rank != 0,
               desc=f"{cfg.method} rate={cfg.rate:g}", leave=False)
    try:
        while tr.epoch < cfg.epochs:
            if tr.fixed is None and tr.epoch >= tr.relax_epochs:
                tr.start_finish()
            rec = tr.run_epoch()
            tr.history.append(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3g}", kept=rec["crisp_kept"], lr=f"{rec['lr']:.2g}")
            if state_path and tr.rank == 0 and (tr.epoch % cfg.checkpoint_every == 0 or (stop_after and tr.epoch >= stop_after)):
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
    masks = {n: m.cpu() for n, m in tr.fixed.items()}
    acc = tr.accuracy()
    np_masks = {n: m.numpy() for n, m in masks.items()}
    kept = int(sum(int(m.sum()) for m in np_masks.values()))
    achieved = 1.0 - kept / tr.n
    n_params = sum(p.numel() for p in tr.model.parameters())
    if tr.traced:
        tr.pruner.squash()  # torch.nn.utils.prune format: weight_orig, weight_mask
        from netgraph.torch import trace_model

        graph = trace_model(tr.model, tr.x_train[:1]).graph
        state = {k: v.detach().cpu().clone() for k, v in tr.model.state_dict().items()}
        topology = graph_to_spec(graph)
        description = {"kind": "factory", "factory": cfg.model, "kwargs": cfg.kwargs(),
                       "input_shape": list(tr.input_shape)}
    else:
        tr.pruner.squash()
        graph = tr.model.graph(np_masks)
        state = tr.model.export_state_dict(masks)
        topology = graph_to_spec(graph, tr.model.bias_keys())
        description = tr.model.describe()
    report = audit(graph, source=cfg.out or "<trainer>").to_dict()
    path = None
    if cfg.out and finished:
        if tr.rank == 0:
            meta = {
                "method": cfg.method,
                "target_rate": float(cfg.rate),
                "achieved_rate": float(achieved),
                "accuracy": float(acc),
                "topology": topology,
                "audit": report,
                "model": description,
                "dataset": cfg.dataset,
                "config": cfg.to_dict(),
                "history": [dict(h) for h in tr.history],
                "processes": tr.world,
            }
            save_checkpoint(cfg.out, state, meta)
            sp = _state_path(cfg.out)
            if os.path.exists(sp):
                os.unlink(sp)
        path = cfg.out
    if tr.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(path, acc, float(cfg.rate), float(achieved), kept, tr.n, report, tuple(tr.history),
                       masks, time.perf_counter() - t0, n_params)
