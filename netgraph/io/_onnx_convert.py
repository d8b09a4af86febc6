"""An ONNX graph → a :class:`torch.fx.GraphModule` of the modules and functions that
:func:`netgraph.trace_model` knows (the table of ops is :mod:`netgraph.io._onnx_ops`).

Values flow through the conversion as constants (numpy: initializers, ``Constant`` nodes,
anything computed from constants only — evaluated once with ``onnx.reference``) or as
activations (:class:`Act`: an fx node and its value on the example input).  A node no
handler takes becomes an opaque custom op whose outputs depend on all its inputs, with a
warning.  Weighted modules are named by their initializers (or by the exporter's node scope
when a fused initializer is anonymous), so the audit reads like the traced one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BadCheckpoint, NetgraphError
from ._onnx_read import tensor as _tensor

__all__ = ["Act", "Converter", "OnnxWeight"]

_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 16: None}  # 16 = bfloat16


@dataclass(frozen=True)
class OnnxWeight:
    """Where a weighted block's tensor lives in the ONNX file."""

    initializer: str
    transposed: bool  # the module's (out, in) weight is the initializer transposed (MatMul/Gemm)
    node: str



@dataclass
class Act:
    """An activation: an fx node and its value on the example input."""

    node: Any
    ex: Any  # torch.Tensor


def _opaque_op():
    """The custom op that stands for an ONNX node the tracer cannot model (registered once)."""
    import torch

    try:
        return torch.ops.netgraph_onnx.opaque
    except (AttributeError, RuntimeError):
        pass
    from torch.library import custom_op

    @custom_op("netgraph_onnx::opaque", mutates_args=(), schema="(Tensor[] xs, SymInt[] shape, str op) -> Tensor")
    def opaque(xs, shape, op):
        return torch.zeros(shape, dtype=xs[0].dtype if xs else torch.float32)

    @opaque.register_fake
    def _(xs, shape, op):
        return torch.empty(shape)

    return torch.ops.netgraph_onnx.opaque


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ident(name: str) -> bool:
    return bool(name) and all(p.isidentifier() or p.isdigit() for p in name.split("."))


class Converter:
    def __init__(self, model, path: str, input_shape: Sequence[int] | None):
        import torch
        import torch.fx as fx
        import torch.nn as nn

        self.torch, self.fx, self.nn = torch, fx, nn
        self.model, self.path = model, path
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.consts: dict[str, np.ndarray] = {}
        self.acts: dict[str, Act] = {}
        self.weights: dict[str, OnnxWeight] = {}
        self.warnings: list[str] = []
        self.init_names: set[str] = set()
        self.used_paths: set[str] = set()
        self.n_buffers = 0
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        for init in model.graph.initializer:
            self.consts[init.name] = _tensor(init, path)
            self.init_names.add(init.name)
        self.example = None
        self._inputs(input_shape)

    # -- inputs ------------------------------------------------------------------------
    def _inputs(self, input_shape) -> None:
        torch = self.torch
        inputs = [i for i in self.model.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise NetgraphError(f"{self.path}: the graph has {len(inputs)} data inputs "
                                f"({', '.join(i.name for i in inputs) or 'none'}); netgraph audits "
                                "ONNX models with exactly one input")
        inp = inputs[0]
        tt = inp.type.tensor_type
        if tt.elem_type not in _FLOAT_TYPES:
            raise NetgraphError(f"{self.path}: input {inp.name!r} is not a floating-point tensor")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if input_shape is not None:
            shape = tuple(int(s) for s in input_shape)
            if dims and len(dims) != len(shape):
                raise NetgraphError(f"{self.path}: --input-shape {shape} has {len(shape)} dimensions, "
                                    f"the model's input {inp.name!r} has {len(dims)}")
        else:
            if not dims:
                raise NetgraphError(f"{self.path}: input {inp.name!r} has no declared shape; give --input-shape")
            if any(d is None for d in dims[1:]):
                raise NetgraphError(f"{self.path}: input {inp.name!r} has symbolic dimensions "
                                    f"{[d if d is not None else '?' for d in dims]}; give --input-shape")
            shape = tuple([1 if dims[0] is None else dims[0], *dims[1:]])
        if not shape or min(shape) < 1 or math.prod(shape) > 2**28:
            raise NetgraphError(f"{self.path}: input shape {shape} is empty or too large")
        gen = torch.Generator().manual_seed(0)
        self.example = torch.randn(shape, generator=gen, dtype=torch.float64)
        node = self.graph.placeholder(_safe(inp.name, "x"))
        self.acts[inp.name] = Act(node, self.example)

    # -- helpers -----------------------------------------------------------------------
    def const_arg(self, value: np.ndarray):
        """A constant operand: a Python number when it has one element, else a buffer."""
        arr = np.asarray(value)
        if arr.ndim == 0:
            return arr.item(), arr.item()
        t = self.torch.as_tensor(np.ascontiguousarray(arr))
        if t.is_floating_point():
            t = t.double()
        name = f"_const{self.n_buffers}"
        self.n_buffers += 1
        self.root.register_buffer(name, t)
        return self.graph.get_attr(name), t

    def call(self, fn: Callable, *args, **kwargs) -> Act:
        """Emit ``fn(*args)`` where args may hold :class:`Act`s, numpy constants or plain values."""
        fx_args, ex_args = self._split(args)
        fx_kw, ex_kw = self._split(kwargs)
        node = self.graph.call_function(fn, tuple(fx_args), dict(fx_kw))
        with self.torch.no_grad():
            ex = fn(*ex_args, **ex_kw)
        return Act(node, ex)

    def _split(self, value):
        if isinstance(value, Act):
            return value.node, value.ex
        if isinstance(value, np.ndarray):
            return self.const_arg(value)
        if isinstance(value, tuple) and not (len(value) == 2 and isinstance(value[0], self.fx.Node)):
            parts = [self._split(v) for v in value]
            return tuple(p[0] for p in parts), tuple(p[1] for p in parts)
        if isinstance(value, list):
            parts = [self._split(v) for v in value]
            return [p[0] for p in parts], [p[1] for p in parts]
        if isinstance(value, dict):
            parts = {k: self._split(v) for k, v in value.items()}
            return {k: p[0] for k, p in parts.items()}, {k: p[1] for k, p in parts.items()}
        return value, value

    def module(self, mod, path_hint: str, x: Act, *rest) -> Act:
        path = self._module_path(path_hint)
        parent = self.root
        parts = path.split(".")
        for p in parts[:-1]:
            if not hasattr(parent, p):
                parent.add_module(p, self.nn.Module())
            parent = getattr(parent, p)
        mod = mod.double().eval()
        parent.add_module(parts[-1], mod)
        node = self.graph.call_module(path, (x.node, *[r.node for r in rest]))
        with self.torch.no_grad():
            ex = mod(x.ex, *[r.ex for r in rest])
        return Act(node, ex)

    def _module_path(self, hint: str) -> str:
        base = hint if _ident(hint) else "onnx_" + _safe(hint, "m")
        path, k = base, 1
        while path in self.used_paths or any(u.startswith(path + ".") or path.startswith(u + ".")
                                             for u in self.used_paths):
            path, k = f"{base}_{k}", k + 1
        self.used_paths.add(path)
        return path

    def weight_name(self, onnx_name: str, node, kind: str) -> str:
        """The module path for a weight held in initializer ``onnx_name``."""
        for suffix in (".weight", ".weight_orig"):
            if onnx_name.endswith(suffix) and _ident(onnx_name[: -len(suffix)]):
                return onnx_name[: -len(suffix)]
        return _scope_path(node.name) or onnx_name or node.name or f"{kind}_{len(self.weights)}"

    def record(self, path: str, onnx_name: str, transposed: bool, node) -> None:
        if onnx_name in self.init_names:
            self.weights[f"{path}.weight"] = OnnxWeight(onnx_name, transposed, node.name)

    def opaque(self, node, ins: list) -> list:
        """Evaluate ``node`` on the example values and emit an opaque op of the same shapes."""
        from onnx.reference import ReferenceEvaluator

        feeds = {}
        for name, v in zip(node.input, ins):
            if v is None or not name:
                continue
            feeds[name] = v.ex.detach().numpy().astype(np.float32) if isinstance(v, Act) else v
        try:
            outs = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as exc:
            raise NetgraphError(f"{self.path}: node {node.name or node.op_type!r} ({node.op_type}) cannot be "
                                f"evaluated on the example input ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        acts = [v for v in ins if isinstance(v, Act)]
        self.warnings.append(f"ONNX node {node.name or '?'} ({node.op_type}) is not modelled exactly; "
                             "its outputs depend on all its inputs (conservative)")
        op = _opaque_op()
        result = []
        for out in outs:
            shape = list(np.asarray(out).shape)
            n = self.graph.call_function(op, ([a.node for a in acts], shape, node.op_type))
            result.append(Act(n, self.torch.as_tensor(np.asarray(out, dtype=np.float64))))
        return result

    def fold(self, node, ins: list) -> list:
        """A node whose inputs are all constants: evaluate it once."""
        from onnx.reference import ReferenceEvaluator

        feeds = {name: v for name, v in zip(node.input, ins) if name and v is not None}
        try:
            outs = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as exc:
            raise NetgraphError(f"{self.path}: constant node {node.name or node.op_type!r} ({node.op_type}) "
                                f"cannot be evaluated ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        return [np.asarray(o) for o in outs]

    # -- main loop ---------------------------------------------------------------------
    def run(self):
        from ._onnx_ops import HANDLERS, WEIGHTED

        for node in self.model.graph.node:
            ins = []
            for name in node.input:
                if not name:
                    ins.append(None)
                elif name in self.acts:
                    ins.append(self.acts[name])
                elif name in self.consts:
                    ins.append(self.consts[name])
                else:
                    raise BadCheckpoint(f"{self.path}: node {node.name or node.op_type!r} reads {name!r}, "
                                        "which no earlier node produces (the graph is not topologically "
                                        "sorted, has a cycle, or is incomplete)")
            if node.domain not in ("", "ai.onnx"):
                outs = self.opaque(node, ins)
            elif node.op_type == "Constant":
                outs = self.fold(node, ins)
            elif not any(isinstance(v, Act) for v in ins) and node.op_type not in WEIGHTED:
                outs = self.fold(node, ins)
            else:
                handler = HANDLERS.get(node.op_type)
                outs = handler(self, node, ins, _attrs(node)) if handler else None
                if outs is None:
                    outs = self.opaque(node, ins)
            for name, value in zip(node.output, outs):
                if not name:
                    continue
                if name in self.acts or name in self.consts:
                    raise BadCheckpoint(f"{self.path}: value {name!r} is produced twice")
                if isinstance(value, Act):
                    self.acts[name] = value
                else:
                    self.consts[name] = np.asarray(value)
        outputs = []
        for o in self.model.graph.output:
            if o.name not in self.acts:
                raise NetgraphError(f"{self.path}: graph output {o.name!r} does not depend on the input")
            outputs.append(self.acts[o.name].node)
        self.graph.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
        gm = self.fx.GraphModule(self.root, self.graph)
        return gm


def _scope_path(node_name: str) -> str | None:
    """The module path in a torch-exported node name: ``/layer1/layer1.0/conv1/Conv`` → ``layer1.0.conv1``.

    ``torch.onnx.export`` names each node by the scopes of the modules that ran it; when it
    folds a BatchNorm into the preceding Conv, the fused weight gets an anonymous initializer
    name (``onnx::Conv_31``) and this scope is what is left of the module's name.
    """
    parts = [p for p in (node_name or "").split("/") if p][:-1]
    comps: list[str] = []
    for p in parts:  # a Sequential child's scope repeats its parent's: downsample, downsample.0
        if comps and p.startswith(comps[-1] + "."):
            comps[-1] = p
        else:
            comps.append(p)
    path = ".".join(comps)
    return path if _ident(path) else None


def _safe(name: str, default: str) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name).strip("_")
    if not s:
        s = default
    if s[0].isdigit():
        s = f"{default}_{s}"
    return s

