"""An independent tap-level oracle: the pixel-level float64 gradient probe.

Written apart from the engine (no torch.fx, no netgraph graph, no op table shared with
:mod:`netgraph.torch`): the model runs eagerly under a :class:`torch.overrides.TorchFunctionMode`
that replaces every numeric function by a non-negative polynomial with the same zero
pattern, on a float64 copy whose kept weights are 1.

Contract
--------
Every tensor is carried as two halves stacked along the batch axis: the part that depends on
the input (``x``, the input is all ones) and the part that does not (``c``: biases, BatchNorm
shifts, constants, and the never-zero outputs of sigmoid / exp / softmax, each as 1 where
non-zero).  Linear ops (conv, linear, pooling with max → average, padding, views, cat, sums)
act on both halves; ``a · b`` is ``x = ax·bx + ax·bc + ac·bx``, ``c = ac·bc`` (and the same
for ``a @ b``); ``a + b`` adds; activations with ``f(0) = 0`` are the identity; ``σ(h)`` is
``x = hx``, ``c = hc + 1``.  All values are ≥ 0, so nothing cancels.  Each weight is used by
the ``x`` half through one leaf tensor and by the ``c`` half through another; with
``P = Σ outputs``:

* kept weight ``w`` is **effective** iff ``∂P/∂w_x > 0`` (it reads an input-dependent value
  at a position that reaches an output);
* a kept, non-effective weight is **constant** iff ``∂P/∂w_c > 0``.

Only ``nn.Linear`` and ``nn.ConvNd`` weights are probed.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune
from torch.overrides import TorchFunctionMode

__all__ = ["tap_probe", "ProbeResult"]

_IDENTITY = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu", "silu", "hardswish", "elu",
             "elu_", "leaky_relu", "leaky_relu_", "mish", "tanh", "tanh_", "neg", "__neg__", "abs",
             "__abs__", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
             "feature_alpha_dropout", "celu", "selu", "softsign", "tanhshrink", "hardshrink",
             "softshrink", "prelu", "silu_", "hardswish_", "__pos__"}
_SEED = {"sigmoid", "sigmoid_", "hardsigmoid", "softplus", "logsigmoid", "exp", "exp_", "cos", "cosh"}
_ADD = {"add", "add_", "__add__", "__iadd__", "__radd__", "sub", "sub_", "__sub__", "__isub__",
        "__rsub__", "rsub", "maximum", "minimum"}
_MUL = {"mul", "mul_", "__mul__", "__imul__", "__rmul__", "multiply"}
_DIV = {"div", "div_", "__truediv__", "__itruediv__", "true_divide"}
_MATMUL = {"matmul", "__matmul__", "bmm", "mm"}
_SOFTMAX = {"softmax", "log_softmax", "softmin", "_softmax"}
_MAXPOOL = {"max_pool1d": F.avg_pool1d, "max_pool2d": F.avg_pool2d, "max_pool3d": F.avg_pool3d,
            "_max_pool1d": F.avg_pool1d, "_max_pool2d": F.avg_pool2d, "_max_pool3d": F.avg_pool3d}
_ADAPTIVE_MAX = {"adaptive_max_pool1d": F.adaptive_avg_pool1d, "adaptive_max_pool2d": F.adaptive_avg_pool2d,
                 "adaptive_max_pool3d": F.adaptive_avg_pool3d, "_adaptive_max_pool1d": F.adaptive_avg_pool1d,
                 "_adaptive_max_pool2d": F.adaptive_avg_pool2d, "_adaptive_max_pool3d": F.adaptive_avg_pool3d}
_CONV = {"conv1d": F.conv1d, "conv2d": F.conv2d, "conv3d": F.conv3d}


class ProbeResult(dict):
    """Weight name → effective weights (bool array of the weight's shape); ``.constant``
    holds the constant ones."""

    constant: dict


class _Halves(TorchFunctionMode):
    def __init__(self, batch: int, weights: dict) -> None:
        super().__init__()
        self.h = batch
        self.weights = weights  # id(x-leaf) -> c-leaf
        self.acts: dict[int, torch.Tensor] = {}

    # activations are the tensors this mode produced (kept alive so ids stay unique)
    def act(self, t) -> bool:
        return isinstance(t, torch.Tensor) and self.acts.get(id(t)) is t

    def mark(self, out):
        if isinstance(out, torch.Tensor):
            self.acts[id(out)] = out
        elif isinstance(out, (tuple, list)):
            for o in out:
                self.mark(o)
        return out

    def split(self, t):
        return t[: self.h], t[self.h:]

    def join(self, x, c):
        return torch.cat([x, c], 0)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        out = self.handle(func, name, args, kwargs)
        return self.mark(out)

    def handle(self, func, name, args, kwargs):
        a0 = args[0] if args else None
        if name in _IDENTITY and self.act(a0):
            return a0
        if name in _SEED and self.act(a0):
            x, c = self.split(a0)
            return self.join(x, c + 1)
        if name in ("clamp", "clip", "clamp_") and self.act(a0):
            lo = kwargs.get("min", args[1] if len(args) > 1 else None)
            hi = kwargs.get("max", args[2] if len(args) > 2 else None)
            if (lo is None or lo <= 0) and (hi is None or hi >= 0):
                return a0
            x, c = self.split(a0)
            return self.join(x, c + 1)
        if name in _SOFTMAX and self.act(a0):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            x, c = self.split(a0)
            return self.join(x.sum(dim, keepdim=True).expand_as(x), c.sum(dim, keepdim=True).expand_as(c) + 1)
        if name in _MAXPOOL:
            names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
            p = dict(zip(names, args))
            p.update(kwargs)
            if p.get("dilation", 1) not in (1, (1,), (1, 1), (1, 1, 1)):
                raise NotImplementedError("dilated max pooling")
            return _MAXPOOL[name](p["input"], p["kernel_size"], p.get("stride") or p["kernel_size"],
                                  p.get("padding", 0), p.get("ceil_mode", False), True)
        if name in _ADAPTIVE_MAX:
            return _ADAPTIVE_MAX[name](args[0], kwargs.get("output_size", args[1] if len(args) > 1 else None))
        if name in ("amax", "amin", "max", "min") and self.act(a0) and (len(args) > 1 or "dim" in kwargs):
            if name in ("max", "min"):
                raise NotImplementedError("torch.max with a dim returns indices")
            return torch.sum(*args, **kwargs)
        if name in _CONV:
            return self.conv(_CONV[name], args, kwargs)
        if name == "linear":
            return self.linear(args, kwargs)
        if name == "batch_norm":
            return self.batch_norm(args, kwargs)
        if name in ("layer_norm", "group_norm"):
            return self.norm(name, args, kwargs)
        if name == "pad":
            return self.pad(args, kwargs)
        if name in _ADD:
            return self.add(args, kwargs)
        if name in _MUL:
            return self.mul(args, kwargs, torch.mul)
        if name in _MATMUL:
            return self.mul(args, kwargs, torch.matmul)
        if name in _DIV:
            return self.div(args, kwargs)
        if name == "__rtruediv__":  # scalar / activation: never zero
            x, c = self.split(a0)
            return self.join(x, c + 1)
        if name == "interpolate":
            mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
            if mode == "bicubic":
                raise NotImplementedError("bicubic interpolation")
        return func(*args, **kwargs)

    # -- weighted ------------------------------------------------------------------
    def conv(self, fn, args, kwargs):
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        p = dict(zip(names, args))
        p.update(kwargs)
        x, c = self.split(p["input"])
        geo = {k: p[k] for k in ("stride", "padding", "dilation", "groups") if k in p}
        w = p["weight"]
        wc = self.weights.get(id(w), w.detach())
        ox, oc = fn(x, w, None, **geo), fn(c, wc, None, **geo)
        if p.get("bias") is not None:
            oc = oc + (p["bias"].detach() != 0).to(oc.dtype).view((1, -1) + (1,) * (oc.dim() - 2))
        return self.scaled(ox, oc)

    def linear(self, args, kwargs):
        names = ("input", "weight", "bias")
        p = dict(zip(names, args))
        p.update(kwargs)
        x, c = self.split(p["input"])
        w = p["weight"]
        wc = self.weights.get(id(w), w.detach())
        ox, oc = F.linear(x, w), F.linear(c, wc)
        if p.get("bias") is not None:
            oc = oc + (p["bias"].detach() != 0).to(oc.dtype)
        return self.scaled(ox, oc)

    def scaled(self, ox, oc):
        """Both halves divided by one positive constant (keeps float64 far from overflow)."""
        top = max(float(ox.detach().max()) if ox.numel() else 0.0,
                  float(oc.detach().max()) if oc.numel() else 0.0, 1.0)
        return self.join(ox / top, oc / top)

    def batch_norm(self, args, kwargs):
        names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
        p = dict(zip(names, args))
        p.update(kwargs)
        x, c = self.split(p["input"])
        mean, var = p["running_mean"], p["running_var"]
        if mean is None or var is None or p.get("training"):
            raise NotImplementedError("BatchNorm with batch statistics")
        gamma = p["weight"] if p.get("weight") is not None else torch.ones_like(mean)
        beta = p["bias"] if p.get("bias") is not None else torch.zeros_like(mean)
        shift = (beta.double() - mean.double() * gamma.double() / torch.sqrt(var.double() + p.get("eps", 1e-5))) != 0
        view = (1, -1) + (1,) * (c.dim() - 2)
        return self.join(x, c + shift.to(c.dtype).view(view))

    def norm(self, name, args, kwargs):
        x, c = self.split(args[0])
        if name == "layer_norm":
            shape = kwargs.get("normalized_shape", args[1])
            dims = tuple(range(x.dim() - len(shape), x.dim()))
            bias = kwargs.get("bias", args[3] if len(args) > 3 else None)
            sx = x.sum(dims, keepdim=True).expand_as(x)
            sc = c.sum(dims, keepdim=True).expand_as(c)
            if bias is not None:
                sc = sc + (bias.detach() != 0).to(c.dtype)
            return self.join(sx, sc)
        groups = kwargs.get("num_groups", args[1])
        bias = kwargs.get("bias", args[3] if len(args) > 3 else None)

        def gsum(t):
            n = t.shape[0]
            return t.reshape(n, groups, -1).sum(2, keepdim=True).expand(n, groups, t[0].numel() // groups).reshape(t.shape)

        sx, sc = gsum(x), gsum(c)
        if bias is not None:
            sc = sc + (bias.detach() != 0).to(c.dtype).view((1, -1) + (1,) * (c.dim() - 2))
        return self.join(sx, sc)

    def pad(self, args, kwargs):
        names = ("input", "pad", "mode", "value")
        p = dict(zip(names, args))
        p.update(kwargs)
        mode = p.get("mode", "constant")
        x, c = self.split(p["input"])
        if mode != "constant":
            return self.join(F.pad(x, p["pad"], mode=mode), F.pad(c, p["pad"], mode=mode))
        value = p.get("value") or 0
        return self.join(F.pad(x, p["pad"]), F.pad(c, p["pad"], value=1.0 if value != 0 else 0.0))

    # -- arithmetic ------------------------------------------------------------------
    def operands(self, args, kwargs):
        a = args[0]
        b = args[1] if len(args) > 1 else kwargs.get("other")
        return a, b

    def as_halves(self, t, like):
        """An operand as (x, c): activations split; constants (tensors, scalars) are c only."""
        if self.act(t):
            return self.split(t)
        if isinstance(t, torch.Tensor):
            k = (t.detach() != 0).to(like.dtype)
        else:
            k = torch.tensor(1.0 if t != 0 else 0.0, dtype=like.dtype)
        return torch.zeros_like(k), k

    def add(self, args, kwargs):
        a, b = self.operands(args, kwargs)
        like = a if self.act(a) else b
        (ax, ac), (bx, bc) = self.as_halves(a, like), self.as_halves(b, like)
        if kwargs.get("alpha", 1) == 0:
            bx, bc = bx * 0, bc * 0
        return self.join(ax + bx, ac + bc)

    def mul(self, args, kwargs, op):
        a, b = self.operands(args, kwargs)
        like = a if self.act(a) else b
        (ax, ac), (bx, bc) = self.as_halves(a, like), self.as_halves(b, like)
        return self.join(op(ax, bx) + op(ax, bc) + op(ac, bx), op(ac, bc))

    def div(self, args, kwargs):
        a, b = self.operands(args, kwargs)
        if not self.act(b):  # by a constant: non-zero, or the model divides by zero
            return a
        like = b
        (ax, ac), (bx, bc) = self.as_halves(a, like), self.split(b)
        never_zero = bx + bc + 1
        return self.join(ax * never_zero + ac * bx, ac * (bc + 1))


def _copy(model: nn.Module) -> nn.Module:
    memo = {}
    for mod in model.modules():
        for value in vars(mod).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def tap_probe(model: nn.Module, input_shape) -> ProbeResult:
    """Effective (and constant) weights of every Linear / Conv weight of ``model``, by the probe.

    Parameters
    ----------
    model : nn.Module
        Plain, or pruned with :mod:`torch.nn.utils.prune` (the mask wins over zeros).  Not
        modified.
    input_shape : tuple of int
        The input's shape (batch first).

    Returns
    -------
    ProbeResult
        ``result[name]``: bool array of the weight's shape, kept and effective;
        ``result.constant[name]``: kept, not effective, constant.
    """
    m = _copy(model).double().eval()
    leaves, c_leaves, masks = {}, {}, {}
    for qual, mod in m.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            mask = getattr(mod, "weight_mask", None)
            mask = (mask != 0) if mask is not None else (mod.weight.detach() != 0)
            for hook in list(mod._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    prune.remove(mod, hook._tensor_name)
            key = f"{qual}.weight" if qual else "weight"
            w = nn.Parameter(mask.double())
            mod.weight = w
            leaves[key] = w
            c_leaves[key] = mask.double().clone().requires_grad_(True)
            masks[key] = mask.cpu().numpy()
    shape = tuple(int(s) for s in input_shape)
    mode = _Halves(shape[0], {id(leaves[k]): c_leaves[k] for k in leaves})
    x = torch.cat([torch.ones(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)], 0)
    mode.mark(x)
    with mode:
        out = m(x)
    outs = out if isinstance(out, (tuple, list)) else [out]
    total = sum(o.sum() for o in outs if isinstance(o, torch.Tensor))
    if not torch.isfinite(total):
        raise FloatingPointError("the probe overflowed float64")
    names = list(leaves)
    grads = torch.autograd.grad(total, [leaves[k] for k in names] + [c_leaves[k] for k in names],
                                allow_unused=True)
    result = ProbeResult()
    result.constant = {}
    for i, k in enumerate(names):
        gx, gc = grads[i], grads[len(names) + i]
        eff = (gx > 0).numpy() if gx is not None else np.zeros_like(masks[k])
        cst = (gc > 0).numpy() if gc is not None else np.zeros_like(masks[k])
        result[k] = masks[k] & eff
        result.constant[k] = masks[k] & ~eff & cst
    return result
