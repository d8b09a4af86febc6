"""A graph's topology as plain data, so a checkpoint can carry it and be audited exactly
without model code (and without unpickling anything).

The spec holds everything but the masks::

    {"version": 1,
     "inputs": [["x", 16]],
     "sinks": ["out"],
     "groups": [["x", 16], ["h", 8], ...],          # all groups, topological order
     "blocks": [{"kind": "weighted", "name": "fc.weight", "src": "x", "dst": "h",
                 "conv_groups": 1, "bias": "fc.bias"},
                {"kind": "identity", "name": ..., "src": ..., "dst": ...},
                {"kind": "sparse", "name": ..., "src": ..., "dst": ..., "rows": [...], "cols": [...]},
                {"kind": "dense", "name": ..., "src": ..., "dst": ..., "note": "..."}],
     "constants": {"h": [0, 3]},                      # constant seeds not from a bias
     "warnings": [...]}

Weighted blocks take their masks (and biases, for constant seeds) from the checkpoint's
tensors when the graph is rebuilt.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from ._lazy import sparse as sp  # scipy.sparse, imported on first use (start-up)

from .io._checkpoint import effective_tensor
from ._graph import DENSE, IDENTITY, WEIGHTED, GraphBuilder, LayeredGraph
from .errors import BadCheckpoint, InvalidGraph, show

__all__ = ["graph_to_spec", "graph_from_spec", "validate_spec", "SPEC_VERSION"]

SPEC_VERSION = 1


def graph_to_spec(graph: LayeredGraph, bias_keys: Mapping[str, str] | None = None) -> dict:
    """Describe ``graph`` as JSON-able data; ``bias_keys`` maps weight names to their bias keys.

    >>> from netgraph import chain
    >>> spec = graph_to_spec(chain([np.ones((2, 3))], names=["fc.weight"]), {"fc.weight": "fc.bias"})
    >>> spec["blocks"][0]["bias"], spec["inputs"]
    ('fc.bias', [['input', 3]])
    """
    bias_keys = dict(bias_keys or {})
    blocks = []
    biased_groups = set()
    for b in graph.blocks:
        d = {"kind": b.kind, "name": b.name, "src": b.src, "dst": b.dst}
        if b.kind == WEIGHTED:
            d["conv_groups"] = b.conv_groups
            d["bias"] = bias_keys.get(b.name)
            if d["bias"]:
                biased_groups.add(b.dst)
        elif b.kind == DENSE:
            d["note"] = b.note
        elif b.kind != IDENTITY:
            d["kind"] = "sparse"
            d["rows"] = b.rows.tolist()
            d["cols"] = b.cols.tolist()
        blocks.append(d)
    constants = {g: np.flatnonzero(grp.constant).tolist() for g, grp in graph.groups.items()
                 if grp.has_constant and g not in biased_groups}
    return {
        "version": SPEC_VERSION,
        "inputs": [[s, graph.groups[s].width] for s in graph.sources],
        "sinks": list(graph.sinks),
        "groups": [[g, graph.groups[g].width] for g in graph.order],
        "blocks": blocks,
        "constants": constants,
        "warnings": list(graph.warnings),
    }


def _spec_limits(masks: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(most units in one group, most pairs in all dense blocks) a spec may declare: the
    stored topology is untrusted, and a width is otherwise only bounded by the JSON's digits."""
    total = sum(int(np.asarray(m).size) for m in masks.values())
    return max(1 << 20, total), max(1 << 26, 16 * total)


def validate_spec(spec, source: str = "<spec>", *, max_width: int = 1 << 20,
                  max_dense: int = 1 << 26) -> None:
    """Check a stored topology's structure before anything is built from it.

    Every field has its type and range checked: group widths are integers in
    ``1..max_width``, unit indices (``constants``, sparse ``rows``/``cols``) lie in
    ``0..width-1`` (a negative index would silently wrap to the last units), every named group
    is declared, block kinds are known, and all dense blocks together connect at most
    ``max_dense`` pairs.  Raises :class:`BadCheckpoint` with one line naming the field.

    >>> validate_spec({"version": 1, "inputs": [["x", 2]], "sinks": ["h"], "groups": [["x", 2], ["h", 1]],
    ...                "blocks": [], "constants": {"h": [-1]}}, "m.pt")
    Traceback (most recent call last):
    ...
    netgraph.errors.BadCheckpoint: m.pt: stored topology: constants of group 'h' hold unit -1; units of a group of width 1 are 0..0
    """
    def bad(what: str) -> BadCheckpoint:
        return BadCheckpoint(f"{source}: stored topology: {what}")

    if not isinstance(spec, Mapping):
        raise bad(f"is a {type(spec).__name__}, expected a dict (written by netgraph)")
    if spec.get("version") != SPEC_VERSION:
        raise bad(f"version {show(repr(spec.get('version')))}; expected {SPEC_VERSION}")
    for key in ("inputs", "sinks", "groups", "blocks"):
        if not isinstance(spec.get(key), list):
            raise bad(f"{key!r} is a {type(spec.get(key)).__name__}, expected a list")

    def is_int(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))

    widths: dict[str, int] = {}
    for field in ("groups", "inputs"):
        for item in spec[field]:
            if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str) \
                    or not is_int(item[1]):
                raise bad(f"{field} entry {show(repr(item))} is not [name, width]")
            name, width = item
            if not 1 <= width <= max_width:
                raise bad(f"group {show(name)} has width {width}; widths are 1..{max_width} for these tensors")
            if field == "groups":
                if name in widths:
                    raise bad(f"group {show(name)} is declared twice")
                widths[name] = int(width)
            elif widths.get(name) != width:
                raise bad(f"input {show(name)} of width {width} is not a declared group of that width")

    def group(name, what: str) -> int:
        if not isinstance(name, str) or name not in widths:
            raise bad(f"{what} names group {show(repr(name))}, which is not declared")
        return widths[name]

    for s in spec["sinks"]:
        group(s, "a sink")
    dense_pairs = 0
    for blk in spec["blocks"]:
        if not isinstance(blk, Mapping):
            raise bad(f"a block is a {type(blk).__name__}, expected a dict")
        kind, name = blk.get("kind"), blk.get("name")
        if not isinstance(name, str):
            raise bad(f"a block has name {show(repr(name))}; names are strings")
        what = f"block {show(name)}"
        w_src, w_dst = group(blk.get("src"), what), group(blk.get("dst"), what)
        if kind == WEIGHTED:
            cg = blk.get("conv_groups", 1)
            if not is_int(cg) or not 1 <= cg <= w_dst:
                raise bad(f"{what} has conv_groups {show(repr(cg))}; expected an integer 1..{w_dst}")
            if blk.get("bias") is not None and not isinstance(blk.get("bias"), str):
                raise bad(f"{what} has bias {show(repr(blk.get('bias')))}; expected a key or null")
        elif kind == IDENTITY:
            if w_src != w_dst:
                raise bad(f"{what} is an identity from {w_src} to {w_dst} units")
        elif kind == DENSE:
            dense_pairs += w_src * w_dst
            if dense_pairs > max_dense:
                raise bad(f"dense blocks connect more than {max_dense:,} unit pairs; refused")
            if not isinstance(blk.get("note", ""), str):
                raise bad(f"{what} has a note that is not a string")
        elif kind == "sparse":
            for axis, width in (("rows", w_src), ("cols", w_dst)):
                _unit_list(blk.get(axis), width, f"{what} {axis}", bad)
            if len(blk["rows"]) != len(blk["cols"]):
                raise bad(f"{what} has {len(blk['rows'])} rows but {len(blk['cols'])} cols")
        else:
            raise bad(f"{what} has unknown kind {show(repr(kind))}")
    constants = spec.get("constants", {})
    if not isinstance(constants, Mapping):
        raise bad(f"'constants' is a {type(constants).__name__}, expected a dict")
    for g, units in constants.items():
        _unit_list(units, group(g, "constants"), f"constants of group {show(g)}", bad)
    warnings = spec.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise bad("'warnings' is not a list of strings")


def _unit_list(units, width: int, what: str, bad) -> None:
    if not isinstance(units, list):
        raise bad(f"{what} is a {type(units).__name__}, expected a list of unit indices")
    if not units:
        return
    try:
        arr = np.asarray(units)
    except (ValueError, TypeError, OverflowError):
        raise bad(f"{what} is not a flat list of integers") from None
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise bad(f"{what} is not a flat list of integers")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= width:
        raise bad(f"{what} hold unit {lo if lo < 0 else hi}; units of a group of width {width} are 0..{width - 1}")


def graph_from_spec(spec: Mapping, masks: Mapping[str, np.ndarray], tensors: Mapping[str, np.ndarray] | None = None,
                    *, source: str = "<spec>") -> LayeredGraph:
    """Rebuild a graph from a spec, masks by weight name (PyTorch layout) and bias tensors.

    The spec is checked first (:func:`validate_spec`, with limits relative to the masks' sizes);
    a spec that does not fit the tensors is refused with :class:`BadCheckpoint`.
    """
    tensors = tensors or {}
    max_width, max_dense = _spec_limits(masks)
    validate_spec(spec, source, max_width=max_width, max_dense=max_dense)
    try:
        b = GraphBuilder()
        widths = {name: int(width) for name, width in spec["groups"]}
        for name, width in spec["inputs"]:
            b.input(name, width)
        for name, width in spec["groups"]:
            b.group(name, width)
        for blk in spec["blocks"]:
            kind = blk["kind"]
            if kind == WEIGHTED:
                name = blk["name"]
                if name not in masks:
                    raise BadCheckpoint(f"{source}: the topology names weight {name!r} but the state_dict has no such tensor")
                b.weight(name, blk["src"], blk["dst"], masks[name], conv_groups=int(blk.get("conv_groups", 1)))
                bias = effective_tensor(tensors, blk["bias"]) if blk.get("bias") else None
                if bias is not None:
                    if np.asarray(bias).shape != (widths[blk["dst"]],):
                        raise BadCheckpoint(
                            f"{source}: stored topology: bias {show(blk['bias'])} of {show(name)} has shape "
                            f"{tuple(np.asarray(bias).shape)} but the layer has {widths[blk['dst']]} outputs"
                        )
                    b.constant(blk["dst"], np.asarray(bias).reshape(-1) != 0)
            elif kind == IDENTITY:
                b.identity(blk["src"], blk["dst"], name=blk["name"])
            elif kind == DENSE:
                b.dense(blk["src"], blk["dst"], widths[blk["dst"]], name=blk["name"], note=blk.get("note", ""))
            elif kind == "sparse":
                w_src, w_dst = widths[blk["src"]], widths[blk["dst"]]
                rows, cols = np.asarray(blk["rows"], np.int64), np.asarray(blk["cols"], np.int64)
                m = sp.coo_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(w_src, w_dst))
                b.connect(blk["src"], blk["dst"], m, name=blk["name"])
            else:
                raise BadCheckpoint(f"{source}: topology block {blk.get('name')!r} has unknown kind {kind!r}")
        for g, units in spec.get("constants", {}).items():
            seeds = np.zeros(widths[g], bool)
            seeds[np.asarray(units, np.int64)] = True
            b.constant(g, seeds)
        for w in spec.get("warnings", []):
            b.warn(w)
        return b.build(sinks=spec["sinks"])
    except InvalidGraph as exc:
        raise BadCheckpoint(f"{source}: the topology does not fit the tensors: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, BadCheckpoint):
            raise
        raise BadCheckpoint(f"{source}: malformed topology spec ({type(exc).__name__}: {exc})") from None
