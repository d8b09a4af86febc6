"""``netgraph compact CKPT --model PKG.MODULE:FACTORY -o OUT``: physically remove dead units."""

from __future__ import annotations

from ._options import add_model_options, add_output_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compact", help="physically remove dead units: smaller dense layers, same outputs (needs --model)",
        description="Trace the model, zero its dead weights and remove the units (rows, columns, channels, "
                    "BatchNorm entries) whose value is zero or reaches no output. Writes the smaller model's "
                    "state_dict atomically and reports parameters before/after and the measured CPU speedup.")
    p.add_argument("path", help="input checkpoint")
    add_output_options(p)
    add_model_options(p, required=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from netgraph.cli._model import repair_with_model

    args.mode = "compact"
    args.scores = None
    return repair_with_model(args)
