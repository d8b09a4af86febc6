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
import scipy.sparse as sp

from .io._checkpoint import effective_tensor
from ._graph import DENSE, IDENTITY, WEIGHTED, GraphBuilder, LayeredGraph
from .errors import BadCheckpoint, InvalidGraph

__all__ = ["graph_to_spec", "graph_from_spec", "SPEC_VERSION"]

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


def graph_from_spec(spec: Mapping, masks: Mapping[str, np.ndarray], tensors: Mapping[str, np.ndarray] | None = None,
                    *, source: str = "<spec>") -> LayeredGraph:
    """Rebuild a graph from a spec, masks by weight name (PyTorch layout) and bias tensors."""
    tensors = tensors or {}
    try:
        if spec.get("version") != SPEC_VERSION:
            raise BadCheckpoint(f"{source}: topology spec version {spec.get('version')!r}; expected {SPEC_VERSION}")
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
