"""`netgraph ablate`: tc-pruning Table 2 and coarse-to-fine Tables 3–4 on the skeleton GCNs.

For each dataset: the unpruned baseline; per rate of ``--tc-rates``: MP w/o TC, MP w TC
(and, unless ``--no-extra``, PMP and MP + post-hoc reconnect): kept weights, % effective,
accuracy; per rate of ``--ctf-rates``: coarse, fine and CTF: accuracy and measured speedup.
Writes ``ablation.json``, ``ablation.md`` and the curves (``ablation.png``: % effective and accuracy
vs rate, a line per method, a row of panels per dataset) to ``--out``; the tables also go to stdout.
"""

from __future__ import annotations

import argparse


def _rates(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates like 0.5,0.9, got {text!r}") from None
    if not vals or not all(0.0 < v < 1.0 for v in vals):
        raise argparse.ArgumentTypeError(f"rates must be in (0, 1), got {text!r}")
    return vals


def add_parser(sub) -> None:
    p = sub.add_parser("ablate", help="reproduce the papers' ablation tables (MP vs MP+TC; coarse/fine/CTF)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="synthetic-sbu,synthetic-fpha",
                   help="comma-separated: synthetic-sbu, synthetic-fpha, fpha:DIR, sbu:DIR")
    p.add_argument("--tc-rates", type=_rates, default=(0.5, 0.75, 0.88, 0.95, 0.99, 0.995))
    p.add_argument("--ctf-rates", type=_rates, default=(0.9, 0.95, 0.98))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-extra", action="store_true", help="skip our rows (PMP, MP + reconnect)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output folder for ablation.json and ablation.md")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from netgraph.errors import NetgraphError
    from trainer import AblationConfig, ablation_markdown, run_ablation, write_ablation

    if args.epochs < 2:
        raise NetgraphError(f"--epochs must be at least 2, got {args.epochs}")
    cfg = AblationConfig(datasets=tuple(d for d in args.datasets.split(",") if d), tc_rates=args.tc_rates,
                         ctf_rates=args.ctf_rates, epochs=args.epochs, seed=args.seed, device=args.device,
                         extra=not args.no_extra, lr=args.lr, batch_size=args.batch_size,
                         progress=not args.no_progress)
    result = run_ablation(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    jp, mp = write_ablation(result, args.out)
    plots = _plots(jp, args.out)
    print(ablation_markdown(result))
    print(f"wrote {jp}, {mp}" + "".join(f", {p}" for p in plots))
    return 0


def _plots(json_path: str, out_dir: str) -> list[str]:
    """``ablation.png``: % effective and accuracy vs rate, a line per method, a row per dataset."""
    import os

    import matplotlib.pyplot as plt

    import viz

    fig = viz.plot_ablation(viz.load_ablation(json_path))
    try:
        return [viz.save_figure(fig, os.path.join(out_dir, "ablation.png"))]
    finally:
        plt.close(fig)
