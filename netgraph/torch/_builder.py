"""The graph builder: fx nodes → the exact channel-level :class:`~netgraph.LayeredGraph`.

Contract
--------
:class:`DagBuilder` walks a traced :class:`torch.fx.GraphModule` once, in order, with the
shapes recorded by :class:`._shapes.Recorder`.  Each tensor becomes a *value* (:class:`Val`):
a group of units that index one of its dimensions (its *axis*: the channels of
``(N, C, H, W)``, the features of ``(N, F)`` or ``(N, L, F)``).  Every node is classified
by :func:`._ops.op_kind` and built by the handler of its kind (``_HANDLERS``):

* ``linear`` / ``conv`` (grouped, depthwise): a weighted block named by the parameter path
  the user knows (``layer1.0.conv1.weight``); mask = ``weight_mask`` for torch's prune
  format, else ``weight != 0``.  A non-zero bias makes a constant seed.
* ``bn`` (eval): identity; a non-zero effective shift ``beta - mean*gamma/sqrt(var+eps)``
  makes a constant seed.
* ``zero`` (ReLU, GELU, dropout, …), ``pool`` (pooling, interpolation, padding): the same
  units.  ``seed`` (sigmoid, exp, …): identity into a new group of constant seeds.
* ``add`` / ``mul`` (with broadcasting), ``join``, ``move``: exact, by pushing a tensor of
  unit ids through the op and reading which units land in every slice of the result.
* ``mha``: the value path keeps channel identity; query/key units feed every channel of
  their head (sound over-approximation).  ``matmul`` keeps the identity of the operand whose
  channel axis survives and mixes the other one.
* ``unknown``: an all-to-all block with all units seeded and a warning naming the op —
  never a false "dead".

It also records what compaction needs: which units must be removed together (ties), which
never (pins), and the modules whose parameters follow the groups (layers).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.fx as fx
import torch.nn as nn

from .._graph import GraphBuilder, LayeredGraph
from ..errors import InvalidGraph, TraceFailed
from ._ops import op_kind, pool_dims
from ._shapes import TensorInfo, describe, has_tensor

__all__ = ["DagBuilder", "Val", "Layer", "Plan", "mask_of", "value_of"]


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
    """See the module contract; :meth:`run` returns the graph, then read ``params``, ``ties``, ``pins``, ``layers``, ``vals``."""

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
        return info.shape if isinstance(info, TensorInfo) else None

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
            return self.b.build(sinks=sinks, topology="traced")
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
        if not has_tensor(info):
            return info if not isinstance(info, TensorInfo) else None
        if node.op in ("call_module", "call_function", "call_method"):
            return self.call(node)
        return self.unknown(node)

    def placeholder(self, node, info):
        if not isinstance(info, TensorInfo):
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
        if not isinstance(info, TensorInfo):
            return None
        obj = self.gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        nonzero = bool(torch.as_tensor(obj).ne(0).any()) if obj.numel() else False
        g = self.group(node.name, 1, seeds=np.array([nonzero]))
        self.pins.add(g)
        return _Val(g, None, info.shape)

    # -- modules -----------------------------------------------------------------------------
    # -- dispatch: one handler per kind of op (see ._ops) -------------------------------------
    def call(self, node):
        """Build the node's value with the handler of its kind (``_HANDLERS``)."""
        kind = op_kind(node, self.gm)
        mod = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        if kind == "mha":
            return self.mha(node, mod)
        if node.op == "call_function" and node.target is operator.getitem \
                and not isinstance(self.vals.get(node.args[0]), _Val):
            seq = self.vals.get(node.args[0])
            if isinstance(seq, (tuple, list)):
                idx = node.args[1]
                return seq[idx] if isinstance(idx, int) and -len(seq) <= idx < len(seq) else None
            return self.unknown(node)
        x = self.val(node.args[0]) if node.args else None
        handler = _HANDLERS.get(kind)
        if handler is None or (x is None and kind not in _NO_FIRST_ARG):
            return self.unknown(node)
        return handler(self, node, x, self.out_shape(node), mod)

    # -- handlers: (self, node, x = first tensor argument, out shape, module or None) -----------
    def on_linear(self, node, x, shape, mod):
        return self.weighted(node, mod, x, "linear")

    def on_conv(self, node, x, shape, mod):
        return self.weighted(node, mod, x, "conv")

    def on_bn(self, node, x, shape, mod):
        return self.batchnorm(node, mod, x)

    def on_zero(self, node, x, shape, mod):
        return _Val(x.group, x.axis, shape)

    def on_prelu(self, node, x, shape, mod):
        x = self.reaxis(x, [1], node.name)
        self.pins.add(x.group)
        return _Val(x.group, x.axis, shape)

    def on_seed(self, node, x, shape, mod):
        return self.new_from([x], shape, node.name, seeds=True)

    def on_pool(self, node, x, shape, mod):
        return self.spatial(node, x, pool_dims(node, self.gm), shape)

    def on_constpad(self, node, x, shape, mod):
        v = self.spatial(node, x, len(mod.padding) // 2, shape)
        return self.new_from([v], shape, node.name, seeds=True) if mod.value != 0 else v

    def on_pad(self, node, x, shape, mod):
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        pad = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else ())
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        if isinstance(pad, (tuple, list)) and all(isinstance(p, int) for p in pad):
            v = self.spatial(node, x, len(pad) // 2, shape)
            return self.new_from([v], shape, node.name, seeds=True) if mode == "constant" and value else v
        return self.unknown(node)

    def on_softmax(self, node, x, shape, mod):
        if mod is not None:
            dim = mod.dim
        else:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        return self.softmax(node, x, dim, shape)

    def on_flatten(self, node, x, shape, mod):
        tie = mod.start_dim == 1 and mod.end_dim == -1 and x.axis == 1
        return self.movement(node, tie=tie)

    def on_unflatten(self, node, x, shape, mod):
        return self.movement(node, tie=False)

    def on_layernorm(self, node, x, shape, mod):
        nd = len(mod.normalized_shape)
        seeds = mod.bias is not None and bool(mod.bias.ne(0).any())
        if x.axis is not None and x.axis >= len(x.shape) - nd:
            g = self.group(node.name, self.width[x.group], seeds=np.full(self.width[x.group], seeds))
            self.dense([x.group], g, note="LayerNorm mixes the normalised dimensions")
            return _Val(g, x.axis, shape)
        return self.new_from([x], shape, node.name, seeds=seeds, tie=False, alias_ok=False)

    def on_groupnorm(self, node, x, shape, mod):
        x = self.reaxis(x, [1], node.name)
        c, per = mod.num_channels, mod.num_channels // mod.num_groups
        grp = np.arange(c) // per
        rows, cols = np.nonzero(grp[:, None] == grp[None, :])
        seeds = mod.bias is not None and bool(mod.bias.ne(0).any())
        g = self.group(node.name, c, seeds=np.full(c, seeds))
        self.link(x.group, g, rows.astype(np.int64), cols.astype(np.int64), tie=False)
        return _Val(g, 1, shape)

    def on_clamp(self, node, x, shape, mod):
        return self.clamp(node, x, shape)

    def on_move(self, node, x, shape, mod):
        if node.op == "call_function":
            tie = node.target is torch.flatten and _flatten_tie(node, x, 1)
        else:
            tie = (node.target == "flatten" and _flatten_tie(node, x, 1)) or (
                node.target in ("view", "reshape") and _view_tie(node, x))
        return self.movement(node, tie=tie)

    def on_join(self, node, x, shape, mod):
        return self.movement(node, tie=node.target in (torch.cat, torch.concat))

    def on_add(self, node, x, shape, mod):
        return self.binary(node, additive=True)

    def on_mul(self, node, x, shape, mod):
        return self.binary(node, additive=False)

    def on_reduce(self, node, x, shape, mod):
        return self.reduce(node, x, shape)

    def on_matmul(self, node, x, shape, mod):
        return self.matmul(node)

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
        if isinstance(info, (tuple, list)) and isinstance(info[0], TensorInfo):
            result[0] = _Val(out, len(info[0].shape) - 1, info[0].shape)
        if isinstance(info, (tuple, list)) and len(info) > 1 and isinstance(info[1], TensorInfo):
            shape = info[1].shape
            axis = 1 if len(shape) >= 2 else None
            w = shape[axis] if axis is not None else 1
            g = self.group(f"{node.name}:weights", w, seeds=np.ones(w, bool))
            self.dense([g0 for g0, _ in parts], g, note="attention weights mix queries and keys")
            result[1] = _Val(g, axis, shape)
        return tuple(result)

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
            if isinstance(value, TensorInfo) or has_tensor(value):
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
        what = describe(node, self.gm)
        extra = ""
        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            if any(p.dim() >= 2 for p in mod.parameters(recurse=True)):
                extra = "; its weights are not audited"
        self.b.warn(f"{what} is not modelled exactly{f' ({why})' if why else ''}; "
                    f"treated as all-to-all with constant outputs (conservative){extra}")

        def one(i, t):
            if not isinstance(t, TensorInfo):
                return None
            return self.fallback_val(srcs, t.shape, node.name if i is None else f"{node.name}:{i}",
                                     note=f"unknown op {what}")

        if isinstance(info, TensorInfo):
            return one(None, info)
        if isinstance(info, (tuple, list)):
            return tuple(one(i, t) for i, t in enumerate(info))
        return None


_HANDLERS = {
    "linear": _DagBuilder.on_linear, "conv": _DagBuilder.on_conv, "bn": _DagBuilder.on_bn,
    "zero": _DagBuilder.on_zero, "prelu": _DagBuilder.on_prelu, "seed": _DagBuilder.on_seed,
    "pool": _DagBuilder.on_pool, "constpad": _DagBuilder.on_constpad, "pad": _DagBuilder.on_pad,
    "softmax": _DagBuilder.on_softmax, "flatten": _DagBuilder.on_flatten,
    "unflatten": _DagBuilder.on_unflatten, "layernorm": _DagBuilder.on_layernorm,
    "groupnorm": _DagBuilder.on_groupnorm, "clamp": _DagBuilder.on_clamp, "move": _DagBuilder.on_move,
    "join": _DagBuilder.on_join, "add": _DagBuilder.on_add, "mul": _DagBuilder.on_mul,
    "div": _DagBuilder.on_mul, "minmax": _DagBuilder.on_mul, "reduce": _DagBuilder.on_reduce,
    "matmul": _DagBuilder.on_matmul,
}
# kinds whose handler reads its operands itself (the first argument may be a scalar)
_NO_FIRST_ARG = {"move", "join", "add", "mul", "div", "minmax", "matmul"}


class _NotMovement(Exception):
    pass


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


DagBuilder = _DagBuilder
Val = _Val
Layer = _Layer
Plan = _Plan
mask_of = _mask_of
value_of = _value_of
