"""The training configuration: one dataclass, the one source of defaults and help texts.

``netgraph train``'s options are generated from :class:`TrainConfig`'s fields (their
``metadata["help"]``), so the CLI and the Python API cannot drift apart.  This module imports
no torch (the CLI builds its parser from it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from netgraph.errors import NetgraphError

__all__ = ["METHODS", "BUILTIN_MODELS", "TrainConfig", "config_fields"]

METHODS = ("mp", "mp-tc", "ctf", "coarse", "fine", "pmp", "dense")
BUILTIN_MODELS = ("gcn", "mlp")


def _f(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on (plain values, so it is stored in checkpoints).

    ``lam`` is λ of the budget (relative to the budget ``c``), ``eta`` the TC mixing weight,
    ``pmp_weight`` μ, ``gate_ratio`` ρ of the CTF gates, ``crisp_growth`` the factor by which
    ``s`` grows over the relaxed phase.  ``finetune_epochs`` defaults to a fifth of ``epochs``.
    ``model`` is ``gcn``, ``mlp`` or ``pkg.module:factory`` (any torch.fx-traceable module, with
    ``input_shape`` and ``model_kwargs``).
    """

    model: str = _f("gcn", "gcn, mlp, or PKG.MODULE:FACTORY (any torch.fx-traceable nn.Module)", cli=False)
    preset: str = _f("sbu", "GCN size", choices=("sbu", "fpha"))
    dataset: str = _f("synthetic-sbu", "synthetic-sbu, synthetic-fpha, fpha:DIR, sbu:DIR, digits, or "
                      "PKG.MODULE:LOADER (returns (x_train, y_train, x_test, y_test) or (train, test))")
    method: str = _f("mp-tc", "pruning method", choices=METHODS)
    rate: float = _f(0.9, "fraction of prunable weights to remove, in (0, 1)")
    epochs: int = _f(60, "training epochs (relaxed phase + fine-tuning)")
    seed: int = _f(0, "seed of the initialisation and the batch order")
    device: str = _f("auto", "auto (CUDA when present), cpu, cuda[:N]")
    out: str | None = _f(None, "checkpoint to write (.pt / .safetensors)", cli=False)
    resume: bool = _f(False, "continue from <out>.state.pt")
    lr: float = _f(0.02, "Adam learning rate on the standardized latent weights")
    batch_size: int = _f(64, "global batch size (split across processes under torchrun)")
    lam: float = _f(1.0, "budget weight λ (relative to the budget c)")
    eta: float = _f(1.0, "TC mixing weight η (mp-tc)")
    crisp_growth: float = _f(30.0, "factor by which the band-stop crispness s grows over the relaxed phase")
    gate_ratio: float = _f(0.5, "ρ of the CTF gates: a group kept at less than ρ × the target density closes")
    pmp_weight: float = _f(0.01, "μ, the weight of PMP's divergence")
    pmp_eps_end: float = _f(0.05, "PMP's final spike squeeze ε")
    finetune_epochs: int | None = _f(None, "epochs with crisp, fixed masks at the end (omitted: epochs // 5)")
    checkpoint_every: int = _f(10, "write <out>.state.pt every N epochs")
    data_seed: int = _f(0, "seed of the synthetic datasets / digits split")
    mlp_hidden: tuple[int, ...] = _f((128, 64), "hidden widths of the built-in MLP, comma-separated")
    input_shape: tuple[int, ...] | None = _f(None, "example input shape of a PKG.MODULE:FACTORY model", cli=False)
    model_kwargs: str | None = _f(None, "factory keyword arguments (JSON object)", cli=False)
    reinit: bool = _f(True, "a PKG.MODULE:FACTORY model's weights are re-drawn as N(0, 1) latents (in their "
                      "initial order) with He scales, as the built-in models'; --keep-init keeps them", cli=False)
    threads: int | None = _f(None, "torch CPU threads (omitted: 1 for models under 2 M weights, else torch's "
                             "default; OMP_NUM_THREADS is respected)")
    autocast: str = _f("none", "mixed precision of the forward pass on CUDA", choices=("none", "bf16"))
    progress: bool = _f(True, "progress bar on stderr", cli=False)

    def validate(self) -> "TrainConfig":
        if self.method not in METHODS:
            raise NetgraphError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.model not in BUILTIN_MODELS and ":" not in self.model:
            raise NetgraphError(f"unknown model {self.model!r}; choose gcn, mlp or pkg.module:factory")
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
        if self.threads is not None and self.threads < 1:
            raise NetgraphError(f"threads must be at least 1, got {self.threads}")
        if self.autocast not in ("none", "bf16"):
            raise NetgraphError(f"autocast must be none or bf16, got {self.autocast!r}")
        if self.model_kwargs is not None:
            self.kwargs()
        return self

    def kwargs(self) -> dict:
        """``model_kwargs`` parsed (a JSON object)."""
        if self.model_kwargs is None:
            return {}
        try:
            kw = json.loads(self.model_kwargs)
        except (ValueError, RecursionError) as exc:
            raise NetgraphError(f"--model-kwargs is not JSON: {exc}") from None
        if not isinstance(kw, dict):
            raise NetgraphError(f"--model-kwargs must be a JSON object, got {type(kw).__name__}")
        return kw

    @property
    def finetune(self) -> int:
        return self.epochs // 5 if self.finetune_epochs is None else int(self.finetune_epochs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mlp_hidden"] = list(self.mlp_hidden)
        d["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        return d


def config_fields():
    """``(field, help, extra)`` of the fields that become ``netgraph train`` options."""
    for f in fields(TrainConfig):
        if f.metadata.get("cli", True):
            extra = {k: v for k, v in f.metadata.items() if k not in ("help", "cli")}
            yield f, f.metadata["help"], extra
