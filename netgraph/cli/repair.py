"""``netgraph repair CKPT -o OUT --mode prune|reconnect|compact``."""

from __future__ import annotations

import sys

from ._options import add_model_options, add_output_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "repair", help="remove dead weights (prune), re-spend their budget (reconnect), or shrink (compact)",
        description="prune: zero every dead weight, outputs unchanged (constant-fed weights kept). "
                    "reconnect: same number of kept weights, all effective (scores = weight_orig or --scores). "
                    "compact: physically remove dead units (needs --model). Writes a new file atomically.")
    p.add_argument("path", help="input checkpoint")
    p.add_argument("--mode", choices=("prune", "reconnect", "compact"), default="prune")
    p.add_argument("--scores", metavar="FILE", help="state_dict of score tensors by weight name, for reconnect")
    add_output_options(p)
    add_model_options(p, required=False)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.model:
        from netgraph.cli._model import repair_with_model

        return repair_with_model(args)
    from netgraph.io import repair_checkpoint
    from netgraph.errors import NetgraphError

    if args.mode == "compact":
        raise NetgraphError("--mode compact removes units physically and needs the model: give --model PKG.MODULE:FACTORY")
    if args.verify:
        raise NetgraphError("--verify runs the model and needs --model PKG.MODULE:FACTORY")
    rep = repair_checkpoint(args.path, args.output, args.mode, scores_path=args.scores, force=args.force)
    r = rep.result
    if args.format == "json":
        import json

        json.dump({"output": rep.output, "mode": rep.mode, "removed": r.removed, "added": r.added,
                   "kept_before": r.kept_before, "kept_after": r.kept_after,
                   "before": rep.before.to_dict(), "after": rep.after.to_dict()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        b, a = rep.before.summary, rep.after.summary
        print(f"{rep.mode}: removed {r.removed:,} dead weights, added {r.added:,}; kept {r.kept_before:,} -> {r.kept_after:,}")
        print(f"effective {b.effective:,} -> {a.effective:,}; dead {b.dead:,} -> {a.dead:,} "
              f"(constant kept: {a.constant:,})")
        if r.kept_after < r.kept_before and rep.mode == "reconnect":
            print(f"warning: only {r.added:,} unkept weights join an accessible unit to a coaccessible one; "
                  f"{r.kept_before - r.kept_after:,} of the budget could not be re-spent", file=sys.stderr)
        print(f"wrote {rep.output}")
    return 0
