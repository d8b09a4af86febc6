"""Trace a PyTorch model with torch.fx into its exact channel-level layered DAG.

Contract
--------
:func:`trace_model` runs :func:`torch.fx.symbolic_trace` (torch's own modules are leaves,
so the forward pre-hooks of :mod:`torch.nn.utils.prune` are not traced through: masks are
read from the ``weight_mask`` buffers) and then runs the traced graph once on the example
input (an :class:`torch.fx.Interpreter` that records shapes) to learn every tensor's shape.  Each tensor becomes a *value*: a group of units that
index one of its dimensions (its *axis*: the channels of ``(N, C, H, W)``, the features of
``(N, F)`` or ``(N, L, F)``).  Then, node by node:

* ``Linear``, ``Conv1d/2d/3d`` (grouped, depthwise): a weighted block named by the
  parameter path the user knows (``layer1.0.conv1.weight``); mask = ``weight_mask`` for
  torch's prune format, else ``weight != 0``.  A non-zero bias makes a constant seed.
* BatchNorm (eval): identity; a non-zero effective shift ``beta - mean*gamma/sqrt(var+eps)``
  makes a constant seed.
* Activations with ``f(0) = 0`` (ReLU, GELU, SiLU, tanh, ...), dropout, pooling,
  interpolation, spatial mean/sum: the same units.  ``f(0) != 0`` (sigmoid, softplus, ...):
  identity into a new group whose units are all constant seeds.
* Residual add / mul (with broadcasting), ``torch.cat`` / ``stack``, flatten / view /
  reshape / permute / slicing: exact, by pushing a tensor of unit ids through the op and
  reading which units land in every slice of the result.
* ``nn.MultiheadAttention``: the value path keeps channel identity; query/key units feed
  every channel of their head (sound over-approximation).  ``matmul`` keeps the identity
  of the operand whose channel axis survives and mixes the other one.
* Anything else: an all-to-all block with all units seeded and a warning naming the op —
  never a false "dead".

The model is traced in eval mode (BatchNorm uses running statistics) and its training
flags are restored afterwards; the caller's model is not otherwise touched.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .._audit import AuditReport, audit
from .._graph import GraphBuilder, LayeredGraph
from .._reach import Reachability, reachability
from ..errors import InvalidGraph, NetgraphError, TraceFailed

__all__ = ["TracedModel", "trace_model", "example_tensor"]


# --------------------------------------------------------------------------------------
# Operator tables (what each known op does at the level of units)
# --------------------------------------------------------------------------------------

# Elementwise, f(0) == 0: the output units are the input units.
_ZERO_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Hardtanh, nn.Hardswish,
    nn.ELU, nn.CELU, nn.SELU, nn.Mish, nn.Softsign, nn.Tanhshrink, nn.Hardshrink,
    nn.Softshrink, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.Identity,
)
# Elementwise, f(0) != 0: identity into a group of constant seeds.
_SEED_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus, nn.LogSigmoid)
_POOL_MODULES = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2,
    nn.AvgPool3d: 3, nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3, nn.LPPool1d: 1,
    nn.LPPool2d: 2, nn.Upsample: None, nn.UpsamplingNearest2d: 2, nn.UpsamplingBilinear2d: 2,
    nn.ZeroPad1d: 1, nn.ZeroPad2d: 2, nn.ZeroPad3d: 3, nn.ReflectionPad1d: 1,
    nn.ReflectionPad2d: 2, nn.ReflectionPad3d: 3, nn.ReplicationPad1d: 1,
    nn.ReplicationPad2d: 2, nn.ReplicationPad3d: 3, nn.CircularPad1d: 1, nn.CircularPad2d: 2,
    nn.CircularPad3d: 3,
}
_ZERO_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.tanh, torch.tanh, F.hardtanh,
    F.hardswish, F.elu, F.celu, F.selu, F.mish, F.softsign, F.tanhshrink, F.hardshrink,
    F.softshrink, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.feature_alpha_dropout, torch.neg, operator.neg, torch.abs, operator.pos,
}
_SEED_FUNCTIONS = {torch.sigmoid, F.sigmoid, F.hardsigmoid, F.softplus, F.logsigmoid, torch.exp,
                   torch.cos, torch.cosh}
_ZERO_METHODS = {"relu", "tanh", "neg", "abs", "contiguous", "clone", "detach", "float", "double",
                 "half", "bfloat16", "to", "type_as", "cpu", "cuda"}
_SEED_METHODS = {"sigmoid", "exp", "cos"}
_POOL_FUNCTIONS = {
    F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3, F.avg_pool1d: 1, F.avg_pool2d: 2,
    F.avg_pool3d: 3, F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3,
    F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
    F.lp_pool1d: 1, F.lp_pool2d: 2, F.interpolate: None, F.upsample: None,
}
_MOVE_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze,
    torch.chunk, torch.split, torch.narrow, torch.movedim, torch.swapaxes, torch.flip,
    torch.roll, torch.unbind, torch.t, torch.select, operator.getitem, torch.tensor_split,
}
_MOVE_METHODS = {
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "squeeze",
    "unsqueeze", "chunk", "split", "narrow", "movedim", "swapaxes", "flip", "roll", "unbind",
    "select", "expand", "expand_as", "repeat", "view_as", "reshape_as", "tensor_split",
}
_JOIN_FUNCTIONS = {torch.cat, torch.concat, torch.stack, torch.hstack, torch.vstack}
_ADD_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub}
_MUL_FUNCTIONS = {operator.mul, operator.imul, operator.truediv, operator.itruediv, torch.mul,
                  torch.div, torch.maximum, torch.minimum}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_MUL_METHODS = {"mul", "mul_", "div", "div_"}
_REDUCE_FUNCTIONS = {torch.mean: "mean", torch.sum: "sum", torch.amax: "amax", torch.amin: "amin"}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
_SOFTMAX = {F.softmax, torch.softmax, F.log_softmax, torch.log_softmax, F.softmin}
_MATMUL = {torch.matmul, operator.matmul, torch.bmm}


@dataclass(frozen=True)
class _Val:
    """A tensor seen as a group: ``group``'s unit ``u`` is the slice ``u`` along ``axis``.

    ``axis=None``: the group has one unit standing for the whole tensor.
    """

    group: str
    axis: int | None
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Layer:
    """A module whose parameters follow the units of groups (used by compaction)."""

    kind: str  # "linear" | "conv" | "bn"
    module: str  # qualified name
    in_group: str
    out_group: str


@dataclass(frozen=True, eq=False)
class _Plan:
    """Which units must be removed together (ties) and which may never be (pins)."""

    ties: tuple[tuple[str, str, np.ndarray, np.ndarray], ...]
    pins: frozenset[str]
    layers: tuple[_Layer, ...]


@dataclass(frozen=True, eq=False)
class TracedModel:
    """The layered DAG of a traced model and the way back to its parameters.

    Attributes
    ----------
    graph : LayeredGraph
        Groups are fx node names (``layer1_0_conv1``); weighted blocks are named by the
        parameter path (``layer1.0.conv1.weight``).
    params : Mapping[str, tuple[str, str]]
        Weighted block name → (qualified module name, parameter name), e.g.
        ``"attn.in_proj_weight" -> ("attn", "in_proj_weight")``.
    input_shape : tuple of int
        Shape of the example input the model was traced with.
    """

    graph: LayeredGraph
    params: Mapping[str, tuple[str, str]]
    input_shape: tuple[int, ...]
    model: nn.Module = field(repr=False)
    _plan: _Plan = field(repr=False)

    def module(self, name: str) -> tuple[nn.Module, str]:
        """The (module, parameter name) behind weighted block ``name`` in the traced model."""
        qual, param = self.params[name]
        return self.model.get_submodule(qual), param

    def reachability(self) -> Reachability:
        return reachability(self.graph)

    def audit(self, source: str = "<model>", reach: Reachability | None = None) -> AuditReport:
        """The audit of the traced model (see :func:`netgraph.audit`)."""
        return audit(self.graph, reach, source=source)


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------

def example_tensor(model: nn.Module, example_input) -> torch.Tensor:
    """A tensor from ``example_input`` (a tensor is returned as is; a shape gives seeded normals)."""
    if isinstance(example_input, torch.Tensor):
        return example_input
    try:
        shape = tuple(int(s) for s in example_input)
    except (TypeError, ValueError):
        raise TraceFailed(
            f"example input must be a tensor or a shape such as (1, 3, 32, 32); got {example_input!r}"
        ) from None
    if not shape or min(shape) < 1:
        raise TraceFailed(f"input shape {shape} is empty; every dimension needs at least one element")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=gen, dtype=dtype)


def trace_model(model: nn.Module, example_input, *, channel_axis: int | None = None) -> TracedModel:
    """Trace ``model`` with torch.fx and build its exact channel-level :class:`LayeredGraph`.

    Parameters
    ----------
    model : nn.Module
        Plain or pruned with :mod:`torch.nn.utils.prune` (``weight_orig`` + ``weight_mask``).
    example_input : Tensor or tuple of int
        One input batch, or its shape (``(1, 3, 224, 224)``).
    channel_axis : int, optional
        The input's unit axis.  Default: 1, or the last axis of a 3-D+ input read directly
        by a ``Linear`` / ``MultiheadAttention`` / ``LayerNorm`` (token sequences).

    Returns
    -------
    TracedModel

    Raises
    ------
    TraceFailed
        torch.fx cannot trace the model, or the traced graph fails on the example input.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> with torch.no_grad():
    ...     net[0].weight[0] = 0
    >>> t = trace_model(net, (1, 4))
    >>> rep = t.audit()
    >>> rep.layer("2.weight").kept, rep.layer("2.weight").constant
    (6, 2)
    """
    if not isinstance(model, nn.Module):
        raise TraceFailed(f"expected an nn.Module, got {type(model).__name__}")
    x = example_tensor(model, example_input)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        try:
            graph = _LeafTracer().trace(model)
        except Exception as exc:  # fx raises many kinds (TraceError, TypeError, NotImplementedError)
            raise TraceFailed(
                f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: {exc}"
                .splitlines()[0] + "; control flow that depends on tensor values cannot be traced"
            ) from None
        gm = fx.GraphModule(model, graph)
        rec = _Recorder(gm)
        with torch.no_grad():
            try:
                rec.run(x)
            except TraceFailed:
                raise
            except Exception as exc:
                node = rec.current
                raise TraceFailed(
                    f"running {type(model).__name__} on an input of shape {tuple(x.shape)} failed at "
                    f"{_describe(node, gm) if node is not None else 'the start'}: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
        dag = _DagBuilder(model, gm, rec.values, channel_axis)
        graph_ = dag.run()
    finally:
        for m, mode in modes.items():
            m.training = mode
    return TracedModel(graph_, dict(dag.params), tuple(x.shape), model,
                       _Plan(tuple(dag.ties), frozenset(dag.pins), tuple(dag.layers)))


class _LeafTracer(fx.Tracer):
    """torch.nn modules are leaves (fx's default), so prune's pre-hooks are never traced."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: D102
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        return m.__module__.startswith("torch.nn") or super().is_leaf_module(m, qualname)


class _Recorder(fx.Interpreter):
    """Shape propagation that keeps every tensor's shape and every non-tensor result (sizes).

    Like :class:`torch.fx.passes.shape_prop.ShapeProp`, but it does not print a traceback
    to stderr when the model fails on the example input (the CLI owes a one-line error).
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}
        self.current: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        result = super().run_node(n)
        self.values[n] = _summary(result)
        return result


@dataclass(frozen=True)
class _TensorInfo:
    shape: tuple[int, ...]
    dtype: torch.dtype
    data: torch.Tensor | None = None  # kept for get_attr constants only


def _summary(value):
    if isinstance(value, torch.Tensor):
        return _TensorInfo(tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)) and not isinstance(value, torch.Size):
        return type(value)(_summary(v) for v in value) if not hasattr(value, "_fields") \
            else tuple(_summary(v) for v in value)
    if isinstance(value, dict):
        return {k: _summary(v) for k, v in value.items()}
    return value


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        return f"module {node.target!r} ({type(mod).__name__})"
    if node.op == "call_function":
        name = getattr(node.target, "__name__", repr(node.target))
        mod = getattr(node.target, "__module__", "") or ""
        return f"function {mod + '.' if mod else ''}{name} (node {node.name!r})"
    if node.op == "call_method":
        return f"method Tensor.{node.target} (node {node.name!r})"
    return f"{node.op} {node.target!r}"


# --------------------------------------------------------------------------------------
# Unit-id bookkeeping
# --------------------------------------------------------------------------------------

def _ids(val: _Val, offset: int = 0) -> torch.Tensor:
    """An int64 tensor of ``val.shape`` whose entries are the unit ids (plus ``offset``)."""
    if val.axis is None:
        return torch.full(val.shape, offset, dtype=torch.int64)
    view = [1] * len(val.shape)
    view[val.axis] = val.shape[val.axis]
    ids = torch.arange(offset, offset + val.shape[val.axis], dtype=torch.int64).view(view)
    return ids.expand(val.shape).contiguous()


def _axis_pairs(ids: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(id, unit) pairs: unit ``u`` is the slice ``u`` of ``ids`` along ``axis``; returns width."""
    if axis is None or ids.ndim == 0:
        uniq = np.unique(ids)
        return uniq.astype(np.int64), np.zeros(uniq.size, np.int64), 1
    width = ids.shape[axis]
    moved = np.moveaxis(ids, axis, 0).reshape(width, -1)
    unit = np.repeat(np.arange(width, dtype=np.int64), moved.shape[1])
    key = np.unique(moved.ravel().astype(np.int64) * width + unit)
    return key // width, key % width, width


def _best_axis(ids: np.ndarray, allowed: Sequence[int] | None = None, prefer: int | None = None):
    """The axis whose slices each hold the fewest distinct ids (ties: not batch, wider)."""
    if ids.ndim == 0 or ids.size == 0:
        rows, cols, w = _axis_pairs(ids, None)
        return None, rows, cols, w
    best = None
    for a in (allowed if allowed is not None else range(ids.ndim)):
        rows, cols, w = _axis_pairs(ids, a)
        worst = int(np.bincount(cols, minlength=w).max()) if cols.size else 0
        key = (worst, a == 0 and ids.ndim >= 2, -w, a != prefer)
        if best is None or key < best[0]:
            best = (key, a, rows, cols, w)
    _, a, rows, cols, w = best
    return a, rows, cols, w


def _is_identity(rows: np.ndarray, cols: np.ndarray, w_src: int, w_dst: int) -> bool:
    return w_src == w_dst and rows.size == w_src and bool(np.array_equal(rows, cols))


def _norm_dims(dims, ndim: int) -> list[int]:
    if dims is None:
        return list(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    return sorted({int(d) % ndim for d in dims}) if ndim else []


# --------------------------------------------------------------------------------------
# The DAG builder
# --------------------------------------------------------------------------------------

class _DagBuilder:
    def __init__(self, model: nn.Module, gm: fx.GraphModule, values: Mapping[fx.Node, Any],
                 channel_axis: int | None) -> None:
        self.model = model
        self.gm = gm
        self.values = values
        self.channel_axis = channel_axis
        self.b = GraphBuilder()
        self.vals: dict[fx.Node, Any] = {}
        self.params: dict[str, tuple[str, str]] = {}
        self.ties: list[tuple[str, str, np.ndarray, np.ndarray]] = []
        self.pins: set[str] = set()
        self.layers: list[_Layer] = []
        self.width: dict[str, int] = {}
        self.called: dict[str, int] = {}
        self.sinks: list[str] = []

    # -- graph primitives ---------------------------------------------------------------
    def group(self, name: str, width: int, seeds=None) -> str:
        if name in self.width:
            k = 2
            while f"{name}#{k}" in self.width:
                k += 1
            name = f"{name}#{k}"
        self.b.group(name, width)
        self.width[name] = width
        if seeds is not None and np.any(seeds):
            self.b.constant(name, np.asarray(seeds, dtype=bool))
        return name

    def link(self, src: str, dst: str, rows: np.ndarray, cols: np.ndarray, *, tie: bool, note: str = "") -> None:
        if _is_identity(rows, cols, self.width[src], self.width[dst]):
            self.b.identity(src, dst, name=f"{src}->{dst}")
        else:
            m = sp.coo_matrix((np.ones(rows.size, bool), (rows, cols)),
                              shape=(self.width[src], self.width[dst]))
            self.b.connect(src, dst, m, name=f"{src}->{dst}", note=note)
        if tie:
            self.ties.append((src, dst, rows, cols))
        else:
            self.pins.update((src, dst))

    def dense(self, srcs: Sequence[str], dst: str, note: str) -> None:
        for s in dict.fromkeys(srcs):
            self.b.dense(s, dst, self.width[dst], name=f"{s}->{dst}", note=note)
            self.pins.update((s, dst))
        self.pins.add(dst)

    # -- values ---------------------------------------------------------------------------
    def val(self, node) -> _Val | None:
        v = self.vals.get(node) if isinstance(node, fx.Node) else None
        return v if isinstance(v, _Val) else None

    def tensor_vals(self, args) -> list[_Val]:
        found: list[_Val] = []
        fx.node.map_arg(args, lambda n: found.append(self.val(n)) if self.val(n) else None)
        return found

    def out_shape(self, node) -> tuple[int, ...] | None:
        info = self.values.get(node)
        return info.shape if isinstance(info, _TensorInfo) else None

    def reaxis(self, v: _Val, allowed: Sequence[int], name: str) -> _Val:
        """The same tensor seen along an allowed axis (exact: slices → the units they hold)."""
        if v.axis in allowed:
            return v
        a, rows, cols, w = _best_axis(_ids(v).numpy(), allowed, prefer=allowed[0])
        g = self.group(f"{name}:in", w, seeds=None)
        self.link(v.group, g, rows, cols, tie=False)
        return _Val(g, a, v.shape)

    def new_from(self, srcs: Sequence[_Val], shape, name: str, *, prefer: int | None = None,
                 seeds: bool = False, tie: bool = True, alias_ok: bool = True) -> _Val:
        """Output of shape ``shape`` where element ``e`` reads element ``e`` (broadcast) of each src."""
        ids_list = []
        for v in srcs:
            ids = _ids(v)
            try:
                ids = torch.broadcast_to(ids, shape)
            except RuntimeError:
                return self.fallback_val(srcs, shape, name, note="shapes do not broadcast")
            ids_list.append((v, ids.numpy()))
        axis = prefer
        if axis is None:
            axis = next((v.axis + len(shape) - len(v.shape) for v in srcs if v.axis is not None), None)
        if axis is None and len(shape) >= 1:
            axis = 1 if len(shape) >= 2 else 0
        width = shape[axis] if axis is not None else 1
        pairs = [(v, *_axis_pairs(ids, axis)[:2]) for v, ids in ids_list]
        if alias_ok and not seeds and len(pairs) == 1:
            v, rows, cols = pairs[0]
            if _is_identity(rows, cols, self.width[v.group], width):
                return _Val(v.group, axis, tuple(shape))
        g = self.group(name, width, seeds=np.ones(width, bool) if seeds else None)
        for v, rows, cols in pairs:
            self.link(v.group, g, rows, cols,
                      tie=tie and _is_identity(rows, cols, self.width[v.group], width))
        return _Val(g, axis, tuple(shape))

    def fallback_val(self, srcs: Sequence[_Val], shape, name: str, note: str) -> _Val:
        axis = None if len(shape) == 0 else (1 if len(shape) >= 2 else 0)
        width = shape[axis] if axis is not None else 1
        g = self.group(name, width, seeds=np.ones(width, bool))
        self.dense([v.group for v in srcs], g, note=note)
        return _Val(g, axis, tuple(shape))

    # -- driver ---------------------------------------------------------------------------
    def run(self) -> LayeredGraph:
        for node in self.gm.graph.nodes:
            self.vals[node] = self.visit(node)
        sinks = list(dict.fromkeys(self.sinks))
        self.pins.update(sinks)  # output shapes are part of the contract
        if not sinks:
            raise TraceFailed("the model returns no tensor; there is no output to audit")
        try:
            return self.b.build(sinks=sinks)
        except InvalidGraph as exc:
            raise TraceFailed(f"the traced graph is inconsistent: {exc}") from None

    def visit(self, node: fx.Node):
        info = self.values.get(node)
        if node.op == "placeholder":
            return self.placeholder(node, info)
        if node.op == "output":
            for v in self.tensor_vals(node.args):
                self.sinks.append(v.group)
            return None
        if node.op == "get_attr":
            return self.get_attr(node, info)
        if not _has_tensor(info):
            return info if not isinstance(info, _TensorInfo) else None
        if node.op == "call_module":
            return self.call_module(node, self.gm.get_submodule(node.target))
        if node.op == "call_function":
            return self.call_function(node)
        if node.op == "call_method":
            return self.call_method(node)
        return self.unknown(node)

    def placeholder(self, node, info):
        if not isinstance(info, _TensorInfo):
            return None
        shape = info.shape
        axis = self.channel_axis
        if axis is None:
            axis = 1 if len(shape) >= 2 else (0 if len(shape) == 1 else None)
            if len(shape) >= 3 and any(
                u.op == "call_module"
                and isinstance(self.gm.get_submodule(u.target), (nn.Linear, nn.MultiheadAttention, nn.LayerNorm))
                for u in node.users
            ):
                axis = len(shape) - 1
        elif not -len(shape) <= axis < len(shape):
            raise TraceFailed(f"channel_axis={axis} is out of range for an input of shape {shape}")
        else:
            axis %= len(shape)
        width = shape[axis] if axis is not None else 1
        self.b.input(node.name, width)
        self.width[node.name] = width
        self.pins.add(node.name)
        return _Val(node.name, axis, shape)

    def get_attr(self, node, info):
        if not isinstance(info, _TensorInfo):
            return None
        obj = self.gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        nonzero = bool(torch.as_tensor(obj).ne(0).any()) if obj.numel() else False
        g = self.group(node.name, 1, seeds=np.array([nonzero]))
        self.pins.add(g)
        return _Val(g, None, info.shape)

    # -- modules -----------------------------------------------------------------------------
    def call_module(self, node, mod: nn.Module):
        shape = self.out_shape(node)
        args = [self.val(a) for a in node.args]
        x = args[0] if args else None
        if isinstance(mod, nn.MultiheadAttention):
            return self.mha(node, mod)
        if x is None:
            return self.unknown(node)
        if isinstance(mod, nn.Linear):
            return self.weighted(node, mod, x, "linear")
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return self.weighted(node, mod, x, "conv")
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            return self.batchnorm(node, mod, x)
        if isinstance(mod, _ZERO_MODULES) or (isinstance(mod, nn.PReLU) and mod.num_parameters == 1):
            return _Val(x.group, x.axis, shape)
        if isinstance(mod, nn.PReLU):
            x = self.reaxis(x, [1], node.name)
            self.pins.add(x.group)
            return _Val(x.group, x.axis, shape)
        if isinstance(mod, _SEED_MODULES):
            return self.new_from([x], shape, node.name, seeds=True)
        if type(mod) in _POOL_MODULES:
            return self.spatial(node, x, _POOL_MODULES[type(mod)], shape)
        if isinstance(mod, nn.ConstantPad1d | nn.ConstantPad2d | nn.ConstantPad3d):
            v = self.spatial(node, x, len(mod.padding) // 2, shape)
            return self.new_from([v], shape, node.name, seeds=True) if mod.value != 0 else v
        if isinstance(mod, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
            return self.softmax(node, x, mod.dim, shape)
        if isinstance(mod, nn.Flatten):
            tie = mod.start_dim == 1 and mod.end_dim == -1 and x.axis == 1
            return self.movement(node, tie=tie)
        if isinstance(mod, nn.Unflatten):
            return self.movement(node, tie=False)
        if isinstance(mod, nn.LayerNorm):
            nd = len(mod.normalized_shape)
            seeds = mod.bias is not None and bool(mod.bias.ne(0).any())
            if x.axis is not None and x.axis >= len(x.shape) - nd:
                g = self.group(node.name, self.width[x.group], seeds=np.full(self.width[x.group], seeds))
                self.dense([x.group], g, note="LayerNorm mixes the normalised dimensions")
                return _Val(g, x.axis, shape)
            return self.new_from([x], shape, node.name, seeds=seeds, tie=False, alias_ok=False)
        if isinstance(mod, nn.GroupNorm):
            x = self.reaxis(x, [1], node.name)
            c, per = mod.num_channels, mod.num_channels // mod.num_groups
            grp = np.arange(c) // per
            rows, cols = np.nonzero(grp[:, None] == grp[None, :])
            seeds = mod.bias is not None and bool(mod.bias.ne(0).any())
            g = self.group(node.name, c, seeds=np.full(c, seeds))
            self.link(x.group, g, rows.astype(np.int64), cols.astype(np.int64), tie=False)
            return _Val(g, 1, shape)
        return self.unknown(node)

    def weighted(self, node, mod: nn.Module, x: _Val, kind: str) -> _Val:
        qual = str(node.target)
        name = f"{qual}.weight"
        if name in self.params:
            raise TraceFailed(
                f"module {qual!r} is called more than once; shared weights are not supported "
                "(give each call its own module)"
            )
        shape = self.out_shape(node)
        nd = len(x.shape)
        x = self.reaxis(x, [nd - 1] if kind == "linear" else [1], node.name)
        mask = _mask_of(mod, "weight")
        groups = getattr(mod, "groups", 1)
        bias = _value_of(mod, "bias")
        seeds = None if bias is None else (bias.detach().double().cpu().numpy() != 0)
        out_axis = len(shape) - 1 if kind == "linear" else 1
        g = self.group(node.name, mask.shape[0], seeds=seeds)
        try:
            self.b.weight(name, x.group, g, mask, conv_groups=groups)
        except InvalidGraph as exc:
            raise TraceFailed(f"module {qual!r}: {exc}") from None
        self.params[name] = (qual, "weight")
        if kind == "conv" and groups > 1:
            in_ch = mask.shape[1] * groups
            if groups == in_ch:  # depthwise: input c and its outputs stand or fall together
                outs = np.arange(mask.shape[0], dtype=np.int64)
                self.ties.append((x.group, g, outs // (mask.shape[0] // groups), outs))
            else:
                self.pins.update((x.group, g))
        self.layers.append(_Layer(kind, qual, x.group, g))
        return _Val(g, out_axis, shape)

    def batchnorm(self, node, mod, x: _Val) -> _Val:
        shape = self.out_shape(node)
        x = self.reaxis(x, [1], node.name)
        if mod.running_mean is None or mod.running_var is None:
            seeds = np.ones(self.width[x.group], bool)  # batch statistics: not a fixed affine map
        else:
            mean = mod.running_mean.detach().double().cpu()
            var = mod.running_var.detach().double().cpu()
            gamma = mod.weight.detach().double().cpu() if mod.weight is not None else torch.ones_like(mean)
            beta = mod.bias.detach().double().cpu() if mod.bias is not None else torch.zeros_like(mean)
            shift = beta - mean * gamma / torch.sqrt(var + mod.eps)
            seeds = shift.numpy() != 0
        self.layers.append(_Layer("bn", str(node.target), x.group, x.group))
        if not seeds.any():
            return _Val(x.group, 1, shape)
        g = self.group(node.name, self.width[x.group], seeds=seeds)
        self.link(x.group, g, np.arange(self.width[x.group]), np.arange(self.width[x.group]), tie=True)
        return _Val(g, 1, shape)

    def spatial(self, node, x: _Val, k: int | None, shape) -> _Val:
        """Pooling / padding / resizing over the last ``k`` dims (None: all but batch and channel)."""
        nd = len(x.shape)
        k = nd - 2 if k is None else k
        allowed = [a for a in range(1, nd - k)] or [0]
        x = self.reaxis(x, allowed, node.name)
        return _Val(x.group, x.axis, shape)

    def softmax(self, node, x: _Val, dim, shape) -> _Val:
        nd = len(x.shape)
        if dim is None or x.axis is None or int(dim) % nd == x.axis:
            w = self.width[x.group]
            g = self.group(node.name, w, seeds=np.ones(w, bool))
            self.dense([x.group], g, note="softmax mixes the units it normalises")
            return _Val(g, x.axis, shape)
        return self.new_from([x], shape, node.name, seeds=True)

    def mha(self, node, mod: nn.MultiheadAttention):
        info = self.values[node]
        names = ["query", "key", "value"]
        ins = [node.args[i] if i < len(node.args) else node.kwargs.get(n) for i, n in enumerate(names)]
        vals = [self.val(a) for a in ins]
        if any(v is None for v in vals):
            return self.unknown(node)
        qual = str(node.target)
        e, h = mod.embed_dim, mod.num_heads
        vals = [self.reaxis(v, [len(v.shape) - 1], f"{node.name}:{n}") for v, n in zip(vals, names)]
        head = np.arange(e) // (e // h)
        bias = _value_of(mod, "in_proj_bias")
        bias = bias.detach().double().cpu().numpy() != 0 if bias is not None else np.zeros(3 * e, bool)
        for n in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            if f"{qual}.{n}" in self.params:
                raise TraceFailed(f"module {qual!r} is called more than once; shared weights are not supported")
        if mod._qkv_same_embed_dim:
            srcs = list(dict.fromkeys(v.group for v in vals))
            if len(srcs) == 1:
                src = srcs[0]
            else:  # cross-attention: one weight reads three tensors; merge them (over-approximation)
                src = self.group(f"{node.name}:qkv_in", e)
                for v in vals:
                    if v.group != src:
                        self.link(v.group, src, np.arange(e), np.arange(e), tie=False)
            qkv = self.group(f"{node.name}:qkv", 3 * e, seeds=bias)
            self.b.weight(f"{qual}.in_proj_weight", src, qkv, _mask_of(mod, "in_proj_weight"))
            self.params[f"{qual}.in_proj_weight"] = (qual, "in_proj_weight")
            parts = [(qkv, 0), (qkv, e), (qkv, 2 * e)]
            self.pins.update((src, qkv))
        else:
            parts = []
            for i, (v, n) in enumerate(zip(vals, ("q_proj_weight", "k_proj_weight", "v_proj_weight"))):
                g = self.group(f"{node.name}:{n[0]}", e, seeds=bias[i * e:(i + 1) * e])
                self.b.weight(f"{qual}.{n}", v.group, g, _mask_of(mod, n))
                self.params[f"{qual}.{n}"] = (qual, n)
                parts.append((g, 0))
                self.pins.update((v.group, g))
        extra = mod.bias_k is not None or mod.bias_v is not None
        ctx = self.group(f"{node.name}:ctx", e, seeds=np.ones(e, bool) if extra else None)
        blocks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        units = np.arange(e, dtype=np.int64)
        for which, (g, off) in enumerate(parts):
            if which == 2:  # value: channel identity
                rows, cols = units + off, units
            else:  # query / key unit d feeds every channel of its head
                rr, cc = np.nonzero(head[:, None] == head[None, :])
                rows, cols = rr.astype(np.int64) + off, cc.astype(np.int64)
            blocks.setdefault(g, []).append((rows, cols))
        for g, lst in blocks.items():
            rows = np.concatenate([r for r, _ in lst])
            cols = np.concatenate([c for _, c in lst])
            m = sp.coo_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(self.width[g], e))
            self.b.connect(g, ctx, m, name=f"{g}->{ctx}", note="attention")
        out_bias = _value_of(mod.out_proj, "bias")
        out = self.group(node.name, e, seeds=None if out_bias is None else out_bias.detach().double().cpu().numpy() != 0)
        self.b.weight(f"{qual}.out_proj.weight", ctx, out, _mask_of(mod.out_proj, "weight"))
        self.params[f"{qual}.out_proj.weight"] = (f"{qual}.out_proj", "weight")
        self.pins.update((ctx, out))
        result = [None, None]
        if isinstance(info, (tuple, list)) and isinstance(info[0], _TensorInfo):
            result[0] = _Val(out, len(info[0].shape) - 1, info[0].shape)
        if isinstance(info, (tuple, list)) and len(info) > 1 and isinstance(info[1], _TensorInfo):
            shape = info[1].shape
            axis = 1 if len(shape) >= 2 else None
            w = shape[axis] if axis is not None else 1
            g = self.group(f"{node.name}:weights", w, seeds=np.ones(w, bool))
            self.dense([g0 for g0, _ in parts], g, note="attention weights mix queries and keys")
            result[1] = _Val(g, axis, shape)
        return tuple(result)

    # -- functions and methods ------------------------------------------------------------------
    def call_function(self, node):
        fn = node.target
        shape = self.out_shape(node)
        if fn is operator.getitem and not isinstance(self.vals.get(node.args[0]), _Val):
            seq = self.vals.get(node.args[0])
            if isinstance(seq, (tuple, list)):
                idx = node.args[1]
                return seq[idx] if isinstance(idx, int) and -len(seq) <= idx < len(seq) else None
            return self.unknown(node)
        x = self.val(node.args[0]) if node.args else None
        if fn in _ZERO_FUNCTIONS and x is not None:
            return _Val(x.group, x.axis, shape)
        if fn in _SEED_FUNCTIONS and x is not None:
            return self.new_from([x], shape, node.name, seeds=True)
        if fn in _POOL_FUNCTIONS and x is not None:
            return self.spatial(node, x, _POOL_FUNCTIONS[fn], shape)
        if fn is F.pad and x is not None:
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
            pad = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else ())
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            if isinstance(pad, (tuple, list)) and all(isinstance(p, int) for p in pad):
                v = self.spatial(node, x, len(pad) // 2, shape)
                return self.new_from([v], shape, node.name, seeds=True) if mode == "constant" and value else v
            return self.unknown(node)
        if fn in (torch.clamp, torch.clip) and x is not None:
            return self.clamp(node, x, shape)
        if fn in _SOFTMAX and x is not None:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            return self.softmax(node, x, dim, shape)
        if fn in _MOVE_FUNCTIONS:
            tie = fn is torch.flatten and _flatten_tie(node, x, 1)
            return self.movement(node, tie=tie)
        if fn in _JOIN_FUNCTIONS:
            return self.movement(node, tie=fn in (torch.cat, torch.concat))
        if fn in _ADD_FUNCTIONS:
            return self.binary(node, additive=True)
        if fn in _MUL_FUNCTIONS:
            return self.binary(node, additive=False)
        if fn in _REDUCE_FUNCTIONS and x is not None:
            return self.reduce(node, x, shape)
        if fn in _MATMUL:
            return self.matmul(node)
        return self.unknown(node)

    def call_method(self, node):
        name = node.target
        shape = self.out_shape(node)
        x = self.val(node.args[0]) if node.args else None
        if x is None:
            return self.unknown(node)
        if name in _ZERO_METHODS:
            return _Val(x.group, x.axis, shape)
        if name in _SEED_METHODS:
            return self.new_from([x], shape, node.name, seeds=True)
        if name in ("clamp", "clip"):
            return self.clamp(node, x, shape)
        if name in ("softmax", "log_softmax"):
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            return self.softmax(node, x, dim, shape)
        if name in _MOVE_METHODS:
            tie = (name == "flatten" and _flatten_tie(node, x, 1)) or (
                name in ("view", "reshape") and _view_tie(node, x))
            return self.movement(node, tie=tie)
        if name in _ADD_METHODS:
            return self.binary(node, additive=True)
        if name in _MUL_METHODS:
            return self.binary(node, additive=False)
        if name in _REDUCE_METHODS:
            return self.reduce(node, x, shape)
        if name == "matmul":
            return self.matmul(node)
        return self.unknown(node)

    def clamp(self, node, x: _Val, shape) -> _Val:
        lo = node.kwargs.get("min", node.args[1] if len(node.args) > 1 else None)
        hi = node.kwargs.get("max", node.args[2] if len(node.args) > 2 else None)
        if isinstance(lo, fx.Node) or isinstance(hi, fx.Node):
            return self.unknown(node)
        zero_kept = (lo is None or lo <= 0) and (hi is None or hi >= 0)
        if zero_kept:
            return _Val(x.group, x.axis, shape)
        return self.new_from([x], shape, node.name, seeds=True)

    def reduce(self, node, x: _Val, shape) -> _Val:
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        if isinstance(dims, fx.Node) or isinstance(keep, fx.Node):
            return self.unknown(node)
        nd = len(x.shape)
        dims = _norm_dims(dims, nd)
        if x.axis is not None and x.axis not in dims:
            axis = x.axis if keep else x.axis - sum(d < x.axis for d in dims)
            return _Val(x.group, axis, shape)
        g = self.group(node.name, 1)
        self.dense([x.group], g, note="reduction over the units")
        return _Val(g, None, shape)

    def binary(self, node, *, additive: bool) -> _Val:
        shape = self.out_shape(node)
        operands = list(node.args[:2]) + [node.kwargs.get("other")] * (len(node.args) < 2)
        vals = [self.val(a) for a in operands if self.val(a) is not None]
        if not vals:
            return self.unknown(node)
        others = [a for a in operands if not isinstance(a, fx.Node)]
        scalar_nonzero = additive and any(
            isinstance(a, (int, float)) and a != 0 for a in others)
        if any(isinstance(a, fx.Node) and self.val(a) is None for a in operands):
            # a traced non-tensor value (e.g. a size): treat it as an unknown non-zero constant
            scalar_nonzero = scalar_nonzero or additive
        return self.new_from(vals, shape, node.name, seeds=scalar_nonzero)

    def matmul(self, node) -> _Val:
        shape = self.out_shape(node)
        a, b = (self.val(n) for n in node.args[:2])
        if a is None or b is None or len(a.shape) < 2 or len(b.shape) < 2:
            return self.unknown(node)
        nd = len(shape)
        if b.axis == len(b.shape) - 1:  # channel axis of B survives: identity from B, A mixes
            keep, mix, axis = b, a, nd - 1
        elif a.axis == len(a.shape) - 2:  # rows of A survive
            keep, mix, axis = a, b, nd - 2
        else:
            w = shape[nd - 1]
            g = self.group(node.name, w)
            self.dense([a.group, b.group], g, note="matmul contracts the units")
            return _Val(g, nd - 1, shape)
        w = shape[axis]
        g = self.group(node.name, w)
        self.link(keep.group, g, np.arange(w), np.arange(w), tie=False)
        self.dense([mix.group], g, note="matmul mixes the other operand")
        return _Val(g, axis, shape)

    def movement(self, node, *, tie: bool):
        """Exact units of a data-movement op: push unit ids through it and read the slices."""
        srcs: list[tuple[fx.Node, _Val, int]] = []
        offset = 0
        for n in node.all_input_nodes:
            v = self.val(n)
            if v is not None and all(s[0] is not n for s in srcs):
                srcs.append((n, v, offset))
                offset += self.width[v.group]
        if not srcs:
            return self.unknown(node)
        ids = {n: _ids(v, off) for n, v, off in srcs}

        def sub(n):
            if n in ids:
                return ids[n]
            value = self.values.get(n)
            if isinstance(value, _TensorInfo) or _has_tensor(value):
                raise _NotMovement
            return value

        try:
            args = fx.node.map_arg(node.args, sub)
            kwargs = fx.node.map_arg(node.kwargs, sub)
            if node.op == "call_function":
                out = node.target(*args, **kwargs)
            elif node.op == "call_method":
                out = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                out = self.gm.get_submodule(node.target)(*args, **kwargs)
        except _NotMovement:
            return self.unknown(node)
        except Exception as exc:  # an op that does not accept integer tensors
            return self.unknown(node, why=f"{type(exc).__name__}")
        if isinstance(out, torch.Tensor):
            return self._moved(node, out, srcs, tie, node.name)
        if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
            return tuple(self._moved(node, o, srcs, False, f"{node.name}:{i}") for i, o in enumerate(out))
        return self.unknown(node)

    def _moved(self, node, out: torch.Tensor, srcs, tie: bool, name: str) -> _Val:
        arr = out.numpy()
        prefer = srcs[0][1].axis
        axis, rows, cols, w = _best_axis(arr, prefer=prefer)
        shape = tuple(out.shape)
        if len(srcs) == 1:
            v = srcs[0][1]
            if _is_identity(rows, cols, self.width[v.group], w):
                return _Val(v.group, axis, shape)
        g = self.group(name, w)
        for n, v, off in srcs:
            sel = (rows >= off) & (rows < off + self.width[v.group])
            if sel.any():
                self.link(v.group, g, rows[sel] - off, cols[sel], tie=tie)
        return _Val(g, axis, shape)

    def unknown(self, node, why: str = ""):
        info = self.values.get(node)
        srcs = self.tensor_vals((node.args, node.kwargs))
        what = _describe(node, self.gm)
        extra = ""
        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            if any(p.dim() >= 2 for p in mod.parameters(recurse=True)):
                extra = "; its weights are not audited"
        self.b.warn(f"{what} is not modelled exactly{f' ({why})' if why else ''}; "
                    f"treated as all-to-all with constant outputs (conservative){extra}")

        def one(i, t):
            if not isinstance(t, _TensorInfo):
                return None
            return self.fallback_val(srcs, t.shape, node.name if i is None else f"{node.name}:{i}",
                                     note=f"unknown op {what}")

        if isinstance(info, _TensorInfo):
            return one(None, info)
        if isinstance(info, (tuple, list)):
            return tuple(one(i, t) for i, t in enumerate(info))
        return None


class _NotMovement(Exception):
    pass


def _has_tensor(value) -> bool:
    if isinstance(value, _TensorInfo):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return False


def _flatten_tie(node, x: _Val | None, default_start: int) -> bool:
    start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
    end = node.kwargs.get("end_dim", node.args[2] if len(node.args) > 2 else -1)
    return x is not None and x.axis == 1 and start == 1 and end == -1


def _view_tie(node, x: _Val) -> bool:
    shape = list(node.args[1:])
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = list(shape[0])
    return x.axis == 1 and len(shape) == 2 and shape[1] == -1


def _value_of(mod: nn.Module, name: str) -> torch.Tensor | None:
    """The tensor a module computes with: ``orig * mask`` for prune's format, else the attribute."""
    orig = getattr(mod, f"{name}_orig", None)
    mask = getattr(mod, f"{name}_mask", None)
    if isinstance(orig, torch.Tensor) and isinstance(mask, torch.Tensor):
        return (orig * mask).detach()
    value = getattr(mod, name, None)
    return value.detach() if isinstance(value, torch.Tensor) else None


def _mask_of(mod: nn.Module, name: str) -> np.ndarray:
    """Kept weights: the ``*_mask`` buffer when pruned with torch's prune (it wins over zeros)."""
    mask = getattr(mod, f"{name}_mask", None)
    if isinstance(mask, torch.Tensor):
        m = mask.detach().cpu()
        if not m.is_floating_point() and m.dtype != torch.bool:
            m = m.to(torch.int64)
        return m.numpy() if m.dtype == torch.bool else m.double().numpy()
    value = getattr(mod, name)
    return (value.detach().cpu() != 0).numpy()
