"""Argparse options shared by the commands, each defined once.

=============================  ==================================================
``add_output_options``         ``-o/--output``, ``--force`` (the output contract)
``add_format_option``          ``--format text|json``
``add_model_options``          ``--model``, ``--model-kwargs``, ``--input-shape``,
                               ``--key-prefix`` (audit, repair, compact, plot)
``add_input_shape_option``     ``--input-shape`` alone
``parse_input_shape``          ``"1,3,224,224"`` → ``(1, 3, 224, 224)``
``option``                     ``add_argument`` whose help line shows the default
=============================  ==================================================

Defaults come from one place: the library function's own signature where there is one
(:func:`default_of`), so ``--help`` and the Python API cannot drift apart.  Every help
line ends with the default.  Only argparse and inspect are imported at load time.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any, Callable

from ..errors import NetgraphError

__all__ = ["add_output_options", "add_format_option", "add_model_options", "add_input_shape_option",
           "parse_input_shape", "option", "default_of", "MAX_INPUT_ELEMENTS"]

# An example input larger than this is refused before anything is allocated (the trace
# runs the model once on it): 2**28 float32 values are 1 GiB.
MAX_INPUT_ELEMENTS = 2**28


def default_of(func: Callable, name: str) -> Any:
    """The default of parameter ``name`` of ``func`` (the one source of a CLI default)."""
    return inspect.signature(func).parameters[name].default


def option(p: argparse.ArgumentParser, *flags: str, help: str, **kwargs) -> argparse.Action:
    """``p.add_argument(*flags, help=...)`` with the default appended to the help line.

    Flags (``store_true``) read "(default: off)"; options without a default say what
    happens when they are omitted in their own help text and get "(default: none)".
    """
    action = kwargs.get("action")
    if action == "store_true":
        tail = "(default: off)"
    elif kwargs.get("required"):
        tail = "(required)"
    elif kwargs.get("default") is None:
        tail = "" if "omitted:" in help else "(default: none)"
    else:
        tail = "(default: %(default)s)"
    return p.add_argument(*flags, help=f"{help} {tail}".rstrip(), **kwargs)


def add_format_option(p) -> None:
    """``--format text|json``."""
    option(p, "--format", choices=("text", "json"), default="text", help="output format on stdout")


def add_output_options(p, *, required: bool = True, flags: tuple[str, ...] = ("-o", "--output"),
                       what: str = "output file") -> None:
    """``-o/--output`` and ``--force``: the output contract (:func:`netgraph.io.output_path`)."""
    option(p, *flags, required=required, metavar="OUT", default=None,
           help=f"{what}: a new regular file in an existing folder; never the input, never a "
                "directory, device or FIFO")
    option(p, "--force", action="store_true", help="replace OUT when it exists (never the input)")


def add_input_shape_option(p) -> None:
    """``--input-shape 1,3,224,224``: the example input the model is traced with."""
    option(p, "--input-shape", metavar="N,C,H,W", default=None,
           help="example input shape for --model, comma-separated (e.g. 1,3,224,224); omitted: "
                "(1, in_features) when the model starts with a Linear layer")


def add_model_options(p, *, required: bool = False) -> None:
    """``--model``, ``--model-kwargs``, ``--input-shape``, ``--key-prefix`` (netgraph.cli._model)."""
    option(p, "--model", required=required, metavar="SPEC", default=None,
           help="the model's code, traced for the exact graph: module:factory (a module in the current "
                "folder or installed, e.g. mymodels:make_cnn) or path/to/file.py:factory; the factory "
                "returns the nn.Module the checkpoint was saved from")
    option(p, "--model-kwargs", metavar="JSON", default=None,
           help="keyword arguments for the factory as a JSON object, e.g. '{\"num_classes\": 10}'")
    add_input_shape_option(p)
    option(p, "--key-prefix", metavar="PREFIX", default=None,
           help="strip PREFIX from the checkpoint's keys before matching them to the model (e.g. "
                "'net.'); omitted: the wrappers state_dict/model/model_state_dict and the prefixes "
                "module./_orig_mod./model. are recognised when that makes the keys fit")


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,3,224,224"`` → ``(1, 3, 224, 224)`` (``x`` is accepted as separator too).

    Raises
    ------
    NetgraphError
        Not positive integers, or more than ``MAX_INPUT_ELEMENTS`` elements (the trace
        would allocate it).
    """
    if text is None:
        return None
    parts = text.replace("x", ",").replace("X", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1 or len(shape) > 8:
        raise NetgraphError(f"--input-shape {text!r} must be 1 to 8 positive integers separated by commas, "
                            "e.g. 1,3,224,224")
    n = 1
    for d in shape:
        n *= d
    if n > MAX_INPUT_ELEMENTS:
        raise NetgraphError(f"--input-shape {text!r} has {n:,} elements, over the limit of "
                            f"{MAX_INPUT_ELEMENTS:,}; tracing needs one example input, a small one will do "
                            "(batch 1, the real spatial size)")
    return shape
