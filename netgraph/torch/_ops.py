"""The table of operators: which kind of op every fx node is.

Contract
--------
:func:`op_kind` maps an fx node to one *kind* (a string) and, for pooling-like ops, the
number of spatial dimensions it acts on.  Both analyses read this one table: the
channel-level graph builder (:mod:`._builder`) and the tap-level analysis (:mod:`._taps`)
each keep a handler per kind, so an op is classified in exactly one place.

Kinds
-----
``linear``, ``conv``, ``bn``, ``mha``, ``layernorm``, ``groupnorm``, ``prelu``: modules with
their own handler.  ``zero``: elementwise with ``f(0) = 0`` (ReLU, GELU, dropout, …).
``seed``: elementwise with ``f(0) != 0`` (sigmoid, exp, …; the output is never zero).
``pool``: pooling / resizing / padding over the last ``dims`` dimensions.  ``pad``:
``F.pad``.  ``constpad``: ``nn.ConstantPadNd``.  ``clamp``, ``softmax``, ``reduce``
(mean / sum / amax / amin), ``move`` (view, permute, slicing, split, …), ``join`` (cat,
stack), ``flatten`` / ``unflatten`` (modules), ``add`` (add / sub), ``mul``, ``div``,
``minmax`` (elementwise maximum / minimum), ``matmul``.  Anything else: ``unknown``.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["op_kind", "MODULE_KINDS", "FUNCTION_KINDS", "METHOD_KINDS", "POOL_DIMS"]

_ZERO_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Hardtanh, nn.Hardswish,
    nn.ELU, nn.CELU, nn.SELU, nn.Mish, nn.Softsign, nn.Tanhshrink, nn.Hardshrink,
    nn.Softshrink, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.Identity,
)
_SEED_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus, nn.LogSigmoid)
# pooling-like modules → number of trailing dims they act on (None: all but batch and channel)
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
_JOIN_FUNCTIONS = {torch.cat, torch.concat, torch.stack, torch.hstack, torch.vstack}

MODULE_KINDS: dict[type, str] = {
    nn.Linear: "linear", nn.Conv1d: "conv", nn.Conv2d: "conv", nn.Conv3d: "conv",
    nn.modules.batchnorm._BatchNorm: "bn", nn.MultiheadAttention: "mha", nn.LayerNorm: "layernorm",
    nn.GroupNorm: "groupnorm", nn.PReLU: "prelu", nn.Softmax: "softmax", nn.LogSoftmax: "softmax",
    nn.Softmin: "softmax", nn.Flatten: "flatten", nn.Unflatten: "unflatten",
    nn.ConstantPad1d: "constpad", nn.ConstantPad2d: "constpad", nn.ConstantPad3d: "constpad",
    **{m: "zero" for m in _ZERO_MODULES}, **{m: "seed" for m in _SEED_MODULES},
    **{m: "pool" for m in _POOL_MODULES},
}
FUNCTION_KINDS: dict[object, str] = {
    **{f: "zero" for f in _ZERO_FUNCTIONS}, **{f: "seed" for f in _SEED_FUNCTIONS},
    **{f: "pool" for f in _POOL_FUNCTIONS}, **{f: "move" for f in _MOVE_FUNCTIONS},
    **{f: "join" for f in _JOIN_FUNCTIONS},
    F.pad: "pad", torch.clamp: "clamp", torch.clip: "clamp",
    F.softmax: "softmax", torch.softmax: "softmax", F.log_softmax: "softmax",
    torch.log_softmax: "softmax", F.softmin: "softmax",
    operator.add: "add", operator.iadd: "add", operator.sub: "add", operator.isub: "add",
    torch.add: "add", torch.sub: "add",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
    operator.truediv: "div", operator.itruediv: "div", torch.div: "div",
    torch.maximum: "minmax", torch.minimum: "minmax",
    torch.mean: "reduce", torch.sum: "reduce", torch.amax: "reduce", torch.amin: "reduce",
    torch.matmul: "matmul", operator.matmul: "matmul", torch.bmm: "matmul",
}
METHOD_KINDS: dict[str, str] = {
    **{m: "zero" for m in ("relu", "tanh", "neg", "abs", "contiguous", "clone", "detach", "float",
                           "double", "half", "bfloat16", "to", "type_as", "cpu", "cuda")},
    **{m: "seed" for m in ("sigmoid", "exp", "cos")},
    **{m: "move" for m in ("view", "reshape", "flatten", "unflatten", "permute", "transpose", "t",
                           "squeeze", "unsqueeze", "chunk", "split", "narrow", "movedim", "swapaxes",
                           "flip", "roll", "unbind", "select", "expand", "expand_as", "repeat",
                           "view_as", "reshape_as", "tensor_split")},
    "clamp": "clamp", "clip": "clamp", "softmax": "softmax", "log_softmax": "softmax",
    "add": "add", "add_": "add", "sub": "add", "sub_": "add", "mul": "mul", "mul_": "mul",
    "div": "div", "div_": "div", "mean": "reduce", "sum": "reduce", "amax": "reduce",
    "amin": "reduce", "matmul": "matmul",
}
POOL_DIMS: dict[object, int | None] = {**_POOL_MODULES, **_POOL_FUNCTIONS}
# functions of other libraries that fx keeps as leaves, by (module, name): no import needed
NAMED_FUNCTION_KINDS: dict[tuple[str, str], str] = {
    # torchvision's StochasticDepth (EfficientNet): the identity in eval, zeros rows in training
    ("torchvision.ops.stochastic_depth", "stochastic_depth"): "zero",
}


def module_kind(mod: nn.Module) -> str:
    """The kind of a module (subclasses inherit their base's kind)."""
    for cls in type(mod).__mro__:
        kind = MODULE_KINDS.get(cls)
        if kind is not None:
            if kind == "prelu" and mod.num_parameters == 1:
                return "zero"
            return kind
    return "unknown"


def op_kind(node: fx.Node, gm: fx.GraphModule) -> str:
    """The kind of an fx ``call_module`` / ``call_function`` / ``call_method`` node."""
    if node.op == "call_module":
        return module_kind(gm.get_submodule(node.target))
    if node.op == "call_function":
        try:
            kind = FUNCTION_KINDS.get(node.target)
        except TypeError:  # an unhashable target
            return "unknown"
        if kind is None:
            key = (getattr(node.target, "__module__", "") or "", getattr(node.target, "__name__", ""))
            kind = NAMED_FUNCTION_KINDS.get(key, "unknown")
        return kind
    if node.op == "call_method":
        return METHOD_KINDS.get(node.target, "unknown")
    return "unknown"


def pool_dims(node: fx.Node, gm: fx.GraphModule) -> int | None:
    """Trailing dims a ``pool`` node acts on (None: all but batch and channel)."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        for cls in type(mod).__mro__:
            if cls in _POOL_MODULES:
                return _POOL_MODULES[cls]
        return None
    return _POOL_FUNCTIONS.get(node.target)
