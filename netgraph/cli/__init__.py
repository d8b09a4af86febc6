"""The ``netgraph`` command: the composition root of netgraph, trainer and viz.

Each subcommand lives in ``netgraph/cli/<name>.py`` and exposes
``add_parser(subparsers)`` (argparse only, no heavy import) and ``run(args) -> int``
(imports what it needs).  Exit codes: 0 ok, 1 problems found (dead weights with
``--fail-on-dead``, a failed ``--verify``), 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import NetgraphError, VerificationFailed

__all__ = ["main", "COMMANDS", "one_line"]

# Order = order in --help.
COMMANDS = ("audit", "repair", "compact", "plot", "train", "ablate", "demo", "bench")


MAX_MESSAGE = 500  # characters of an error line; longer ones keep their start and their end


def one_line(message: object, limit: int = MAX_MESSAGE) -> str:
    """An error message as one readable line: whitespace runs (newlines included) become
    one space; past ``limit`` characters the middle is cut (the start says what and which
    rule, the end says the fix), and the line says how much was cut."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 4
    return f"{text[:head]} [... {len(text) - head - tail:,} characters cut; --debug shows all ...] {text[-tail:]}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netgraph",
        description="Audit, repair, train and draw pruned neural networks as layered DAGs.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"netgraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"netgraph.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (tests call this directly)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except VerificationFailed as exc:
        if args.debug:
            raise
        print(f"netgraph: verification failed: {one_line(exc)}", file=sys.stderr)
        return 1
    except NetgraphError as exc:
        if args.debug:
            raise
        print(f"netgraph: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `netgraph audit ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("netgraph: interrupted", file=sys.stderr)
        return 130
