"""The ONNX op table: ``HANDLERS[op_type](converter, node, inputs, attributes)`` returns the
node's outputs as torch modules / functions the tracer knows, or ``None`` to leave the node
opaque (over-approximated).  Attribute defaults follow the ONNX operator specs; padding,
strides and dilations keep their exact meaning (asymmetric and ``SAME_*`` padding become an
explicit zero pad)."""

from __future__ import annotations

import math
import operator
from typing import Callable, Sequence

import numpy as np

from ._onnx_convert import Act, Converter

__all__ = ["HANDLERS", "WEIGHTED"]


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


def _conv(c: Converter, node, ins, attrs):
    nn, torch = c.nn, c.torch
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    if not isinstance(x, Act) or isinstance(w, Act) or isinstance(b, Act) or w.ndim not in (3, 4, 5):
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


def _linear(c: Converter, node, x: Act, weight: np.ndarray, bias, onnx_name: str, transposed: bool):
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


def _gemm(c: Converter, node, ins, attrs):
    a, b = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    if (not isinstance(a, Act) or isinstance(b, Act) or isinstance(bias, Act) or b.ndim != 2
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


def _matmul(c: Converter, node, ins, attrs):
    a, b = ins
    torch = c.torch
    if isinstance(a, Act) and not isinstance(b, Act) and b.ndim == 2:
        return [_linear(c, node, a, b.T, None, node.input[1], True)]
    if isinstance(a, Act) and isinstance(b, Act):
        return [c.call(torch.matmul, a, b)]
    return None


def _batchnorm(c: Converter, node, ins, attrs):
    x, scale, bias, mean, var = ins[:5]
    torch, nn = c.torch, c.nn
    if not isinstance(x, Act) or any(isinstance(v, Act) for v in (scale, bias, mean, var)):
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
    def handler(c: Converter, node, ins, attrs):
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
    if isinstance(lo, Act) or isinstance(hi, Act):
        return None
    lo = None if lo is None else float(np.asarray(lo))
    hi = None if hi is None else float(np.asarray(hi))
    if lo == 0.0 and hi == 6.0:
        return [c.call(c.torch.nn.functional.relu6, x)]
    if lo == 0.0 and hi is None:
        return [c.call(c.torch.relu, x)]
    return [c.call(c.torch.clamp, x, lo, hi)]


def _binary(op):
    def handler(c: Converter, node, ins, attrs):
        a, b = ins
        a = a if isinstance(a, Act) else np.asarray(a, dtype=np.float64)
        b = b if isinstance(b, Act) else np.asarray(b, dtype=np.float64)
        return [c.call(op, a, b)]
    return handler


def _sum(c, node, ins, attrs):
    acc = ins[0]
    for v in ins[1:]:
        acc = c.call(operator.add, acc, v if isinstance(v, Act) else np.asarray(v, dtype=np.float64))
    return [acc]


def _pool(kind: str):
    def handler(c: Converter, node, ins, attrs):
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


def _reshape_to(c, x: Act, shape) -> Act:
    """Reshape to the concrete ``shape``; a kept leading (batch) size becomes ``-1`` so the
    graph also runs on other batch sizes (the probe and the tap analysis stack halves)."""
    shape = [int(s) for s in shape]
    if shape and x.ex.ndim and shape[0] == x.ex.shape[0] and math.prod(shape[1:]) > 0:
        shape[0] = -1
    return c.call(c.torch.reshape, x, tuple(shape))


def _reshape(c, node, ins, attrs):
    x, shape = ins[0], ins[1]
    if isinstance(shape, Act):
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
        if isinstance(ins[1], Act):
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
    parts = [v if isinstance(v, Act) else np.asarray(v, dtype=np.float64) for v in ins]
    return [c.call(c.torch.cat, parts, axis)]


def _split(c, node, ins, attrs):
    x = ins[0]
    axis = int(attrs.get("axis", 0))
    n_out = len(node.output)
    if len(ins) > 1 and ins[1] is not None:
        if isinstance(ins[1], Act):
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
    if any(isinstance(v, Act) for v in ins[1:]):
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
    if isinstance(idx, Act):
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
            if isinstance(ins[1], Act):
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
        if isinstance(ins[1], Act):
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
    if any(isinstance(v, Act) for v in ins[1:]) or x.ex.ndim < 3:
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
    if isinstance(scale, Act) or isinstance(bias, Act):
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


WEIGHTED = {"Conv", "Gemm", "MatMul", "BatchNormalization"}
HANDLERS: dict[str, Callable] = {
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

