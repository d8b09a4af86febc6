"""`netgraph train`: prune a model while training it (MP, MP+TC, CTF, coarse, fine, PMP).

The model is the built-in GCN or MLP, or any torch.fx-traceable module
(``--model pkg.module:factory --input-shape 1,1,8,8``); the data is a built-in set or
``--dataset pkg.module:loader``.  Writes a checkpoint in torch's prune format
(``<param>_orig`` + ``<param>_mask``) whose meta holds the method, the target and achieved
rates, the topology spec and the audit, so ``netgraph audit FILE`` reads it directly.  The
result summary goes to stdout (text or JSON), the progress bar to stderr.

Many processes: ``torchrun --standalone --nproc-per-node N -m netgraph train ...`` (DistributedDataParallel;
gloo on CPU); only rank 0 writes.  Options and their defaults come from ``trainer.TrainConfig``.
"""

from __future__ import annotations

import argparse

from trainer import METHODS  # noqa: F401  (torch-free: trainer's package is lazy; a test checks the names)

from ._options import add_model_options, option


def _type_of(f) -> tuple[type, bool]:
    """``(element type, is a tuple)`` of a TrainConfig field's annotation (a string under PEP 563)."""
    ann = str(f.type)
    is_tuple = ann.startswith("tuple")
    for name, t in (("int", int), ("float", float), ("str", str), ("bool", bool)):
        if (ann.startswith(f"tuple[{name}") if is_tuple else ann.split(" ")[0].startswith(name)):
            return t, is_tuple
    return str, is_tuple


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return out


def add_parser(sub) -> None:
    from trainer import TrainConfig, config_fields  # torch-free

    p = sub.add_parser("train", help="train a pruned model (built-in GCN / MLP or any traceable nn.Module) with "
                                     "MP, MP+TC, CTF, coarse, fine or PMP and save an auditable checkpoint",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p, required=False)
    p.set_defaults(model_default=TrainConfig.model)
    option(p, "--out", required=True, default=None, metavar="OUT",
           help="checkpoint to write (.pt / .safetensors): a new regular file in an existing folder, written "
                "atomically when training ends (the training state goes to OUT.state.pt)")
    option(p, "--force", action="store_true", help="replace OUT when it exists")
    for f, help_, extra in config_fields():
        flag = "--" + f.name.replace("_", "-")
        t, is_tuple = _type_of(f)
        if t is bool:
            option(p, flag, action="store_true", help=help_)
            continue
        kw = dict(default=f.default, help=help_, dest=f.name)
        if is_tuple:
            kw.update(type=_int_tuple, metavar="N,N,...", default=",".join(map(str, f.default)))
        else:
            kw["type"] = t
        if "choices" in extra:
            kw["choices"] = extra["choices"]
        option(p, flag, **kw)
    option(p, "--keep-init", action="store_true",
           help="keep a PKG.MODULE:FACTORY model's own weights (e.g. trained ones) instead of re-drawing them as "
                "N(0, 1) latents with He scales, as the built-in models are (TrainConfig.reinit)")
    option(p, "--no-progress", action="store_true", help="no progress bar")
    option(p, "--format", choices=("text", "json"), default="text", help="summary format on stdout")
    p.set_defaults(func=run)


def config_from_args(args):
    """The :class:`trainer.TrainConfig` that ``args`` describe."""
    from trainer import TrainConfig, config_fields

    from ._options import parse_input_shape

    kw = {}
    for f, _, _ in config_fields():
        v = getattr(args, f.name)
        if isinstance(v, str) and f.name == "mlp_hidden":
            v = _int_tuple(v)
        kw[f.name] = v
    model = args.model or TrainConfig.model
    shape = parse_input_shape(getattr(args, "input_shape", None))
    return TrainConfig(model=model, out=args.out, progress=not args.no_progress, input_shape=shape,
                       reinit=not args.keep_init,
                       model_kwargs=getattr(args, "model_kwargs", None), **kw)


def run(args) -> int:
    import json

    from trainer import train

    from ..io import output_path

    cfg = config_from_args(args).validate()
    output_path(cfg.out, force=args.force or cfg.resume)  # checked before any training
    res = train(cfg)
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports
        return 0
    s = res.audit["summary"]
    summary = {"checkpoint": res.checkpoint, "method": cfg.method, "target_rate": cfg.rate,
               "achieved_rate": res.achieved_rate, "kept": res.kept, "prunable": res.prunable,
               "parameters": res.parameters,
               "effective": s["effective"], "dead": s["dead"], "accuracy": res.accuracy,
               "seconds": round(res.seconds, 2)}
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        pct = 100.0 * s["effective"] / s["kept"] if s["kept"] else 0.0
        what = cfg.preset if cfg.model == "gcn" else cfg.model
        print(f"trained {cfg.model if cfg.model in ('gcn', 'mlp') else 'model'} ({what}) on {cfg.dataset} with {cfg.method}: "
              f"{res.parameters:,} parameters, {res.prunable:,} prunable weights, kept {res.kept:,} (rate {100 * res.achieved_rate:.2f}%, "
              f"target {100 * cfg.rate:.2f}%)")
        print(f"effective {s['effective']:,} ({pct:.2f}% of kept), dead {s['dead']:,}; "
              f"test accuracy {100 * res.accuracy:.2f}%; {res.seconds:.1f}s")
        print(f"wrote {res.checkpoint}")
    return 0

