"""``netgraph compact CKPT --model PKG.MODULE:FACTORY -o OUT``: physically remove dead units."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compact", help="physically remove dead units: smaller dense layers, same outputs (needs --model)",
        description="Trace the model, zero its dead weights and remove the units (rows, columns, channels, "
                    "BatchNorm entries) whose value is zero or reaches no output. Writes the smaller model's "
                    "state_dict atomically and reports parameters before/after and the measured CPU speedup.")
    p.add_argument("path", help="input checkpoint")
    p.add_argument("--model", required=True, metavar="PKG.MODULE:FACTORY", help="model code to trace")
    p.add_argument("-o", "--output", required=True, help="output file (never the input unless --force)")
    p.add_argument("--input-shape", metavar="1,3,224,224", help="example input shape")
    p.add_argument("--verify", action="store_true", help="check the outputs did not change (float64, 1e-9 relative)")
    p.add_argument("--force", action="store_true", help="allow replacing an existing output file")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args) -> int:
    from netgraph._model_cli import repair_with_model

    args.mode = "compact"
    args.scores = None
    return repair_with_model(args)
