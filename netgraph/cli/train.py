"""`netgraph train`: prune a model while training it (MP, MP+TC, CTF, coarse, fine, PMP).

Writes a checkpoint in torch's prune format (``<param>_orig`` + ``<param>_mask``) whose meta
holds the method, the target and achieved rates, the topology spec and the audit, so
``netgraph audit FILE`` reads it directly.  The result summary goes to stdout (text or
JSON), the progress bar to stderr.
"""

from __future__ import annotations

import argparse

# Same names as trainer.METHODS (a test checks it); spelled out here so that building the
# parser does not import torch.
METHODS = ("mp", "mp-tc", "ctf", "coarse", "fine", "pmp", "dense")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a pruned GCN / MLP (MP, MP+TC, CTF, PMP) and save an auditable checkpoint",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("gcn", "mlp"), default="gcn")
    p.add_argument("--preset", choices=("sbu", "fpha"), default="sbu", help="GCN size (default: sbu)")
    p.add_argument("--dataset", default="synthetic-sbu",
                   help="synthetic-sbu, synthetic-fpha, fpha:DIR, sbu:DIR or digits (default: synthetic-sbu)")
    p.add_argument("--method", choices=METHODS, default="mp-tc")
    p.add_argument("--rate", type=float, default=0.9, help="fraction of prunable weights to remove, in (0, 1)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="epochs with crisp, fixed masks at the end (default: epochs // 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic datasets / digits split")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda[:N]")
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lam", type=float, default=1.0, help="budget weight λ (relative to the budget c)")
    p.add_argument("--eta", type=float, default=1.0, help="TC mixing weight η")
    p.add_argument("--checkpoint-every", type=int, default=10, help="write <out>.state.pt every N epochs")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.state.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from trainer import TrainConfig, train

    cfg = TrainConfig(model=args.model, preset=args.preset, dataset=args.dataset, method=args.method,
                      rate=args.rate, epochs=args.epochs, seed=args.seed, device=args.device, out=args.out,
                      resume=args.resume, lr=args.lr, batch_size=args.batch_size, lam=args.lam, eta=args.eta,
                      finetune_epochs=args.finetune_epochs, checkpoint_every=args.checkpoint_every,
                      data_seed=args.data_seed, progress=not args.no_progress)
    res = train(cfg)
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
        print(f"trained {cfg.model} ({cfg.preset if cfg.model == 'gcn' else 'mlp'}) on {cfg.dataset} with {cfg.method}: "
              f"{res.parameters:,} parameters, {res.prunable:,} prunable weights, kept {res.kept:,} (rate {100 * res.achieved_rate:.2f}%, "
              f"target {100 * cfg.rate:.2f}%)")
        print(f"effective {s['effective']:,} ({pct:.2f}% of kept), dead {s['dead']:,}; "
              f"test accuracy {100 * res.accuracy:.2f}%; {res.seconds:.1f}s")
        print(f"wrote {res.checkpoint}")
    return 0
