"""The tap-level audit: which kernel taps and positions of a traced model are effective.

Contract
--------
Every tensor of the traced graph is seen position by position (its full recorded shape,
batch included).  Three boolean maps are computed per tensor:

* ``accessible`` (forward): the value at this position depends on the input.
* ``constant`` (forward): the value carries a contribution of a constant source (a
  non-zero bias, BatchNorm shift or constant, an op whose output is never zero).  A
  position that is neither accessible nor constant is exactly 0 for every input.
* ``coaccessible`` (backward, from every output position): the position reaches an output.

A kept weight ``(o, i, tap d)`` is **effective** iff some coaccessible position of output
channel ``o`` reads through ``d`` an accessible position of input channel ``i``; it is
**constant** iff it is not effective and some coaccessible position of ``o`` reads through
``d`` a constant position of ``i`` (its contribution is input-independent).  Everything
else kept is dead and non-constant: zeroing it leaves every output unchanged.  With
indicator maps (0/1 floats) this is a binarised forward pass, a binarised backward pass
and, per weight, the weight-gradient correlation of the two (``> 0``).

Per op (kinds from :mod:`._ops`):

* conv / linear: the mask as weights; zero padding reads nothing, reflect / replicate /
  circular padding read the real positions they copy; stride, dilation, groups exact.
* add / sub / maximum / minimum: union.  mul: ``acc = acc_a & nz_b | acc_b & nz_a``,
  ``constant = cst_a & cst_b`` (``nz = acc | constant``: the positions that can be
  non-zero); backward, a factor's position is coaccessible iff the product's is and the
  other factor can be non-zero there.  Matmul between activations: the same rule per
  position of the contraction.  Division by a tensor: the divisor is never zero.
* seed ops (sigmoid, exp, softplus, …), softmax: never zero (``constant`` everywhere);
  softmax / LayerNorm / GroupNorm mix the positions they normalise.
* BatchNorm (eval): the same positions; a non-zero shift makes its channel constant.
* pooling, interpolation, padding, views, permutations, slicing, cat / split / stack,
  mean / sum: exact, by running the op itself on the indicator maps (max → average, so
  that every position of a window counts) and its vector-Jacobian product backwards.
* MultiheadAttention and unknown ops: every output position depends on every input
  position (sound over-approximation; the graph builder already warns about unknown ops);
  MultiheadAttention's weights stay at channel resolution.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .._reach import Reachability, WeightStates
from ._builder import Val, value_of
from ._ops import op_kind
from ._shapes import TensorInfo, describe, has_tensor
from ._tapconv import BoolConv, _any, as_float

__all__ = ["TapAnalysis", "tap_analysis"]

_F = torch.float32  # indicator maps: 0/1 values, re-binarised after every op (never overflow)


@dataclass
class _S:
    """The forward state of one tensor: accessible and constant positions (bool)."""

    acc: torch.Tensor
    cst: torch.Tensor

    @property
    def nz(self) -> torch.Tensor:
        """Positions that can be non-zero."""
        return self.acc | self.cst


@dataclass(frozen=True, eq=False)
class TapAnalysis:
    """The result of :func:`tap_analysis`.

    Attributes
    ----------
    weight_states : Mapping[str, WeightStates]
        Per weighted block (Linear / Conv) analysed at tap level: boolean arrays of the
        weight's shape.
    accessible, constant, coaccessible : Mapping[fx.Node, Tensor]
        Position maps of every tensor node (bool, the node's shape; tuples for
        multi-output nodes).
    """

    weight_states: Mapping[str, WeightStates]
    accessible: Mapping[Any, Any]
    constant: Mapping[Any, Any]
    coaccessible: Mapping[Any, Any]
    _pass: Any = field(default=None, repr=False)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Ops the pass over-approximated although the graph builder modelled them."""
        return tuple(self._pass.warnings) if self._pass is not None else ()

    def candidates(self) -> dict[str, np.ndarray]:
        """Per weighted block: the weights that are *not* kept but would be effective if they
        were (they read an accessible position at a coaccessible one) — where a repair may
        spend a budget.  Computed on demand (one dense correlation per layer)."""
        with torch.no_grad():
            return self._pass.candidates()

    def reachability(self, base: Reachability, vals: Mapping[fx.Node, Any]) -> Reachability:
        """``base`` (channel level) refined by the positions: a unit is accessible iff some
        position of its slice is (coaccessible, constant likewise), intersected with ``base``."""
        acc = {g: np.zeros_like(v) for g, v in base.accessible.items()}
        coacc = {g: np.zeros_like(v) for g, v in base.coaccessible.items()}
        const = {g: np.zeros_like(v) for g, v in base.constant.items()}
        seen: set[str] = set()
        for node, val in vals.items():
            if not isinstance(val, Val) or node not in self.accessible:
                continue
            a, c, k = self.accessible[node], self.coaccessible.get(node), self.constant[node]
            if not isinstance(a, torch.Tensor) or tuple(a.shape) != tuple(val.shape) or c is None:
                continue
            w = acc[val.group].shape[0]
            for store, t in ((acc, a), (coacc, c), (const, k)):
                store[val.group] |= _units(t, val.axis, w)
            seen.add(val.group)
        for g in base.accessible:
            if g in seen:
                acc[g] &= base.accessible[g]
                coacc[g] &= base.coaccessible[g]
                const[g] &= base.constant[g]
            else:
                acc[g], coacc[g], const[g] = base.accessible[g], base.coaccessible[g], base.constant[g]
        return Reachability(base.graph, acc, coacc, const)


def _units(t: torch.Tensor, axis: int | None, width: int) -> np.ndarray:
    if axis is None:
        return np.full(width, _any(t))
    rows = t.movedim(axis, 0).reshape(t.shape[axis], -1)
    if rows.shape[1] == 0:
        return np.zeros(rows.shape[0], dtype=bool)
    return rows.view(torch.uint8).amax(1).numpy().astype(bool)  # torch's ``any`` on bool is slow


def tap_analysis(gm: fx.GraphModule, values: Mapping[fx.Node, Any],
                 params: Mapping[str, tuple[str, str]]) -> TapAnalysis:
    """Run the tap-level analysis (see the module contract) on a traced, shape-recorded graph.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        The traced model (its modules hold the weights and masks).
    values : Mapping[fx.Node, Any]
        What :class:`._shapes.Recorder` kept: a :class:`TensorInfo` per tensor result.
    params : Mapping[str, tuple[str, str]]
        Weighted block name → (module, parameter), from the graph builder.

    Returns
    -------
    TapAnalysis
    """
    p = _Pass(gm, values, params)
    with torch.no_grad():
        p.forward()
        p.backward()
        states = p.weights()
    return TapAnalysis(states, p.acc, p.cst, p.co, p)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _f(t: torch.Tensor) -> torch.Tensor:
    return as_float(t)


def _kept(mod: nn.Module) -> torch.Tensor:
    """Kept weights (bool): the ``weight_mask`` buffer of torch's prune format, else non-zeros."""
    mask = getattr(mod, "weight_mask", None)
    t = mask if isinstance(mask, torch.Tensor) else mod.weight
    return t.detach().cpu().to(torch.bool).contiguous()  # as ``!= 0``, many times faster


def _unbroadcast(t: torch.Tensor, shape) -> torch.Tensor:
    """``any`` of a broadcast result back onto an operand of ``shape``."""
    shape = tuple(shape)
    extra = t.dim() - len(shape)
    if extra > 0:
        t = _any_over(t, tuple(range(extra))) if extra else t
    dims = tuple(i for i, s in enumerate(shape) if s == 1 and t.shape[i] != 1)
    if dims:
        t = _any_over(t, dims, keepdim=True)
    return t.expand(shape) if tuple(t.shape) != shape else t


def _any_over(t: torch.Tensor, dims, keepdim: bool = False) -> torch.Tensor:
    """``t.any(dims, keepdim)`` (``dims``: an int, a tuple, or ``None`` for all), for bool
    maps through ``uint8`` (torch's reduction over bool is not vectorised)."""
    dims = tuple(range(t.dim())) if dims is None else (dims,) if isinstance(dims, int) else tuple(dims)
    if not dims:
        return t
    if t.dtype != torch.bool or t.numel() == 0:
        return t.any(dim=dims, keepdim=keepdim)
    return t.view(torch.uint8).amax(dim=dims, keepdim=keepdim).to(torch.bool)


def _full(shape, value: bool) -> torch.Tensor:
    return torch.full(tuple(shape), value, dtype=torch.bool)


def _max_to_avg(fn, args, kwargs):
    """A max-type op replaced by its average twin, so that every position of a window counts."""
    table = {F.max_pool1d: F.avg_pool1d, F.max_pool2d: F.avg_pool2d, F.max_pool3d: F.avg_pool3d}
    if fn in table:
        names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        a = dict(zip(names, args))
        a.update(kwargs)
        if a.get("dilation", 1) not in (1, (1,), (1, 1), (1, 1, 1)) or a.get("return_indices"):
            raise _Unsupported("dilated max pooling")
        return table[fn], (a["input"], a["kernel_size"], a.get("stride"), a.get("padding", 0),
                           a.get("ceil_mode", False), True), {}
    adaptive = {F.adaptive_max_pool1d: F.adaptive_avg_pool1d, F.adaptive_max_pool2d: F.adaptive_avg_pool2d,
                F.adaptive_max_pool3d: F.adaptive_avg_pool3d}
    if fn in adaptive:
        if kwargs.get("return_indices") or (len(args) > 2 and args[2]):
            raise _Unsupported("adaptive max pooling with indices")
        return adaptive[fn], args[:2], {k: v for k, v in kwargs.items() if k != "return_indices"}
    if fn in (torch.amax, torch.amin):
        return torch.sum, args, kwargs
    if fn is F.pad:  # the pad value is a constant source (added by the handler), never input
        args, kwargs = tuple(args[:3]), {k: v for k, v in kwargs.items() if k != "value"}
        return fn, args, kwargs
    if fn in (F.interpolate, F.upsample):
        mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
        if mode == "bicubic":  # negative coefficients: zeros can appear by cancellation
            raise _Unsupported("bicubic interpolation")
    return fn, args, kwargs


_MAX_MODULES = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}
_ADAPTIVE_MAX_MODULES = {nn.AdaptiveMaxPool1d: F.adaptive_max_pool1d, nn.AdaptiveMaxPool2d: F.adaptive_max_pool2d,
                         nn.AdaptiveMaxPool3d: F.adaptive_max_pool3d}


def _module_as_function(mod: nn.Module):
    """A max-pooling module as ``(function, its arguments after the input)``, for the
    max → average substitution; ``(None, None)`` for any other module."""
    for cls in type(mod).__mro__:
        if cls in _MAX_MODULES:
            return _MAX_MODULES[cls], (mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode, False)
        if cls in _ADAPTIVE_MAX_MODULES:
            return _ADAPTIVE_MAX_MODULES[cls], (mod.output_size,)
    if isinstance(mod, nn.Upsample) and mod.mode == "bicubic":
        raise _Unsupported("bicubic interpolation")
    return None, None


class _Unsupported(Exception):
    pass


# --------------------------------------------------------------------------------------
# the pass
# --------------------------------------------------------------------------------------

class _Pass:
    def __init__(self, gm, values, params) -> None:
        self.gm = gm
        self.values = values
        self.params = params
        self.st: dict[fx.Node, Any] = {}
        self.co: dict[fx.Node, Any] = {}
        self.acc: dict[fx.Node, Any] = {}
        self.cst: dict[fx.Node, Any] = {}
        self.kind: dict[fx.Node, str] = {}
        self.weighted: dict[fx.Node, tuple] = {}
        self.warnings: list[str] = []  # node -> (name, kind, mask, padded acc/cst, geometry)

    # -- states ------------------------------------------------------------------------
    def state(self, a) -> _S | None:
        s = self.st.get(a) if isinstance(a, fx.Node) else None
        return s if isinstance(s, _S) else None

    def shape(self, node) -> tuple[int, ...] | None:
        info = self.values.get(node)
        return info.shape if isinstance(info, TensorInfo) else None

    def tensor_inputs(self, node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs),
                        lambda n: found.append(n) if self.state(n) is not None and n not in found else None)
        return found

    # -- forward -----------------------------------------------------------------------
    def forward(self) -> None:
        for node in self.gm.graph.nodes:
            st = self.visit(node)
            self.st[node] = st
            if isinstance(st, _S):
                self.acc[node], self.cst[node] = st.acc, st.cst
            elif isinstance(st, (tuple, list)):
                self.acc[node] = tuple(s.acc if isinstance(s, _S) else None for s in st)
                self.cst[node] = tuple(s.cst if isinstance(s, _S) else None for s in st)

    def visit(self, node):
        info = self.values.get(node)
        if node.op == "placeholder":
            if not isinstance(info, TensorInfo):
                return None
            return _S(_full(info.shape, True), _full(info.shape, False))
        if node.op == "output":
            return None
        if node.op == "get_attr":
            if not isinstance(info, TensorInfo):
                return None
            obj = self.gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            return _S(_full(info.shape, False), torch.as_tensor(obj).detach().cpu() != 0)
        if not has_tensor(info):
            return None
        if node.op == "call_function" and node.target is operator.getitem \
                and not isinstance(self.st.get(node.args[0]), _S):
            seq = self.st.get(node.args[0])
            idx = node.args[1]
            if isinstance(seq, (tuple, list)) and isinstance(idx, int) and -len(seq) <= idx < len(seq):
                return seq[idx]
            return self.unknown(node)
        kind = op_kind(node, self.gm)
        self.kind[node] = kind
        handler = getattr(self, f"f_{kind}", None)
        if handler is None:
            return self.unknown(node)
        try:
            out = handler(node)
        except _Unsupported:
            return self.unknown(node)
        except Exception as exc:  # a case the handler does not cover: stay sound, say so
            self.warnings.append(f"{describe(node, self.gm)} is not modelled per position "
                                 f"({type(exc).__name__}); over-approximated (every position)")
            return self.unknown(node)
        if out is None:
            return self.unknown(node)
        return out

    def unknown(self, node):
        """Every output position depends on every input position, and is constant."""
        self.kind[node] = "unknown"
        ins = [self.state(n) for n in self.tensor_inputs(node)]
        any_acc = any(_any(s.acc) for s in ins)
        info = self.values.get(node)

        def one(t):
            return _S(_full(t.shape, any_acc), _full(t.shape, True)) if isinstance(t, TensorInfo) else None

        if isinstance(info, TensorInfo):
            return one(info)
        if isinstance(info, (tuple, list)):
            return tuple(one(t) for t in info)
        return None

    # elementwise ---------------------------------------------------------------------
    def f_zero(self, node):
        x = self.state(node.args[0]) if node.args else None
        if x is None or tuple(x.acc.shape) != self.shape(node):
            return None
        return _S(x.acc, x.cst)

    f_prelu = f_zero

    def f_seed(self, node):
        x = self.state(node.args[0]) if node.args else None
        if x is None or tuple(x.acc.shape) != self.shape(node):
            return None
        return _S(x.acc, _full(x.acc.shape, True))

    def f_clamp(self, node):
        lo = node.kwargs.get("min", node.args[1] if len(node.args) > 1 else None)
        hi = node.kwargs.get("max", node.args[2] if len(node.args) > 2 else None)
        if isinstance(lo, fx.Node) or isinstance(hi, fx.Node):
            return None
        if (lo is None or lo <= 0) and (hi is None or hi >= 0):
            return self.f_zero(node)
        return self.f_seed(node)

    def _softmax_dim(self, node):
        if node.op == "call_module":
            dim = self.gm.get_submodule(node.target).dim
        else:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if not isinstance(dim, int):
            raise _Unsupported("softmax without an explicit dim")
        return dim

    def f_softmax(self, node):
        x = self.state(node.args[0])
        if x is None:
            return None
        dim = self._softmax_dim(node)
        return _S(_any_over(x.acc, dim, keepdim=True).expand(x.acc.shape), _full(x.acc.shape, True))

    def _norm_dims(self, node, x: _S):
        mod = self.gm.get_submodule(node.target)
        if isinstance(mod, nn.LayerNorm):
            nd = len(mod.normalized_shape)
            return mod, tuple(range(x.acc.dim() - nd, x.acc.dim()))
        return mod, None

    def f_layernorm(self, node):
        x = self.state(node.args[0])
        if x is None:
            return None
        mod, dims = self._norm_dims(node, x)
        acc = _any_over(x.acc, dims, keepdim=True).expand(x.acc.shape)
        cst = _any_over(x.cst, dims, keepdim=True).expand(x.acc.shape)
        bias = value_of(mod, "bias")
        if bias is not None:
            cst = cst | (bias.detach().cpu() != 0).expand(x.acc.shape)
        return _S(acc, cst)

    def _group_any(self, t: torch.Tensor, groups: int) -> torch.Tensor:
        n, c = t.shape[:2]
        g = _any_over(t.reshape(n, groups, -1), 2, keepdim=True)
        return g.expand(n, groups, t[0].numel() // groups).reshape(t.shape)

    def f_groupnorm(self, node):
        x = self.state(node.args[0])
        if x is None:
            return None
        mod = self.gm.get_submodule(node.target)
        acc = self._group_any(x.acc, mod.num_groups)
        cst = self._group_any(x.cst, mod.num_groups)
        bias = value_of(mod, "bias")
        if bias is not None:
            view = (1, -1) + (1,) * (x.acc.dim() - 2)
            cst = cst | (bias.detach().cpu() != 0).view(view).expand(x.acc.shape)
        return _S(acc, cst)

    def f_bn(self, node):
        x = self.state(node.args[0])
        if x is None or x.acc.dim() < 2:
            return None
        mod = self.gm.get_submodule(node.target)
        view = (1, -1) + (1,) * (x.acc.dim() - 2)
        if mod.running_mean is None or mod.running_var is None:  # batch statistics mix positions
            dims = (0,) + tuple(range(2, x.acc.dim()))
            return _S(_any_over(x.acc, dims, keepdim=True).expand(x.acc.shape), _full(x.acc.shape, True))
        mean = mod.running_mean.detach().double().cpu()
        var = mod.running_var.detach().double().cpu()
        gamma = mod.weight.detach().double().cpu() if mod.weight is not None else torch.ones_like(mean)
        beta = mod.bias.detach().double().cpu() if mod.bias is not None else torch.zeros_like(mean)
        shift = (beta - mean * gamma / torch.sqrt(var + mod.eps)) != 0
        return _S(x.acc, x.cst | shift.view(view).expand(x.acc.shape))

    # binary --------------------------------------------------------------------------
    def _operands(self, node):
        ops = list(node.args[:2])
        if len(ops) < 2:
            ops.append(node.kwargs.get("other"))
        return ops

    def _scalar(self, a):
        """A non-tensor operand's value (a traced size counts as its recorded value)."""
        if isinstance(a, fx.Node):
            v = self.values.get(a)
            return v if isinstance(v, (int, float, bool)) else 1.0
        return a

    def f_add(self, node):
        shape = self.shape(node)
        acc, cst = _full(shape, False), _full(shape, False)
        for a in self._operands(node):
            s = self.state(a)
            if s is not None:
                acc = acc | s.acc
                cst = cst | s.cst
            elif isinstance(a, fx.Node) and isinstance(self.values.get(a), TensorInfo):
                return None
            elif a is not None and self._scalar(a) != 0:
                cst = _full(shape, True)
        alpha = node.kwargs.get("alpha", 1)
        if alpha == 0:
            return None
        return _S(acc, cst)

    f_minmax = f_add

    def f_mul(self, node):
        shape = self.shape(node)
        a, b = self._operands(node)
        sa, sb = self.state(a), self.state(b)
        for other in (a, b):
            if self.state(other) is None and isinstance(other, fx.Node) \
                    and isinstance(self.values.get(other), TensorInfo):
                return None
        if sa is not None and sb is not None:
            acc = (sa.acc & sb.nz) | (sb.acc & sa.nz)
            return _S(acc.expand(shape), (sa.cst & sb.cst).expand(shape))
        s, c = (sa, b) if sa is not None else (sb, a)
        if self._scalar(c) == 0:
            return _S(_full(shape, False), _full(shape, False))
        return _S(s.acc.expand(shape), s.cst.expand(shape))

    def f_div(self, node):
        shape = self.shape(node)
        a, b = self._operands(node)
        sa, sb = self.state(a), self.state(b)
        if sa is not None and sb is not None:
            return _S((sa.acc | (sb.acc & sa.nz)).expand(shape), sa.cst.expand(shape))
        if sa is not None:
            return _S(sa.acc.expand(shape), sa.cst.expand(shape))
        if sb is not None and self._scalar(a) != 0:  # c / b: never zero
            return _S(sb.acc.expand(shape), _full(shape, True))
        return None

    def f_matmul(self, node):
        a, b = node.args[:2]
        sa, sb = self.state(a), self.state(b)
        if sa is None or sb is None or sa.acc.dim() < 2 or sb.acc.dim() < 2:
            return None
        acc = (_f(sa.acc) @ _f(sb.nz) + _f(sa.nz) @ _f(sb.acc)) > 0
        cst = (_f(sa.cst) @ _f(sb.cst)) > 0
        return _S(acc, cst)

    # weighted ------------------------------------------------------------------------
    def f_linear(self, node):
        x = self.state(node.args[0])
        mod = self.gm.get_submodule(node.target)
        name = f"{node.target}.weight"
        if x is None or name not in self.params:
            return None
        m = _f(_kept(mod))
        acc = (_f(x.acc) @ m.T) > 0
        cst = (_f(x.cst) @ m.T) > 0
        bias = value_of(mod, "bias")
        if bias is not None:
            cst = cst | (bias.detach().cpu() != 0)
        self.weighted[node] = (name, "linear", m, x.acc, x.cst, None)
        return _S(acc, cst)

    def _conv_geometry(self, mod, x: torch.Tensor):
        nd = x.dim() - 2
        k = tuple(mod.kernel_size)
        dil = tuple(mod.dilation)
        if isinstance(mod.padding, str):
            if mod.padding == "valid":
                pads = [(0, 0)] * nd
            else:  # "same": torch pads the extra element on the right
                pads = [((d * (kk - 1)) // 2, d * (kk - 1) - (d * (kk - 1)) // 2) for d, kk in zip(dil, k)]
        else:
            pads = [(p, p) for p in mod.padding]
        flat = []
        for lo, hi in reversed(pads):  # F.pad order: last dim first
            flat += [lo, hi]
        mode = "constant" if mod.padding_mode == "zeros" else mod.padding_mode
        return nd, tuple(flat), mode

    def _pad(self, t: torch.Tensor, pad, mode: str) -> torch.Tensor:
        if not any(pad):
            return t
        return F.pad(t, pad, mode=mode) if mode != "constant" else F.pad(t, pad)

    def _pad_map(self, t: torch.Tensor, pad, mode: str) -> torch.Tensor:
        """A boolean map padded (zero padding reads nothing; other modes copy positions)."""
        if not any(pad):
            return t
        return F.pad(t, pad) if mode == "constant" else F.pad(_f(t), pad, mode=mode) > 0

    def f_conv(self, node):
        x = self.state(node.args[0])
        mod = self.gm.get_submodule(node.target)
        name = f"{node.target}.weight"
        if x is None or name not in self.params:
            return None
        nd, pad, mode = self._conv_geometry(mod, x.acc)
        mask = _kept(mod)
        pa, pc = self._pad_map(x.acc, pad, mode), self._pad_map(x.cst, pad, mode)
        conv = BoolConv(mask, mod.stride, mod.dilation, mod.groups, pa.shape, self.shape(node))
        acc, cst = conv.forward(pa), conv.forward(pc)
        bias = value_of(mod, "bias")
        if bias is not None:
            cst = cst | (bias.detach().cpu() != 0).view((1, -1) + (1,) * nd)
        self.weighted[node] = (name, "conv", conv, pa, pc, (nd, pad, mode, mod))
        return _S(acc, cst.expand(acc.shape))

    def f_mha(self, node):
        return None  # over-approximated (unknown); its weights stay at channel resolution

    # structural: run the op itself ---------------------------------------------------
    def _call(self, node, sub, *, any_window: bool):
        args = fx.node.map_arg(node.args, sub)
        kwargs = fx.node.map_arg(node.kwargs, sub)
        if node.op == "call_function":
            fn, args, kwargs = _max_to_avg(node.target, args, kwargs) if any_window else (node.target, args, kwargs)
            return fn(*args, **kwargs)
        if node.op == "call_method":
            if any_window and node.target in ("amax", "amin"):
                return args[0].sum(*args[1:], **kwargs)
            # the states may be laid out differently from the traced values: view → reshape
            method = {"view": "reshape", "view_as": "reshape_as"}.get(node.target, node.target)
            return getattr(args[0], method)(*args[1:], **kwargs)
        mod = self.gm.get_submodule(node.target)
        if any_window and isinstance(mod, (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)):
            return F.pad(args[0], mod.padding)  # its value is a constant source (see f_constpad)
        if any_window:
            fn, extra = _module_as_function(mod)
            if fn is not None:
                fn2, a2, k2 = _max_to_avg(fn, (args[0],) + tuple(extra), {})
                return fn2(*a2, **k2)
        return mod(*args, **kwargs)

    def _sub(self, pick):
        def sub(n):
            s = self.state(n)
            if s is not None:
                return pick(n, s)
            v = self.values.get(n)
            if has_tensor(v):
                raise _Unsupported("a tensor operand without a state")
            return v
        return sub

    def f_struct(self, node):
        outs = []
        for which in ("acc", "cst"):
            out = self._call(node, self._sub(lambda n, s: _f(getattr(s, which))), any_window=True)
            outs.append(out)
        acc, cst = outs
        if isinstance(acc, torch.Tensor):
            if tuple(acc.shape) != self.shape(node):
                raise _Unsupported("shape")
            return _S(acc > 0, cst > 0)
        if isinstance(acc, (tuple, list)):
            return tuple(_S(a > 0, c > 0) if isinstance(a, torch.Tensor) else None for a, c in zip(acc, cst))
        return None

    f_pool = f_move = f_join = f_reduce = f_flatten = f_unflatten = f_struct

    def f_pad(self, node):
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        out = self.f_struct(node)  # padded with zeros (or the real positions it copies)
        if mode == "constant" and value:
            out = _S(out.acc, out.cst | self._pad_border(node))
        return out

    def f_constpad(self, node):
        out = self.f_struct(node)
        if self.gm.get_submodule(node.target).value != 0:
            out = _S(out.acc, out.cst | self._pad_border(node))
        return out

    def _pad_border(self, node) -> torch.Tensor:
        """The positions a constant pad fills (``True`` there)."""
        x = self.state(node.args[0])
        if node.op == "call_function":
            pad = node.kwargs.get("pad", node.args[1])
        else:
            pad = self.gm.get_submodule(node.target).padding
        return F.pad(torch.ones(x.acc.shape, dtype=_F), pad) == 0

    # -- backward ----------------------------------------------------------------------
    def add_co(self, node, co) -> None:
        if co is None:
            return
        prev = self.co.get(node)
        if prev is None:
            self.co[node] = co
        elif isinstance(prev, tuple):
            self.co[node] = tuple(p if c is None else (c if p is None else p | c) for p, c in zip(prev, co))
        else:
            self.co[node] = prev | co

    def backward(self) -> None:
        nodes = list(self.gm.graph.nodes)
        for node in nodes:
            if node.op == "output":
                def mark(n):
                    s = self.st.get(n)
                    if isinstance(s, _S):
                        self.add_co(n, _full(s.acc.shape, True))
                    return n
                fx.node.map_arg(node.args, mark)
        for node in reversed(nodes):
            co = self.co.get(node)
            st = self.st.get(node)
            if co is None and isinstance(st, _S):
                co = self.co[node] = _full(st.acc.shape, False)
            if co is None and isinstance(st, (tuple, list)):
                co = self.co[node] = tuple(_full(s.acc.shape, False) if isinstance(s, _S) else None for s in st)
            if co is None or node.op in ("placeholder", "get_attr", "output"):
                continue
            if isinstance(co, tuple):
                co = tuple(c if c is not None or not isinstance(s, _S) else _full(s.acc.shape, False)
                           for c, s in zip(co, st))
            self.back(node, co)

    def back(self, node, co) -> None:
        if node.op == "call_function" and node.target is operator.getitem \
                and not isinstance(self.st.get(node.args[0]), _S):
            seq = self.st.get(node.args[0])
            if isinstance(seq, (tuple, list)):
                idx = node.args[1] % len(seq)
                full = [None] * len(seq)
                full[idx] = co
                self.add_co(node.args[0], tuple(full))
            return
        kind = self.kind.get(node, "unknown")
        handler = getattr(self, f"b_{kind}", None)
        if handler is None or kind == "unknown":
            return self.b_unknown(node, co)
        try:
            handler(node, co)
        except _Unsupported:
            self.b_unknown(node, co)
        except Exception as exc:  # see visit
            self.warnings.append(f"{describe(node, self.gm)} is not modelled per position backwards "
                                 f"({type(exc).__name__}); over-approximated (every position)")
            self.b_unknown(node, co)

    def b_unknown(self, node, co) -> None:
        cos = co if isinstance(co, tuple) else (co,)
        hit = any(c is not None and _any(c) for c in cos)
        for n in self.tensor_inputs(node):
            self.add_co(n, _full(self.state(n).acc.shape, hit))

    def b_zero(self, node, co) -> None:
        self.add_co(node.args[0], co)

    b_prelu = b_seed = b_clamp = b_zero

    def b_bn(self, node, co) -> None:
        mod = self.gm.get_submodule(node.target)
        if mod.running_mean is None or mod.running_var is None:
            dims = (0,) + tuple(range(2, co.dim()))
            co = _any_over(co, dims, keepdim=True).expand(co.shape)
        self.add_co(node.args[0], co)

    def b_softmax(self, node, co) -> None:
        dim = self._softmax_dim(node)
        self.add_co(node.args[0], _any_over(co, dim, keepdim=True).expand(co.shape))

    def b_layernorm(self, node, co) -> None:
        x = self.state(node.args[0])
        _, dims = self._norm_dims(node, x)
        self.add_co(node.args[0], _any_over(co, dims, keepdim=True).expand(co.shape))

    def b_groupnorm(self, node, co) -> None:
        mod = self.gm.get_submodule(node.target)
        self.add_co(node.args[0], self._group_any(co, mod.num_groups))

    def b_add(self, node, co) -> None:
        for a in self._operands(node):
            s = self.state(a)
            if s is not None:
                self.add_co(a, _unbroadcast(co, s.acc.shape))

    b_minmax = b_add

    def b_mul(self, node, co) -> None:
        a, b = self._operands(node)
        sa, sb = self.state(a), self.state(b)
        if sa is not None and sb is not None:
            self.add_co(a, _unbroadcast(co & sb.nz, sa.acc.shape))
            self.add_co(b, _unbroadcast(co & sa.nz, sb.acc.shape))
            return
        s, n, c = (sa, a, b) if sa is not None else (sb, b, a)
        if self._scalar(c) != 0:
            self.add_co(n, _unbroadcast(co, s.acc.shape))

    def b_div(self, node, co) -> None:
        a, b = self._operands(node)
        sa, sb = self.state(a), self.state(b)
        if sa is not None:
            self.add_co(a, _unbroadcast(co, sa.acc.shape))
        if sb is not None:
            nz = sa.nz if sa is not None else _full(co.shape, True)
            self.add_co(b, _unbroadcast(co & nz, sb.acc.shape))

    def b_matmul(self, node, co) -> None:
        a, b = node.args[:2]
        sa, sb = self.state(a), self.state(b)
        ca = (_f(co) @ _f(sb.nz).transpose(-1, -2)) > 0
        cb = (_f(sa.nz).transpose(-1, -2) @ _f(co)) > 0
        self.add_co(a, _unbroadcast(ca, sa.acc.shape))
        self.add_co(b, _unbroadcast(cb, sb.acc.shape))

    def b_linear(self, node, co) -> None:
        name, kind, m, *_ = self.weighted[node]
        self.add_co(node.args[0], (_f(co) @ m) > 0)

    def b_conv(self, node, co) -> None:
        name, kind, conv, pa, pc, (nd, pad, mode, mod) = self.weighted[node]
        gp = conv.backward(co)  # positions of the padded input
        x = self.state(node.args[0])
        if any(pad):
            if mode == "constant":  # padding reads nothing: crop it
                index = [slice(None), slice(None)]
                for d in range(nd):
                    lo, hi = pad[2 * (nd - 1 - d)], pad[2 * (nd - 1 - d) + 1]
                    index.append(slice(lo, gp.shape[2 + d] - hi))
                gp = gp[tuple(index)]
            else:  # the padded positions copy real ones: send their marks back there
                t = torch.ones(x.acc.shape, dtype=_F, requires_grad=True)
                with torch.enable_grad():
                    (gp,) = torch.autograd.grad(F.pad(t, pad, mode=mode), t, _f(gp))
                gp = gp > 0
        self.add_co(node.args[0], gp)

    def b_mha(self, node, co) -> None:
        self.b_unknown(node, co)

    def b_struct(self, node, co) -> None:
        ins = self.tensor_inputs(node)
        leaves = {n: torch.ones(self.state(n).acc.shape, dtype=_F, requires_grad=True) for n in ins}
        with torch.enable_grad():
            out = self._call(node, self._sub(lambda n, s: leaves[n]), any_window=True)
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            cos = list(co) if isinstance(co, tuple) else [co]
            pairs = [(o, _f(c)) for o, c in zip(outs, cos)
                     if isinstance(o, torch.Tensor) and o.requires_grad and c is not None]
            if not pairs:
                return
            grads = torch.autograd.grad([o for o, _ in pairs], list(leaves.values()),
                                        [c for _, c in pairs], allow_unused=True)
        for n, g in zip(leaves, grads):
            if g is not None:
                self.add_co(n, g > 0)

    b_pool = b_move = b_join = b_reduce = b_flatten = b_unflatten = b_pad = b_constpad = b_struct

    # -- weights -----------------------------------------------------------------------
    def weights(self) -> dict[str, WeightStates]:
        out = {}
        for node, (name, kind, m, a, c, geo) in self.weighted.items():
            co = self.co.get(node)
            if not isinstance(co, torch.Tensor):
                continue
            if kind == "linear":
                kept = (m > 0).numpy()
                A, C, B = (_f(t).reshape(-1, t.shape[-1]) for t in (a, c, co))
                eff = (B.T @ A) > 0
                acc = (torch.ones_like(B).T @ A) > 0
                coacc = (B.T @ torch.ones_like(A)) > 0
                cst = (B.T @ C) > 0
            else:
                conv = m
                kept = conv.mask.numpy()
                eff = conv.correlate(a, co)  # kept weights only
                acc = conv.read_any(a)
                nd, pad, mode, mod = geo
                x_shape = tuple(self.state(node.args[0]).acc.shape)
                inside = self._pad_map(torch.ones((1, 1) + x_shape[2:], dtype=torch.bool), pad, mode)
                coacc = conv.written_any(co, inside)
                cst = conv.correlate(c, co)  # kept weights only
            eff_n = eff.numpy() & kept if kind == "linear" else eff.numpy()
            dead = kept ^ eff_n  # kept and not effective
            cst_n = dead & cst.numpy()
            out[name] = WeightStates(kept, kept & acc.numpy(), kept & coacc.numpy(), eff_n, dead, cst_n)
        return out

    def candidates(self) -> dict[str, np.ndarray]:
        """Unkept weights that would be effective (dense correlations: computed on demand)."""
        out = {}
        for node, (name, kind, m, a, c, geo) in self.weighted.items():
            co = self.co.get(node)
            if not isinstance(co, torch.Tensor):
                continue
            if kind == "linear":
                A, B = (_f(t).reshape(-1, t.shape[-1]) for t in (a, co))
                out[name] = ~(m > 0).numpy() & ((B.T @ A) > 0).numpy()
            else:
                out[name] = ~m.mask.numpy() & m.correlate(a, co, kept_only=False).numpy()
        return out
