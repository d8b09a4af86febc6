"""`netgraph ablate`: tc-pruning Table 2 and coarse-to-fine Tables 3–4 on the skeleton GCNs.

For each dataset and each of --seeds seeds: the unpruned baseline; per rate of --tc-rates:
MP w/o TC, MP w TC (and, unless --no-extra, PMP and MP + netgraph's reconnect): kept
weights, % effective, accuracy; per rate of --ctf-rates: coarse, fine and CTF: accuracy and
measured speedup.  Tables give mean ± sd over the seeds.  Writes ablation.json (every run and
the per-cell summary), ablation.md and ablation.png (% effective and accuracy vs rate, mean ±
sd error bars, dense and chance lines, a row of panels per dataset) into --out, which must
be new or empty (--force replaces it); the tables also go to stdout.
"""

from __future__ import annotations

import argparse

from ._options import option

# The defaults of trainer.AblationConfig (a test checks they agree; importing trainer here
# would load torch for every `netgraph --help`).
DEFAULTS = {"datasets": ("synthetic-sbu", "synthetic-fpha"), "tc_rates": (0.5, 0.75, 0.88, 0.95, 0.99, 0.995),
            "ctf_rates": (0.9, 0.95, 0.98), "epochs": 40, "seed": 0, "seeds": 3, "lr": 0.03, "batch_size": 64,
            "device": "auto"}


# Legend names of trainer's methods (the tables' words).
LABELS = {"mp": "MP w/o TC", "mp-tc": "MP w TC", "pmp": "PMP (ours)", "mp+reconnect": "MP + reconnect (ours)",
          "coarse": "coarse (structured)", "fine": "fine (unstructured)", "ctf": "coarse-to-fine", "dense": "dense GCN"}


def _rates(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates like 0.5,0.9, got {text!r}") from None
    if not vals or not all(0.0 < v < 1.0 for v in vals):
        raise argparse.ArgumentTypeError(f"rates must be in (0, 1), got {text!r}")
    return vals


def _joined(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def add_parser(sub) -> None:
    p = sub.add_parser("ablate", help="reproduce the papers' ablation tables, mean ± sd over seeds "
                                      "(MP vs MP+TC; coarse/fine/CTF)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DEFAULTS
    option(p, "--datasets", default=_joined(d["datasets"]), metavar="LIST",
           help="comma-separated: synthetic-sbu, synthetic-fpha, fpha:DIR, sbu:DIR")
    option(p, "--tc-rates", type=_rates, default=_joined(d["tc_rates"]), metavar="RATES",
           help="pruning rates (fractions) of the MP vs MP+TC table, comma-separated")
    option(p, "--ctf-rates", type=_rates, default=_joined(d["ctf_rates"]), metavar="RATES",
           help="pruning rates (fractions) of the coarse / fine / CTF table, comma-separated")
    option(p, "--epochs", type=int, default=d["epochs"], metavar="N", help="training epochs per run")
    option(p, "--seed", type=int, default=d["seed"], metavar="S", help="first seed")
    option(p, "--seeds", type=int, default=d["seeds"], metavar="N",
           help="runs per cell, seeds S, S+1, ..., S+N-1; tables and figures give mean ± sd")
    option(p, "--lr", type=float, default=d["lr"], metavar="LR", help="initial learning rate (Adam)")
    option(p, "--batch-size", type=int, default=d["batch_size"], metavar="B", help="minibatch size")
    option(p, "--device", default=d["device"], metavar="DEV", help="auto (CUDA when present), cpu or cuda[:N]")
    option(p, "--no-extra", action="store_true", help="skip our rows (PMP, MP + reconnect)")
    option(p, "--no-progress", action="store_true", help="no progress bars on stderr")
    option(p, "--out", required=True, metavar="DIR",
           help="output folder for ablation.json, ablation.md and ablation.png; must be new or empty")
    option(p, "--force", action="store_true", help="replace a non-empty --out folder (only after success)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    import sys

    from netgraph.errors import NetgraphError
    from netgraph.io import atomic_dir, output_dir

    if args.epochs < 2:
        raise NetgraphError(f"--epochs must be at least 2, got {args.epochs}")
    if args.seeds < 1:
        raise NetgraphError(f"--seeds must be at least 1, got {args.seeds}")
    out = output_dir(args.out, force=args.force)  # refused before any training
    from trainer import AblationConfig, ablation_markdown, run_ablation, write_ablation

    cfg = AblationConfig(datasets=tuple(d for d in args.datasets.split(",") if d), tc_rates=args.tc_rates,
                         ctf_rates=args.ctf_rates, epochs=args.epochs, seed=args.seed, seeds=args.seeds,
                         device=args.device, extra=not args.no_extra, lr=args.lr, batch_size=args.batch_size,
                         progress=not args.no_progress)
    result = run_ablation(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))

    def write(tmp: str) -> None:
        jp, _ = write_ablation(result, tmp)
        _plots(jp, tmp)

    atomic_dir(out, write, force=args.force)
    print(ablation_markdown(result))
    names = ("ablation.json", "ablation.md", "ablation.png")
    print("wrote " + ", ".join(os.path.join(out, n) for n in names))
    return 0


def _plots(json_path: str, out_dir: str) -> list[str]:
    """``ablation.png``: % effective and accuracy vs rate, mean ± sd, a row per dataset."""
    import os

    import viz

    fig = viz.plot_ablation(viz.load_ablation(json_path), labels=LABELS)
    return [viz.save_figure(fig, os.path.join(out_dir, "ablation.png"))]
