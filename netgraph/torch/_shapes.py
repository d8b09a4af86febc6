"""Shape propagation: run a traced graph once and keep every value's shape.

Contract
--------
:class:`Recorder` runs an :class:`torch.fx.GraphModule` on one example input (like
:class:`torch.fx.passes.shape_prop.ShapeProp`) and keeps, per node, a :class:`TensorInfo`
for every tensor result (shape and dtype, never the data) and the plain value of every
non-tensor result (sizes, ints).  It prints nothing: the caller turns a failure into one
line (:func:`describe` names the node that failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import TraceFailed

__all__ = ["TensorInfo", "Recorder", "summary", "describe", "has_tensor", "example_tensor"]


@dataclass(frozen=True)
class TensorInfo:
    """What the tracer keeps of a tensor value: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: torch.dtype


class Recorder(fx.Interpreter):
    """Shape propagation that keeps every tensor's shape and every non-tensor result (sizes)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}
        self.current: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        result = super().run_node(n)
        self.values[n] = summary(result)
        return result


def summary(value):
    """``value`` with every tensor replaced by its :class:`TensorInfo` (containers kept)."""
    if isinstance(value, torch.Tensor):
        return TensorInfo(tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)) and not isinstance(value, torch.Size):
        return type(value)(summary(v) for v in value) if not hasattr(value, "_fields") \
            else tuple(summary(v) for v in value)
    if isinstance(value, dict):
        return {k: summary(v) for k, v in value.items()}
    return value


def has_tensor(value) -> bool:
    """Whether a recorded value is, or contains, a tensor."""
    if isinstance(value, TensorInfo):
        return True
    if isinstance(value, (tuple, list)):
        return any(has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(has_tensor(v) for v in value.values())
    return False


def describe(node: fx.Node, gm: fx.GraphModule) -> str:
    """The node as a user reads it: ``module 'layer1.0.conv1' (Conv2d)``, ``function torch.cumsum``."""
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
