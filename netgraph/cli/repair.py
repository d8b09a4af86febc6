"""``netgraph repair CKPT -o OUT --mode prune|reconnect|compact``.

One front end for both paths: with ``--model`` the model is traced
(:func:`netgraph.cli._model.repair_with_model`), without it the graph comes from the file
(:func:`netgraph.io.repair_checkpoint`).  Both check the output place first
(:func:`netgraph.io.output_path`), write through the same writer
(:func:`netgraph.io._repair.write_like`: same format, container and keys as the input)
and report the same way (:func:`report`).
"""

from __future__ import annotations

import json
import sys

from ._options import add_format_option, add_model_options, add_output_options, option

MODES = ("prune", "reconnect", "compact")

SCORES_HELP = ("for reconnect: a state_dict file of score tensors by weight name, each of its weight's shape; "
               "the scores choose which connections are added (the largest |score| wins, compared across "
               "layers); omitted: |X_orig| of torch's prune format")
NEW_VALUES_HELP = ("for reconnect: the values the added weights get: 'orig' = X_orig of the prune format "
                   "(the dense weights it keeps; plain weights have none), 'scores' = the score tensors' "
                   "values, or FILE = a state_dict of value tensors by weight name (e.g. the dense "
                   "weights before pruning)")


def add_repair_options(p, *, with_mode: bool = True) -> None:
    """The options of ``repair`` (and, without ``--mode``, of ``compact``), defined once."""
    from netgraph.io import repair_checkpoint
    from ._options import default_of

    p.add_argument("path", help="input checkpoint (.pt/.pth/.bin zip or .safetensors)")
    if with_mode:
        option(p, "--mode", choices=MODES, default=default_of(repair_checkpoint, "mode"),
               help="prune: zero every dead weight, outputs unchanged; reconnect: same number of kept "
                    "weights, all effective; compact: remove dead units physically (needs --model)")
        option(p, "--scores", metavar="FILE", default=None, help=SCORES_HELP)
        option(p, "--new-values", metavar="orig|scores|FILE", default="orig", help=NEW_VALUES_HELP)
    add_output_options(p)
    add_format_option(p)
    add_model_options(p, required=not with_mode)
    option(p, "--verify", action="store_true",
           help="with --model: check the outputs did not change (float64, 1e-9 relative); nothing is "
                "written if they did")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "repair", help="remove dead weights (prune), re-spend their budget (reconnect), or shrink (compact)",
        description="prune: zero every dead weight, outputs unchanged (constant-fed weights kept). "
                    "reconnect: same number of kept weights, all effective. compact: physically remove "
                    "dead units (needs --model). OUT has the input's format, container and keys, so "
                    "whatever loaded the input loads OUT; it is written atomically and never over the input.")
    add_repair_options(p)
    p.set_defaults(func=run)


def report(args, rep) -> int:
    """Print a :class:`netgraph.io.CheckpointRepair` (text or JSON); notes go to stderr."""
    for note in rep.notes:
        print(f"netgraph: {note if note.startswith(('warning', 'note')) else 'note: ' + note}", file=sys.stderr)
    if getattr(args, "format", "text") == "json":
        json.dump(rep.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    b, a = rep.before.summary, rep.after.summary
    lines = [f"{rep.mode}: removed {rep.removed:,} weights, added {rep.added:,}; kept {b.kept:,} -> {a.kept:,}; "
             f"effective {b.effective:,} -> {a.effective:,}; dead {b.dead:,} -> {a.dead:,} "
             f"(constant kept: {a.constant:,})"]
    c = rep.extra.get("compact")
    if c:
        lines.append(f"parameters {c['params_before']:,} -> {c['params_after']:,}; measured CPU speedup "
                     f"{c['speedup']:.2f}x ({1e3 * c['seconds_before']:.3f} ms -> {1e3 * c['seconds_after']:.3f} ms, "
                     "median)")
    if "max_relative_difference" in rep.extra:
        lines.append(f"verified: largest relative output difference {rep.extra['max_relative_difference']:.3g} "
                     "(tolerance 1e-09)")
    lines.append(f"wrote {rep.output}")
    print("\n".join(lines))
    return 0


def run(args) -> int:
    from netgraph.errors import NetgraphError

    if args.model:
        from netgraph.cli._model import repair_with_model

        return report(args, repair_with_model(args))
    from netgraph.io import is_onnx, repair_checkpoint, repair_onnx

    if is_onnx(args.path):  # the graph is in the file: no --model needed
        from ._options import parse_input_shape

        return report(args, repair_onnx(args.path, args.output, args.mode, force=args.force,
                                        input_shape=parse_input_shape(args.input_shape)))
    if args.mode == "compact":
        raise NetgraphError("--mode compact removes units physically and needs the model: give --model MODULE:FACTORY")
    for flag in ("verify", "model_kwargs", "input_shape", "key_prefix"):
        if getattr(args, flag, None):
            raise NetgraphError(f"--{flag.replace('_', '-')} goes with --model (the model's code); give --model too")
    rep = repair_checkpoint(args.path, args.output, args.mode, scores_path=args.scores,
                            new_values=args.new_values, force=args.force)
    return report(args, rep)
