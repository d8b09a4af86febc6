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
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BadCheckpoint, NetgraphError

__all__ = ["OnnxModel", "OnnxWeight", "read_onnx", "audit_onnx", "prune_onnx", "repair_onnx", "is_onnx"]

#: protobuf cannot hold a message of 2 GiB or more; bigger files use external data.
MAX_ONNX_BYTES = 2**31 - 1
#: refuse graphs with more nodes than this (a hostile file would otherwise cost minutes).
MAX_NODES = 200_000
_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 16: None}  # 16 = bfloat16


def is_onnx(path: str | os.PathLike) -> bool:
    """True when ``path`` names an ONNX file (by its suffix)."""
    return os.fspath(path).lower().endswith(".onnx")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise NetgraphError(
            "reading .onnx files needs the onnx package: pip install onnx "
            "(or pip install 'netgraph-topology[onnx]')") from None
    return onnx


@dataclass(frozen=True)
class OnnxWeight:
    """Where a weighted block's tensor lives in the ONNX file."""

    initializer: str
    transposed: bool  # the module's (out, in) weight is the initializer transposed (MatMul/Gemm)
    node: str


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


# --------------------------------------------------------------------------------------
# Reading (untrusted input)
# --------------------------------------------------------------------------------------

def _parse(path: str):
    onnx = _onnx()
    try:
        st = os.stat(path)
    except OSError as exc:
        raise BadCheckpoint(f"{path}: cannot read ({exc.strerror})") from None
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        raise BadCheckpoint(f"{path}: not a regular file")
    if st.st_size > MAX_ONNX_BYTES:
        raise BadCheckpoint(f"{path}: {st.st_size} bytes; an ONNX protobuf holds less than 2 GiB "
                            "(bigger models keep their weights as external data)")
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise BadCheckpoint(f"{path}: not a valid ONNX protobuf ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'parse error'})") from None
    if not model.HasField("graph"):
        raise BadCheckpoint(f"{path}: the ONNX model has no graph")
    if len(model.graph.node) > MAX_NODES:
        raise BadCheckpoint(f"{path}: {len(model.graph.node)} nodes; at most {MAX_NODES} are read")
    _load_external(model, path)
    return model


def _load_external(model, path: str) -> None:
    """Load external tensor data, refusing locations outside the model's folder."""
    onnx = _onnx()
    base = os.path.dirname(os.path.abspath(path))
    real_base = os.path.realpath(base)
    for init in model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in init.external_data}
        loc = info.get("location", "")
        target = os.path.realpath(os.path.join(base, loc))
        if not loc or os.path.isabs(loc) or os.path.commonpath([real_base, target]) != real_base:
            raise BadCheckpoint(f"{path}: initializer {init.name!r} keeps its data at {loc!r}, "
                                "outside the model's folder; refused")
        if not os.path.isfile(target):
            raise BadCheckpoint(f"{path}: initializer {init.name!r}: external data file {loc!r} is missing")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else os.path.getsize(target) - offset
        except ValueError:
            raise BadCheckpoint(f"{path}: initializer {init.name!r}: external offset/length are not integers") from None
        if offset < 0 or length < 0 or offset + length > os.path.getsize(target):
            raise BadCheckpoint(f"{path}: initializer {init.name!r}: external data runs past the end of {loc!r}")
        with open(target, "rb") as fh:
            fh.seek(offset)
            init.raw_data = fh.read(length)
        del init.external_data[:]
        init.data_location = onnx.TensorProto.DEFAULT


def _tensor(init, path: str) -> np.ndarray:
    """An initializer / Constant value as numpy, its stored size checked against its shape."""
    onnx = _onnx()
    from onnx import numpy_helper

    dims = [int(d) for d in init.dims]
    if any(d < 0 for d in dims):
        raise BadCheckpoint(f"{path}: tensor {init.name!r} has negative dimensions {dims}")
    n = math.prod(dims)
    if init.data_type == onnx.TensorProto.STRING:
        raise BadCheckpoint(f"{path}: tensor {init.name!r} holds strings; not a numeric weight")
    if init.HasField("raw_data"):
        try:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        except Exception:
            raise BadCheckpoint(f"{path}: tensor {init.name!r} has unknown data type {init.data_type}") from None
        if len(init.raw_data) != n * itemsize:
            raise BadCheckpoint(f"{path}: tensor {init.name!r} declares shape {dims} ({n * itemsize} bytes) "
                                f"but stores {len(init.raw_data)} bytes")
    else:
        stored = max(len(init.float_data), len(init.int32_data), len(init.int64_data),
                     len(init.double_data), len(init.uint64_data))
        if stored != n and not (stored == 0 and n == 0):
            raise BadCheckpoint(f"{path}: tensor {init.name!r} declares shape {dims} ({n} values) "
                                f"but stores {stored}")
    try:
        return np.array(numpy_helper.to_array(init))
    except Exception as exc:
        raise BadCheckpoint(f"{path}: tensor {init.name!r} cannot be read ({type(exc).__name__})") from None


# --------------------------------------------------------------------------------------
# Conversion to torch.fx
# --------------------------------------------------------------------------------------

@dataclass
class _Act:
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


class _Converter:
    def __init__(self, model, path: str, input_shape: Sequence[int] | None):
        import torch
        import torch.fx as fx
        import torch.nn as nn

        self.torch, self.fx, self.nn = torch, fx, nn
        self.model, self.path = model, path
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.consts: dict[str, np.ndarray] = {}
        self.acts: dict[str, _Act] = {}
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
        self.acts[inp.name] = _Act(node, self.example)

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

    def call(self, fn: Callable, *args, **kwargs) -> _Act:
        """Emit ``fn(*args)`` where args may hold :class:`_Act`s, numpy constants or plain values."""
        fx_args, ex_args = self._split(args)
        fx_kw, ex_kw = self._split(kwargs)
        node = self.graph.call_function(fn, tuple(fx_args), dict(fx_kw))
        with self.torch.no_grad():
            ex = fn(*ex_args, **ex_kw)
        return _Act(node, ex)

    def _split(self, value):
        if isinstance(value, _Act):
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

    def module(self, mod, path_hint: str, x: _Act, *rest) -> _Act:
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
        return _Act(node, ex)

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
            feeds[name] = v.ex.detach().numpy().astype(np.float32) if isinstance(v, _Act) else v
        try:
            outs = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as exc:
            raise NetgraphError(f"{self.path}: node {node.name or node.op_type!r} ({node.op_type}) cannot be "
                                f"evaluated on the example input ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        acts = [v for v in ins if isinstance(v, _Act)]
        self.warnings.append(f"ONNX node {node.name or '?'} ({node.op_type}) is not modelled exactly; "
                             "its outputs depend on all its inputs (conservative)")
        op = _opaque_op()
        result = []
        for out in outs:
            shape = list(np.asarray(out).shape)
            n = self.graph.call_function(op, ([a.node for a in acts], shape, node.op_type))
            result.append(_Act(n, self.torch.as_tensor(np.asarray(out, dtype=np.float64))))
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
            elif not any(isinstance(v, _Act) for v in ins) and node.op_type not in _WEIGHTED:
                outs = self.fold(node, ins)
            else:
                handler = _HANDLERS.get(node.op_type)
                outs = handler(self, node, ins, _attrs(node)) if handler else None
                if outs is None:
                    outs = self.opaque(node, ins)
            for name, value in zip(node.output, outs):
                if not name:
                    continue
                if name in self.acts or name in self.consts:
                    raise BadCheckpoint(f"{self.path}: value {name!r} is produced twice")
                if isinstance(value, _Act):
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


# --------------------------------------------------------------------------------------
# Op handlers: (converter, node, inputs, attributes) -> outputs, or None for "opaque"
# --------------------------------------------------------------------------------------

def _pads_torch(pads: Sequence[int], k: int) -> list[int]:
    """ONNX pads [x1_begin, …, xk_begin, x1_end, …] → F.pad order (last dim first)."""
    out: list[int] = []
    for i in reversed(range(k)):
        out += [int(pads[i]), int(pads[i + k])]
    return out


def _auto_pads(attrs, in_spatial, kernel, strides, dilations) -> list[int] | None:
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    k = len(kernel)
    if mode in ("NOTSET", ""):
        return [int(p) for p in attrs.get("pads", [0] * (2 * k))]
    if mode == "VALID":
        return [0] * (2 * k)
    begins, ends = [], []
    for n, kk, s, d in zip(in_spatial, kernel, strides, dilations):
        total = max((math.ceil(n / s) - 1) * s + (kk - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return begins + ends


def _conv(c: _Converter, node, ins, attrs):
    nn, torch = c.nn, c.torch
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    if not isinstance(x, _Act) or isinstance(w, _Act) or isinstance(b, _Act) or w.ndim not in (3, 4, 5):
        return None
    k = w.ndim - 2
    strides = list(attrs.get("strides", [1] * k))
    dil = list(attrs.get("dilations", [1] * k))
    groups = int(attrs.get("group", 1))
    pads = _auto_pads(attrs, list(x.ex.shape[2:]), list(w.shape[2:]), strides, dil)
    sym = pads[:k] == pads[k:]
    if not sym:
        x = c.module([nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d][k - 1](tuple(_pads_torch(pads, k))),
                     f"{node.name or 'conv'}_pad", x)
    conv_cls = [nn.Conv1d, nn.Conv2d, nn.Conv3d][k - 1]
    mod = conv_cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(strides),
                   padding=tuple(pads[:k]) if sym else 0, dilation=tuple(dil), groups=groups,
                   bias=b is not None)
    with torch.no_grad():
        mod.weight.copy_(torch.as_tensor(w.astype(np.float64)))
        if b is not None:
            mod.bias.copy_(torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1)))
    path = c.weight_name(node.input[1], node, "conv")
    out = c.module(mod, path, x)
    c.record(out.node.target, node.input[1], False, node)
    return [out]


def _linear(c: _Converter, node, x: _Act, weight: np.ndarray, bias, onnx_name: str, transposed: bool):
    torch = c.torch
    mod = c.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        mod.weight.copy_(torch.as_tensor(weight.astype(np.float64)))
        if bias is not None:
            mod.bias.copy_(torch.as_tensor(np.broadcast_to(np.asarray(bias, dtype=np.float64),
                                                           (weight.shape[0],)).copy()))
    out = c.module(mod, c.weight_name(onnx_name, node, "linear"), x)
    c.record(out.node.target, onnx_name, transposed, node)
    return out


def _gemm(c: _Converter, node, ins, attrs):
    a, b = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    if (not isinstance(a, _Act) or isinstance(b, _Act) or isinstance(bias, _Act) or b.ndim != 2
            or int(attrs.get("transA", 0)) or a.ex.ndim != 2):
        return None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_b = bool(int(attrs.get("transB", 0)))
    weight = (b if trans_b else b.T) * alpha
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64) * beta
        if bias.size not in (1, weight.shape[0]):
            return None
    return [_linear(c, node, a, weight, bias, node.input[1], not trans_b)]


def _matmul(c: _Converter, node, ins, attrs):
    a, b = ins
    torch = c.torch
    if isinstance(a, _Act) and not isinstance(b, _Act) and b.ndim == 2:
        return [_linear(c, node, a, b.T, None, node.input[1], True)]
    if isinstance(a, _Act) and isinstance(b, _Act):
        return [c.call(torch.matmul, a, b)]
    return None


def _batchnorm(c: _Converter, node, ins, attrs):
    x, scale, bias, mean, var = ins[:5]
    torch, nn = c.torch, c.nn
    if not isinstance(x, _Act) or any(isinstance(v, _Act) for v in (scale, bias, mean, var)):
        return None
    if int(attrs.get("training_mode", 0)):
        return None
    nd = x.ex.ndim
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(nd)
    if cls is None:
        return None
    mod = cls(scale.shape[0], eps=float(attrs.get("epsilon", 1e-5)))
    with torch.no_grad():
        for t, v in ((mod.weight, scale), (mod.bias, bias), (mod.running_mean, mean), (mod.running_var, var)):
            t.copy_(torch.as_tensor(np.asarray(v, dtype=np.float64)))
    hint = node.input[1]
    hint = hint[: -len(".weight")] if hint.endswith(".weight") else (node.name or "bn")
    return [c.module(mod, hint, x)]


def _unary(fn_name: str):
    def handler(c: _Converter, node, ins, attrs):
        torch = c.torch
        F = torch.nn.functional
        fn = {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp,
              "Neg": torch.neg, "Abs": torch.abs, "Softsign": F.softsign, "Softplus": F.softplus,
              "HardSwish": F.hardswish, "Selu": F.selu, "Erf": torch.erf, "Sqrt": torch.sqrt,
              "Identity": None, "Dropout": None, "Cos": torch.cos}[fn_name]
        if fn is None:
            return [ins[0]]
        return [c.call(fn, ins[0])]
    return handler


def _leaky(c, node, ins, attrs):
    return [c.call(c.torch.nn.functional.leaky_relu, ins[0], float(attrs.get("alpha", 0.01)))]


def _elu(c, node, ins, attrs):
    return [c.call(c.torch.nn.functional.elu, ins[0], float(attrs.get("alpha", 1.0)))]


def _gelu(c, node, ins, attrs):
    approx = attrs.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return [c.call(c.torch.nn.functional.gelu, ins[0], approximate=approx)]


def _hardsigmoid(c, node, ins, attrs):
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
        return [c.call(c.torch.nn.functional.hardsigmoid, ins[0])]
    return None


def _clip(c, node, ins, attrs):
    x = ins[0]
    lo = attrs.get("min") if c.opset < 11 else (ins[1] if len(ins) > 1 else None)
    hi = attrs.get("max") if c.opset < 11 else (ins[2] if len(ins) > 2 else None)
    if isinstance(lo, _Act) or isinstance(hi, _Act):
        return None
    lo = None if lo is None else float(np.asarray(lo))
    hi = None if hi is None else float(np.asarray(hi))
    if lo == 0.0 and hi == 6.0:
        return [c.call(c.torch.nn.functional.relu6, x)]
    if lo == 0.0 and hi is None:
        return [c.call(c.torch.relu, x)]
    return [c.call(c.torch.clamp, x, lo, hi)]


def _binary(op):
    def handler(c: _Converter, node, ins, attrs):
        a, b = ins
        a = a if isinstance(a, _Act) else np.asarray(a, dtype=np.float64)
        b = b if isinstance(b, _Act) else np.asarray(b, dtype=np.float64)
        return [c.call(op, a, b)]
    return handler


def _sum(c, node, ins, attrs):
    acc = ins[0]
    for v in ins[1:]:
        acc = c.call(operator.add, acc, v if isinstance(v, _Act) else np.asarray(v, dtype=np.float64))
    return [acc]


def _pool(kind: str):
    def handler(c: _Converter, node, ins, attrs):
        F = c.torch.nn.functional
        x = ins[0]
        k = x.ex.ndim - 2
        if k not in (1, 2, 3):
            return None
        if kind.startswith("Global"):
            fn = ([F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d] if kind == "GlobalAveragePool"
                  else [F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d])[k - 1]
            return [c.call(fn, x, 1)]
        kernel = [int(v) for v in attrs["kernel_shape"]]
        strides = [int(v) for v in attrs.get("strides", [1] * k)]
        dil = [int(v) for v in attrs.get("dilations", [1] * k)]
        pads = _auto_pads(attrs, list(x.ex.shape[2:]), kernel, strides, dil)
        ceil = bool(int(attrs.get("ceil_mode", 0)))
        if pads[:k] != pads[k:] or any(p * 2 > kk for p, kk in zip(pads[:k], kernel)):
            return None
        if kind == "MaxPool":
            if len(node.output) > 1 and node.output[1]:
                return None
            fn = [F.max_pool1d, F.max_pool2d, F.max_pool3d][k - 1]
            if any(d != 1 for d in dil):
                return [c.call(fn, x, kernel, strides, pads[:k], dil, ceil_mode=ceil)]
            return [c.call(fn, x, kernel, strides, pads[:k], ceil_mode=ceil)]
        if any(d != 1 for d in dil):
            return None
        fn = [F.avg_pool1d, F.avg_pool2d, F.avg_pool3d][k - 1]
        include = bool(int(attrs.get("count_include_pad", 0)))
        return [c.call(fn, x, kernel, strides, pads[:k], ceil_mode=ceil, count_include_pad=include)]
    return handler


def _flatten(c, node, ins, attrs):
    x = ins[0]
    axis = int(attrs.get("axis", 1))
    axis = axis + x.ex.ndim if axis < 0 else axis
    if axis == 1:
        return [c.call(c.torch.flatten, x, 1)]
    shape = (math.prod(x.ex.shape[:axis]), math.prod(x.ex.shape[axis:]))
    return [c.call(c.torch.reshape, x, shape)]


def _reshape_to(c, x: _Act, shape) -> _Act:
    """Reshape to the concrete ``shape``; a kept leading (batch) size becomes ``-1`` so the
    graph also runs on other batch sizes (the probe and the tap analysis stack halves)."""
    shape = [int(s) for s in shape]
    if shape and x.ex.ndim and shape[0] == x.ex.shape[0] and math.prod(shape[1:]) > 0:
        shape[0] = -1
    return c.call(c.torch.reshape, x, tuple(shape))


def _reshape(c, node, ins, attrs):
    x, shape = ins[0], ins[1]
    if isinstance(shape, _Act):
        return None
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not int(attrs.get("allowzero", 0)):
        shape = [x.ex.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    try:
        target = x.ex.reshape(shape).shape
    except RuntimeError:
        return None
    if len(target) == 2 and target[0] == x.ex.shape[0] and x.ex.ndim > 2:
        return [c.call(c.torch.flatten, x, 1)]
    return [_reshape_to(c, x, target)]


def _squeeze_like(c, node, ins, attrs):
    x = ins[0]
    if len(ins) > 1 and ins[1] is not None:
        if isinstance(ins[1], _Act):
            return None
        axes = [int(a) for a in np.asarray(ins[1]).reshape(-1)]
    else:
        axes = [int(a) for a in attrs.get("axes", [])]
    if node.op_type == "Unsqueeze":
        nd = x.ex.ndim + len(axes)
        for a in sorted(a + nd if a < 0 else a for a in axes):
            x = c.call(c.torch.unsqueeze, x, a)
        return [x]
    if not axes:
        axes = [i for i, n in enumerate(x.ex.shape) if n == 1]
    for a in sorted((a + x.ex.ndim if a < 0 else a for a in axes), reverse=True):
        x = c.call(c.torch.squeeze, x, a)
    return [x]


def _transpose(c, node, ins, attrs):
    x = ins[0]
    perm = attrs.get("perm", list(reversed(range(x.ex.ndim))))
    return [c.call(c.torch.permute, x, tuple(int(p) for p in perm))]


def _concat(c, node, ins, attrs):
    axis = int(attrs["axis"])
    parts = [v if isinstance(v, _Act) else np.asarray(v, dtype=np.float64) for v in ins]
    return [c.call(c.torch.cat, parts, axis)]


def _split(c, node, ins, attrs):
    x = ins[0]
    axis = int(attrs.get("axis", 0))
    n_out = len(node.output)
    if len(ins) > 1 and ins[1] is not None:
        if isinstance(ins[1], _Act):
            return None
        sizes = [int(s) for s in np.asarray(ins[1]).reshape(-1)]
    elif "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    else:
        total = x.ex.shape[axis]
        chunk = math.ceil(total / n_out)
        sizes = [min(chunk, total - i * chunk) for i in range(n_out)]
    parts = c.call(c.torch.split, x, sizes, axis)
    return [c.call(operator.getitem, parts, i) for i in range(n_out)]


def _slice(c, node, ins, attrs):
    x = ins[0]
    if any(isinstance(v, _Act) for v in ins[1:]):
        return None
    if c.opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes", list(range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = [np.asarray(v).reshape(-1).tolist() for v in ins[1:3]]
        axes = np.asarray(ins[3]).reshape(-1).tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = np.asarray(ins[4]).reshape(-1).tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ex.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = int(a) + x.ex.ndim if int(a) < 0 else int(a)
        if int(st) < 1:
            return None
        n = x.ex.shape[a]
        s, e = int(max(min(s, n), -n - 1)), int(max(min(e, n), -n - 1))
        index[a] = slice(s, e, int(st))
    return [c.call(operator.getitem, x, tuple(index))]


def _gather(c, node, ins, attrs):
    x, idx = ins
    if isinstance(idx, _Act):
        return None
    axis = int(attrs.get("axis", 0))
    idx = np.asarray(idx)
    if idx.ndim == 0:
        return [c.call(c.torch.select, x, axis, int(idx))]
    return None


def _softmax(name):
    def handler(c, node, ins, attrs):
        x = ins[0]
        axis = int(attrs.get("axis", -1 if c.opset >= 13 else 1))
        if c.opset < 13 and axis not in (-1, x.ex.ndim - 1):
            return None
        fn = c.torch.softmax if name == "Softmax" else c.torch.log_softmax
        return [c.call(fn, x, axis)]
    return handler


def _reduce(kind: str):
    def handler(c, node, ins, attrs):
        x = ins[0]
        if len(ins) > 1 and ins[1] is not None:
            if isinstance(ins[1], _Act):
                return None
            axes = [int(a) for a in np.asarray(ins[1]).reshape(-1)]
        else:
            axes = [int(a) for a in attrs.get("axes", [])]
        keep = bool(int(attrs.get("keepdims", 1)))
        if not axes:
            if int(attrs.get("noop_with_empty_axes", 0)):
                return [x]
            axes = list(range(x.ex.ndim))
        torch = c.torch
        fn = {"ReduceMean": torch.mean, "ReduceSum": torch.sum, "ReduceMax": torch.amax,
              "ReduceMin": torch.amin}[kind]
        return [c.call(fn, x, tuple(axes), keep)]
    return handler


def _pad(c, node, ins, attrs):
    nn = c.nn
    x = ins[0]
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if c.opset < 11:
        pads, value = attrs["pads"], float(attrs.get("value", 0.0))
    else:
        if isinstance(ins[1], _Act):
            return None
        pads = np.asarray(ins[1]).reshape(-1).tolist()
        value = float(np.asarray(ins[2])) if len(ins) > 2 and ins[2] is not None and np.asarray(ins[2]).size else 0.0
        if len(ins) > 3 and ins[3] is not None:
            return None
    nd = x.ex.ndim
    k = nd - 2
    if k not in (1, 2, 3) or any(pads[i] or pads[i + nd] for i in range(2)) or any(p < 0 for p in pads):
        return None
    spatial = [pads[2 + i] for i in range(k)] + [pads[nd + 2 + i] for i in range(k)]
    torch_pads = tuple(_pads_torch(spatial, k))
    if mode == "constant" and value == 0.0:
        cls = [nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d][k - 1]
    elif mode == "reflect":
        cls = [nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d][k - 1]
    elif mode == "edge":
        cls = [nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d][k - 1]
    elif mode == "wrap":
        cls = [nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d][k - 1]
    else:
        return None
    return [c.module(cls(torch_pads), node.name or "pad", x)]


def _resize(c, node, ins, attrs):
    x = ins[0]
    mode = attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if any(isinstance(v, _Act) for v in ins[1:]) or x.ex.ndim < 3:
        return None
    from onnx.reference import ReferenceEvaluator

    feeds = {node.input[0]: np.zeros(tuple(x.ex.shape), dtype=np.float32)}
    for name, v in zip(node.input[1:], ins[1:]):
        if name and v is not None:
            feeds[name] = v
    out_shape = ReferenceEvaluator(node, opsets={"": c.opset}).run(None, feeds)[0].shape
    if tuple(out_shape[:2]) != tuple(x.ex.shape[:2]):
        return None
    size = tuple(int(s) for s in out_shape[2:])
    torch_mode = {"nearest": "nearest", "linear": {3: "linear", 4: "bilinear", 5: "trilinear"}[x.ex.ndim],
                  "cubic": "bicubic"}.get(mode)
    if torch_mode is None:
        return None
    kwargs = {} if torch_mode == "nearest" else {"align_corners": False}
    return [c.call(c.torch.nn.functional.interpolate, x, size=size, mode=torch_mode, **kwargs)]


def _shape(c, node, ins, attrs):
    x = ins[0]
    shape = np.asarray(x.ex.shape, dtype=np.int64)
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    return [shape[start:None if end is None else int(end)]]


def _layernorm(c, node, ins, attrs):
    x, scale = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    if isinstance(scale, _Act) or isinstance(bias, _Act):
        return None
    axis = int(attrs.get("axis", -1))
    axis = axis + x.ex.ndim if axis < 0 else axis
    shape = tuple(x.ex.shape[axis:])
    mod = c.nn.LayerNorm(shape, eps=float(attrs.get("epsilon", 1e-5)), elementwise_affine=True)
    with c.torch.no_grad():
        mod.weight.copy_(c.torch.as_tensor(np.broadcast_to(np.asarray(scale, dtype=np.float64), shape).copy()))
        mod.bias.copy_(c.torch.as_tensor(np.broadcast_to(
            np.asarray(0.0 if bias is None else bias, dtype=np.float64), shape).copy()))
    hint = node.input[1][: -len(".weight")] if node.input[1].endswith(".weight") else (node.name or "ln")
    return [c.module(mod, hint, x)]


_WEIGHTED = {"Conv", "Gemm", "MatMul", "BatchNormalization"}
_HANDLERS: dict[str, Callable] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "BatchNormalization": _batchnorm,
    **{k: _unary(k) for k in ("Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Abs", "Softsign", "Softplus",
                              "HardSwish", "Selu", "Erf", "Sqrt", "Identity", "Dropout", "Cos")},
    "LeakyRelu": _leaky, "Elu": _elu, "Gelu": _gelu, "HardSigmoid": _hardsigmoid, "Clip": _clip,
    "Add": _binary(operator.add), "Sub": _binary(operator.sub), "Mul": _binary(operator.mul),
    "Div": _binary(operator.truediv), "Sum": _sum,
    "MaxPool": _pool("MaxPool"), "AveragePool": _pool("AveragePool"),
    "GlobalAveragePool": _pool("GlobalAveragePool"), "GlobalMaxPool": _pool("GlobalMaxPool"),
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze_like, "Unsqueeze": _squeeze_like,
    "Transpose": _transpose, "Concat": _concat, "Split": _split, "Slice": _slice, "Gather": _gather,
    "Softmax": _softmax("Softmax"), "LogSoftmax": _softmax("LogSoftmax"),
    "ReduceMean": _reduce("ReduceMean"), "ReduceSum": _reduce("ReduceSum"),
    "ReduceMax": _reduce("ReduceMax"), "ReduceMin": _reduce("ReduceMin"),
    "Pad": _pad, "Resize": _resize, "Upsample": _resize, "Shape": _shape,
    "LayerNormalization": _layernorm,
}


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------

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
    conv = _Converter(model, path, input_shape)
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
