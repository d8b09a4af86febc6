"""A masked network as plain data, and the graph-level corner cases.

Contract
--------
A :class:`Net` describes a layered DAG with raw arrays and op tuples, never with netgraph's
blocks, so that the oracles (``_oracles.py``) can build an independent reference from it.
``net.graph`` (same as ``net.build()``) turns it into a :class:`~netgraph.LayeredGraph`
through :class:`~netgraph.GraphBuilder`; ``net.masks`` gives the masks by weight name, in
PyTorch layout ``(out, in/groups, *kernel)``.  Neither is cached: tests may edit ``ops``.

Op tuples, in forward order::

    ("weight",   name, src, dst, mask, conv_groups)   a prunable weight, mask bool (out, in/g, *k)
    ("identity", src, dst)                            residual add / BN / activation
    ("expand",   src, dst, factor, channels_last)     flatten (channels first or last)
    ("dense",    src, dst)                            all-to-all (unknown op)
    ("connect",  src, dst, matrix)                    arbitrary structural pairs, bool
                                                      (w_src, w_dst): a slice of a concatenation

Everything here imports numpy and netgraph only (no torch, no Hypothesis).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._graph import GraphBuilder, LayeredGraph

__all__ = ["Net", "net_features", "EMPTY_LAYER", "WIDTH_ONE", "SKIP_AROUND_DEAD", "CONSTANT_FED", "CONCAT_OF_DEAD",
           "GRAPH_CORNER_CASES"]


@dataclass(eq=False)
class Net:
    """Groups (name → width), input groups, ops in forward order, constant seeds.

    Attributes
    ----------
    widths : dict str -> int
    inputs : list of str
    ops : list of tuple
        See the module docstring.
    constants : dict str -> ndarray of bool, shape (width,)
        Units that emit a value on their own (a non-zero bias, a BatchNorm shift).

    Examples
    --------
    >>> net = Net({"x": 2, "h": 1}, ["x"], [("weight", "h.weight", "x", "h", np.array([[1, 0]], bool), 1)])
    >>> net.graph.sinks, net.masks["h.weight"].tolist()
    (('h',), [[True, False]])
    """

    widths: dict[str, int]
    inputs: list[str]
    ops: list[tuple]
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    def build(self) -> LayeredGraph:
        """The :class:`~netgraph.LayeredGraph` of this description (built anew at each call)."""
        b = GraphBuilder()
        for s in self.inputs:
            b.input(s, self.widths[s])
        for op in self.ops:
            kind = op[0]
            if kind == "weight":
                _, name, src, dst, mask, groups = op
                b.weight(name, src, dst, mask, conv_groups=groups)
            elif kind == "identity":
                b.identity(op[1], op[2])
            elif kind == "expand":
                b.expand(op[1], op[2], op[3], channels_last=op[4])
            elif kind == "dense":
                b.dense(op[1], op[2], self.widths[op[2]])
            elif kind == "connect":
                b.connect(op[1], op[2], op[3], name=f"{op[1]}->{op[2]}")
            else:  # pragma: no cover - a malformed description is a bug in the caller
                raise ValueError(f"unknown op kind {kind!r} in Net.ops; expected weight, identity, "
                                 "expand, dense or connect")
        for g, seeds in self.constants.items():
            b.constant(g, seeds)
        return b.build()

    @property
    def graph(self) -> LayeredGraph:
        """Same as :meth:`build`."""
        return self.build()

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """Weight name → bool mask in PyTorch layout ``(out, in/groups, *kernel)``."""
        return {op[1]: op[4] for op in self.ops if op[0] == "weight"}

    @property
    def weight_ops(self) -> list[tuple]:
        return [op for op in self.ops if op[0] == "weight"]

    def to_source(self) -> str:
        """Python source that rebuilds this net (``import numpy as np`` and ``Net`` in scope);
        paste it into an ``@example(...)``."""
        def arr(a):
            a = np.asarray(a)
            return f"np.array({a.astype(int).tolist()}, bool)"

        ops = []
        for op in self.ops:
            if op[0] == "weight":
                ops.append(f"(\"weight\", {op[1]!r}, {op[2]!r}, {op[3]!r}, {arr(op[4])}, {op[5]})")
            elif op[0] == "connect":
                ops.append(f"(\"connect\", {op[1]!r}, {op[2]!r}, {arr(op[3])})")
            else:
                ops.append(repr(tuple(op)))
        consts = ", ".join(f"{g!r}: {arr(v)}" for g, v in self.constants.items())
        body = ",\n     ".join(ops)
        return f"Net({self.widths!r}, {self.inputs!r},\n    [{body}],\n    {{{consts}}})"


# --------------------------------------------------------------------------------------
# Graph-level corner cases, ready for @example(...)
# --------------------------------------------------------------------------------------

#: The first weight is all pruned: nothing is accessible after it.
EMPTY_LAYER = Net({"x": 3, "g0": 2, "g1": 2}, ["x"], [
    ("weight", "g0.weight", "x", "g0", np.zeros((2, 3), bool), 1),
    ("weight", "g1.weight", "g0", "g1", np.ones((2, 2), bool), 1)])
#: Every group has one unit.
WIDTH_ONE = Net({"x": 1, "g0": 1, "g1": 1}, ["x"], [
    ("weight", "g0.weight", "x", "g0", np.ones((1, 1), bool), 1),
    ("weight", "g1.weight", "g0", "g1", np.ones((1, 1), bool), 1)])
#: g1.weight is all pruned, so g0 is dead, but the identity skip x -> g1 carries the input on.
SKIP_AROUND_DEAD = Net({"x": 2, "g0": 2, "g1": 2}, ["x"], [
    ("weight", "g0.weight", "x", "g0", np.array([[1, 0], [0, 0]], bool), 1),
    ("weight", "g1.weight", "g0", "g1", np.zeros((2, 2), bool), 1),
    ("identity", "x", "g1")])
#: g0 unit 1 has no kept input but a bias: g1.weight's only kept weight is constant.
CONSTANT_FED = Net({"x": 2, "g0": 2, "g1": 1}, ["x"], [
    ("weight", "g0.weight", "x", "g0", np.array([[1, 1], [0, 0]], bool), 1),
    ("weight", "g1.weight", "g0", "g1", np.array([[0, 1]], bool), 1)],
    {"g0": np.array([False, True])})
#: cat(a, b) where branch a is all pruned: only the b half of the concatenation is accessible.
CONCAT_OF_DEAD = Net({"x": 2, "a": 2, "b": 1, "cat": 3, "out": 2}, ["x"], [
    ("weight", "a.weight", "x", "a", np.zeros((2, 2), bool), 1),
    ("weight", "b.weight", "x", "b", np.array([[1, 0]], bool), 1),
    ("connect", "a", "cat", np.array([[1, 0, 0], [0, 1, 0]], bool)),
    ("connect", "b", "cat", np.array([[0, 0, 1]], bool)),
    ("weight", "out.weight", "cat", "out", np.ones((2, 3), bool), 1)])

#: name → Net, every graph-level corner case (the torch ones are in ``MODEL_CORNER_CASES``).
GRAPH_CORNER_CASES = {
    "empty layer": EMPTY_LAYER,
    "width one": WIDTH_ONE,
    "skip around a dead layer": SKIP_AROUND_DEAD,
    "constant-fed weight": CONSTANT_FED,
    "concatenation of a dead branch": CONCAT_OF_DEAD,
}


def net_features(net: Net) -> set[str]:
    """What a net exercises, as names (for ``hypothesis.event`` and coverage tests).

    ``"two inputs"``, ``"width one"``, ``"empty layer"`` (an all-zero mask), ``"conv kernel"``,
    ``"grouped conv"``, ``"flatten channels first"``, ``"flatten channels last"``,
    ``"concatenation"``, ``"all-to-all"``, ``"constant"``, ``"skip"`` (a block that jumps over a
    depth level), ``"identity skip"``, ``"weighted skip"``, ``"dead weight"``, ``"collapsed"``
    (no output unit accessible), ``"skip around a dead layer"`` (a group with no effective unit
    lies between the ends of a skip whose destination has one), ``"concatenation of a dead
    part"``.
    """
    from .._reach import reachability
    from .._graph import pair_selector

    graph = net.graph
    r = reachability(graph)
    depth = graph.depth()
    f = set()
    if len(net.inputs) > 1:
        f.add("two inputs")
    if min(net.widths.values()) == 1:
        f.add("width one")
    for op in net.ops:
        if op[0] == "weight":
            if not op[4].any():
                f.add("empty layer")
            if op[4].ndim > 2:
                f.add("conv kernel")
            if op[5] > 1:
                f.add("grouped conv")
        elif op[0] == "expand" and op[3] > 1:
            f.add("flatten channels last" if op[4] else "flatten channels first")
        elif op[0] == "connect":
            f.add("concatenation")
        elif op[0] == "dense":
            f.add("all-to-all")
    if any(np.asarray(v).any() for v in net.constants.values()):
        f.add("constant")
    live = {g: r.accessible[g] & r.coaccessible[g] for g in graph.order}
    for b in graph.blocks:
        if depth[b.dst] - depth[b.src] > 1:
            f.add("skip")
            f.add("identity skip" if b.kind == "identity" else "weighted skip" if b.weighted else "skip")
            if live[b.dst].any() and any(not live[g].any() for g in graph.order
                                         if g not in graph.sources and depth[b.src] < depth[g] < depth[b.dst]):
                f.add("skip around a dead layer")
        if b.kind == "sparse" and not r.accessible[b.src].any():
            f.add("concatenation of a dead part")
        if b.weighted:
            kept = net.masks[b.name]
            if (kept & ~pair_selector(b, r.accessible[b.src], r.coaccessible[b.dst])).any():
                f.add("dead weight")
    if not any(r.accessible[s].any() for s in graph.sinks):
        f.add("collapsed")
    return f
