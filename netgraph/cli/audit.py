"""``netgraph audit CKPT``: per-layer counts of kept / effective / dead / constant weights."""

from __future__ import annotations

import json
import sys

from ._options import add_format_option, add_model_options, option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "audit", help="audit a pruned checkpoint for dead connections",
        description="Audit a pruned checkpoint: which kept weights are accessible, coaccessible, "
                    "effective, dead or constant. Exit 1 with --fail-on-dead when anything is dead "
                    "(the layers that hold dead weights are named on stderr).")
    p.add_argument("path", help="state_dict file (.pt/.pth/.bin zip, or .safetensors)")
    add_format_option(p)
    option(p, "--fail-on-dead", action="store_true",
           help="exit 1 when any kept weight is dead, naming the layers and their dead counts on stderr")
    add_model_options(p, required=False)
    p.set_defaults(func=run)


def dead_summary(report, limit: int = 8) -> str:
    """``'5 dead weights in 2 layers: fc1.weight 4, fc2.weight 1'`` (the first ``limit`` layers)."""
    layers = [(layer.name, layer.dead) for layer in report.layers if layer.dead]
    shown = ", ".join(f"{name} {dead:,}" for name, dead in layers[:limit])
    more = f", +{len(layers) - limit} more layers" if len(layers) > limit else ""
    total = sum(d for _, d in layers)
    return f"{total:,} dead weight{'s' if total != 1 else ''} in {len(layers)} layer{'s' if len(layers) != 1 else ''}: {shown}{more}"


def finish(args, report) -> int:
    """Print ``report`` (text or JSON); 1 with ``--fail-on-dead`` when any weight is dead."""
    if getattr(args, "format", "text") == "json":
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report.to_text())
    if getattr(args, "fail_on_dead", False) and report.has_dead:
        print(f"netgraph: --fail-on-dead: {dead_summary(report)}", file=sys.stderr)
        return 1
    return 0


def run(args) -> int:
    if args.model:
        from netgraph.cli._model import audit_with_model

        return audit_with_model(args)
    from netgraph.errors import NetgraphError
    from netgraph.io import audit_onnx, is_onnx

    if is_onnx(args.path):  # the graph is in the file: no --model needed
        from ._options import parse_input_shape

        return finish(args, audit_onnx(args.path, input_shape=parse_input_shape(args.input_shape)))
    from netgraph.io._stream import audit_path  # streamed (issue 12): the in-memory report, in constant memory

    for flag in ("model_kwargs", "input_shape", "key_prefix"):
        if getattr(args, flag, None) is not None:
            raise NetgraphError(f"--{flag.replace('_', '-')} goes with --model (the model's code); give --model too")
    res = audit_path(args.path)
    for note in res.notes + ((f"audited in memory: {res.fallback}",) if res.fallback else ()):
        print(f"netgraph: note: {note}", file=sys.stderr)
    return finish(args, res.report)
