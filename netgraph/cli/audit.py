"""``netgraph audit CKPT``: per-layer counts of kept / effective / dead / constant weights."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "audit", help="audit a pruned checkpoint for dead connections",
        description="Audit a pruned checkpoint: which kept weights are accessible, coaccessible, "
                    "effective, dead or constant. Exit 1 with --fail-on-dead when anything is dead.")
    p.add_argument("path", help="state_dict file (.pt/.pth/.bin zip, or .safetensors)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--fail-on-dead", action="store_true", help="exit 1 when any kept weight is dead")
    p.add_argument("--model", metavar="PKG.MODULE:FACTORY", help="model code to trace (exact DAG for any architecture)")
    p.add_argument("--input-shape", metavar="1,3,224,224", help="example input shape for --model")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.model:
        from netgraph.cli._model import audit_with_model

        return audit_with_model(args)
    from netgraph import audit, graph_from_checkpoint, load_checkpoint

    ckpt = load_checkpoint(args.path)
    report = audit(graph_from_checkpoint(ckpt), source=args.path)
    if args.format == "json":
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report.to_text())
    return 1 if args.fail_on_dead and report.has_dead else 0
