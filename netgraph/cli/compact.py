"""``netgraph compact CKPT --model MODULE:FACTORY -o OUT``: physically remove dead units."""

from __future__ import annotations

from .repair import add_repair_options, report


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compact", help="physically remove dead units: smaller dense layers, same outputs (needs --model)",
        description="Trace the model, zero its dead weights and remove the units (rows, columns, channels, "
                    "BatchNorm entries) whose value is zero or reaches no output. Writes the smaller model's "
                    "state_dict atomically, in the input's format, container and keys (its widths are "
                    "smaller: build the model with the new widths to load it), and reports parameters "
                    "before/after and the measured CPU speedup.")
    add_repair_options(p, with_mode=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from netgraph.cli._model import repair_with_model

    args.mode = "compact"
    args.scores = args.new_values = None
    return report(args, repair_with_model(args))
