"""ONNX models: the exact graph from the file alone, and pruning written back.

Contract
--------
:func:`read_onnx` parses an ``.onnx`` file (an untrusted protobuf: its size is checked before
parsing, external-data paths must stay inside the file's folder, every initializer's stored
bytes must match its declared shape) and converts its graph into a :class:`torch.fx.GraphModule`
whose nodes are the torch modules and functions that :func:`netgraph.trace_model` knows:

=========================  ==============================================================
ONNX                       becomes
=========================  ==============================================================
Conv (1-D/2-D/3-D)         ``nn.ConvNd`` holding the initializer (grouped, dilated, strided;
                           asymmetric or ``SAME_*`` padding as an explicit zero pad)
Gemm, MatMul (constant B)  ``nn.Linear`` holding the initializer (transposed as needed)
BatchNormalization         ``nn.BatchNormNd`` in eval mode with the stored statistics
Relu, Sigmoid, Tanh, …     the torch activation of the same name
Add, Sub, Mul, Div         the Python operator (a product is an intersection in the audit)
Concat, Split, Slice,      ``torch.cat`` / ``torch.split`` / indexing / ``torch.reshape`` /
Flatten, Reshape,          ``torch.permute``: exact unit movement
Transpose, (Un)Squeeze
pooling, Resize, Pad       ``F.*_pool*d``, ``F.interpolate``, ``nn.*Pad*d``
Softmax, ReduceMean, …     ``torch.softmax``, ``torch.mean``, …
nodes of constants only    evaluated once (``onnx.reference``) and folded
anything else              an opaque op: the tracer over-approximates it, with a warning
=========================  ==============================================================

Each weighted block is named by its initializer (``layer1.0.conv1.weight`` for a model
exported by ``torch.onnx.export``), so the ONNX audit of an exported model reads like, and
equals, the traced audit of the model.  ``onnx`` is imported on first use (``pip install
'netgraph-topology[onnx]'``); no ONNX runtime is needed.

Files: ``_onnx_read.py`` (the file as untrusted input) · ``_onnx_convert.py`` (the graph →
torch.fx) · ``_onnx_ops.py`` (the op table) · this module (the public entry points).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import NetgraphError
from ._onnx_convert import Converter, OnnxWeight
from ._onnx_read import parse as _parse
from ._onnx_read import tensor as _tensor

__all__ = ["OnnxModel", "OnnxWeight", "read_onnx", "audit_onnx", "prune_onnx", "repair_onnx", "is_onnx"]


def is_onnx(path: str | os.PathLike) -> bool:
    """True when ``path`` names an ONNX file (by its suffix)."""
    return os.fspath(path).lower().endswith(".onnx")



@dataclass
class OnnxModel:
    """An ONNX file converted for the tracer.

    Attributes
    ----------
    module : torch.fx.GraphModule
        The graph as torch modules and functions, with the initializers as parameters.
    example_input : torch.Tensor
        An input of the graph's declared (or the given) shape.
    weights : dict
        Weighted block name (``fc.weight``) → :class:`OnnxWeight`.
    warnings : tuple of str
        What the conversion could not model exactly (opaque ops).
    """

    path: str
    proto: Any = field(repr=False)
    module: Any = field(repr=False)
    example_input: Any = field(repr=False)
    weights: dict[str, OnnxWeight]
    warnings: tuple[str, ...] = ()



def read_onnx(path: str | os.PathLike, *, input_shape: Sequence[int] | None = None) -> OnnxModel:
    """Parse and convert an ONNX file (see the module docstring).

    Raises
    ------
    BadCheckpoint
        The file is not a well-formed ONNX model (one line saying what and where).
    NetgraphError
        The model cannot be converted (several inputs, symbolic shapes without ``input_shape``).
    """
    path = os.fspath(path)
    model = _parse(path)
    conv = Converter(model, path, input_shape)
    gm = conv.run()
    return OnnxModel(path, model, gm, conv.example, dict(conv.weights), tuple(conv.warnings))


def _traced(m: OnnxModel):
    from ..torch import trace_model

    return trace_model(m.module, m.example_input)


def audit_onnx(path: str | os.PathLike, *, input_shape: Sequence[int] | None = None, source: str | None = None):
    """The audit of an ONNX file, from the file alone (the traced audit of its graph)."""
    from dataclasses import replace

    m = read_onnx(path, input_shape=input_shape)
    traced = _traced(m)
    report = traced.audit(source=source or os.fspath(path))
    if m.warnings:
        report = replace(report, warnings=tuple(report.warnings) + m.warnings)
    return report


def dead_entries(m: OnnxModel) -> dict[str, np.ndarray]:
    """ONNX initializer name → boolean array (its stored layout): kept entries that are dead."""
    from ..torch import prune_model

    traced = _traced(m)
    pruned = prune_model(traced.model, traced)
    dead: dict[str, np.ndarray] = {}
    for name, w in m.weights.items():
        path = name.rsplit(".", 1)[0]
        before = traced.model.get_submodule(path).weight.detach() != 0
        after = pruned.get_submodule(path).weight.detach() != 0
        d = (before & ~after).numpy()
        if w.transposed:
            d = d.T
        dead[w.initializer] = dead[w.initializer] & d if w.initializer in dead else d
    return dead


def prune_onnx(path: str | os.PathLike, output: str | os.PathLike, *, input_shape: Sequence[int] | None = None,
               write: Callable[[str, Callable], None] | None = None):
    """Zero the dead weights of an ONNX file and write it to ``output`` (function-preserving).

    Returns ``(before, after)`` audits; ``after`` is the audit of the written file, re-read.
    """
    from onnx import numpy_helper

    from .. import atomic_write

    path, output = os.fspath(path), os.fspath(output)
    m = read_onnx(path, input_shape=input_shape)
    before = _audit_of(m, path)
    dead = dead_entries(m)
    proto = m.proto
    for init in proto.graph.initializer:
        if init.name in dead and dead[init.name].any():
            arr = _tensor(init, path).copy()
            arr[dead[init.name].reshape(arr.shape)] = 0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    data = proto.SerializeToString()
    def dump(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    (write or atomic_write)(output, dump)
    after = audit_onnx(output, input_shape=input_shape)
    return before, after


def _audit_of(m: OnnxModel, source: str):
    from dataclasses import replace

    report = _traced(m).audit(source=source)
    return replace(report, warnings=tuple(report.warnings) + m.warnings) if m.warnings else report


def repair_onnx(path: str | os.PathLike, output: str | os.PathLike, mode: str = "prune", *, force: bool = False,
                input_shape: Sequence[int] | None = None):
    """``netgraph repair model.onnx -o OUT``: the output contract, then :func:`prune_onnx`.

    Only ``prune`` is offered for ONNX: reconnecting would add weights whose values the file
    cannot tell, and compaction rewrites shapes across the graph.
    """
    from ._repair import CheckpointRepair
    from ._write import output_path

    if mode != "prune":
        raise NetgraphError(f"{os.fspath(path)}: --mode {mode} is not available for ONNX files; "
                            "--mode prune zeroes the dead weights and writes ONNX back")
    if not is_onnx(output):
        raise NetgraphError(f"{os.fspath(output)}: the output of an ONNX repair is an ONNX file; "
                            "give -o with the .onnx suffix")
    out = output_path(output, force=force, inputs=[path])
    before, after = prune_onnx(path, out, input_shape=input_shape)
    return CheckpointRepair(out, mode, before, after, removed=before.summary.kept - after.summary.kept, added=0)

