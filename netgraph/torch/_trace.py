"""Trace a PyTorch model with torch.fx into its layered DAG, exact per kernel tap.

Contract
--------
:func:`trace_model` runs :func:`torch.fx.symbolic_trace` (torch's own modules are leaves,
so the forward pre-hooks of :mod:`torch.nn.utils.prune` are not traced through: masks are
read from the ``weight_mask`` buffers), then runs the traced graph once on the example
input to learn every tensor's shape (:mod:`._shapes`), then builds the channel-level
:class:`~netgraph.LayeredGraph` node by node (:mod:`._builder`, one handler per kind of op
from the table in :mod:`._ops`).  The returned :class:`TracedModel` audits at the level of
kernel taps and positions (:mod:`._taps`): a kept weight ``(o, i, tap d)`` is effective iff
some coaccessible position of ``o`` reads through ``d`` an accessible position of ``i``.

The model is traced in eval mode (BatchNorm uses running statistics) and its training
flags are restored afterwards; the caller's model is not otherwise touched.

Reading order for a newcomer: this file, then ``_ops.py`` (what each op is), ``_builder.py``
(the channel graph), ``_taps.py`` (the tap-level audit), ``_shapes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.fx as fx
import torch.nn as nn

from .._audit import AuditReport, audit
from .._graph import LayeredGraph
from .._reach import Reachability, WeightStates, reachability
from ..errors import TraceFailed
from ._builder import DagBuilder, Plan, mask_of as _mask_of
from ._shapes import Recorder, describe, example_tensor
from ._taps import TapAnalysis, tap_analysis

__all__ = ["TracedModel", "trace_model", "example_tensor"]


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
    _plan: Plan = field(repr=False)
    _gm: Any = field(default=None, repr=False)  # the fx.GraphModule, for the tap-level pass
    _values: Mapping = field(default_factory=dict, repr=False)  # node -> recorded shapes
    _vals: Mapping = field(default_factory=dict, repr=False)  # node -> its group and axis

    def module(self, name: str) -> tuple[nn.Module, str]:
        """The (module, parameter name) behind weighted block ``name`` in the traced model."""
        qual, param = self.params[name]
        return self.model.get_submodule(qual), param

    def reachability(self) -> Reachability:
        """Channel-level reachability of :attr:`graph` (an upper bound; see :meth:`taps`)."""
        return reachability(self.graph)

    def taps(self) -> TapAnalysis:
        """The tap-level analysis (computed once; see :mod:`netgraph.torch._taps`)."""
        cached = self.__dict__.get("_taps")
        if cached is None:
            if self._gm is None:
                raise TraceFailed("this TracedModel carries no traced graph; trace it with trace_model")
            cached = tap_analysis(self._gm, self._values, self.params)
            object.__setattr__(self, "_taps", cached)
        return cached

    def tap_reachability(self) -> Reachability:
        """Unit reachability refined by the positions: a unit is accessible (coaccessible,
        constant) iff some position of its slice is."""
        return self.taps().reachability(self.reachability(), self._vals)

    def weight_states(self) -> dict[str, WeightStates]:
        """Per weighted block: kept / accessible / coaccessible / effective / dead / constant
        weights (arrays of the weight's shape) — tap level where analysed (Linear, Conv),
        channel level otherwise (MultiheadAttention)."""
        tap = self.taps().weight_states
        reach = None
        out = {}
        for b in self.graph.weighted_blocks:
            if b.name in tap:
                out[b.name] = tap[b.name]
            else:
                reach = reach or self.reachability()
                mod, param = self.module(b.name)
                out[b.name] = reach.weight_states(b, _mask_of(mod, param).astype(bool))
        return out

    def audit(self, source: str = "<model>", reach: Reachability | None = None, *,
              resolution: str = "tap") -> AuditReport:
        """The audit of the traced model (see :func:`netgraph.audit`).

        ``resolution="tap"`` (default): every kernel tap and position is checked (layers
        report ``"resolution": "tap"``; MultiheadAttention weights stay ``"channel"``).
        ``"channel"``, or an explicit ``reach``: the channel-level graph alone.
        """
        if resolution not in ("tap", "channel"):
            raise ValueError(f"resolution must be 'tap' or 'channel', got {resolution!r}")
        if reach is not None or resolution == "channel":
            return audit(self.graph, reach, source=source)
        taps = self.taps()
        return audit(self.graph, self.tap_reachability(), source=source,
                     weight_states=taps.weight_states, warnings=taps.warnings)


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------

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
        rec = Recorder(gm)
        with torch.no_grad():
            try:
                rec.run(x)
            except TraceFailed:
                raise
            except Exception as exc:
                node = rec.current
                raise TraceFailed(
                    f"running {type(model).__name__} on an input of shape {tuple(x.shape)} failed at "
                    f"{describe(node, gm) if node is not None else 'the start'}: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
        dag = DagBuilder(model, gm, rec.values, channel_axis)
        graph_ = dag.run()
    finally:
        for m, mode in modes.items():
            m.training = mode
    return TracedModel(graph_, dict(dag.params), tuple(x.shape), model,
                       Plan(tuple(dag.ties), frozenset(dag.pins), tuple(dag.layers)),
                       gm, rec.values, dict(dag.vals))



class _LeafTracer(fx.Tracer):
    """torch.nn modules are leaves (fx's default), so prune's pre-hooks are never traced."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: D102
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        return m.__module__.startswith("torch.nn") or super().is_leaf_module(m, qualname)
