"""Argparse options shared by the commands that write a repaired checkpoint (repair, compact)."""

from __future__ import annotations


def add_output_options(p) -> None:
    """``-o/--output``, ``--force``, ``--format``."""
    p.add_argument("-o", "--output", required=True, help="output file (never the input unless --force)")
    p.add_argument("--force", action="store_true", help="allow writing over an existing file, the input included")
    p.add_argument("--format", choices=("text", "json"), default="text")


def add_model_options(p, *, required: bool) -> None:
    """``--model``, ``--input-shape``, ``--verify`` (the model-aware path, netgraph.cli._model)."""
    p.add_argument("--model", required=required, metavar="PKG.MODULE:FACTORY", help="model code to trace")
    p.add_argument("--input-shape", metavar="1,3,224,224", help="example input shape for --model")
    p.add_argument("--verify", action="store_true",
                   help="with --model: check the outputs did not change (float64, 1e-9 relative)")
