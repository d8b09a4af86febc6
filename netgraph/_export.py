"""The unit-level graph as a networkx DiGraph, for users' own analysis.

Nodes are ``(group, unit)`` pairs with attributes ``group``, ``unit``, ``depth``,
``accessible``, ``coaccessible``, ``constant`` (bool), and ``source``/``sink`` flags.
Edges carry ``block`` (the block name; parallel blocks between the same
units merge into one edge with their names joined by commas and taps summed), ``kind`` and ``taps`` (kept weights behind the
pair), plus ``effective`` (bool).  networkx is imported only here.
"""

from __future__ import annotations

from ._graph import DENSE, LayeredGraph
from ._reach import reachability

__all__ = ["to_networkx"]


def to_networkx(graph: LayeredGraph, *, max_edges: int = 5_000_000):
    """Return a :class:`networkx.DiGraph` of units and kept connections.

    >>> import numpy as np
    >>> from netgraph import chain
    >>> G = to_networkx(chain([np.array([[1, 0], [0, 1]])]))
    >>> sorted(G.edges())
    [(('input', 0), ('layer0:out', 0)), (('input', 1), ('layer0:out', 1))]
    """
    import networkx as nx
    import numpy as np

    total = sum(b.nnz for b in graph.blocks)
    if total > max_edges:
        raise ValueError(f"the unit graph has {total} edges, more than max_edges={max_edges}; raise it if you mean it")
    r = reachability(graph)
    depth = graph.depth()
    G = nx.DiGraph()
    for g in graph.order:
        grp = graph.groups[g]
        for u in range(grp.width):
            G.add_node((g, u), group=g, unit=u, depth=depth[g], accessible=bool(r.accessible[g][u]),
                       coaccessible=bool(r.coaccessible[g][u]), constant=bool(grp.constant[u]),
                       source=g in graph.sources, sink=g in graph.sinks)
    for b in graph.blocks:
        if b.kind == DENSE:
            rows, cols = np.divmod(np.arange(b.shape[0] * b.shape[1]), b.shape[1])
            taps = np.ones(rows.size, np.int64)
        else:
            rows, cols, taps = b.rows, b.cols, b.taps
        eff = r.accessible[b.src][rows] & r.coaccessible[b.dst][cols]
        for i, j, t, e in zip(rows.tolist(), cols.tolist(), taps.tolist(), eff.tolist()):
            u, v = (b.src, i), (b.dst, j)
            if G.has_edge(u, v):  # parallel blocks between two groups (e.g. attention heads)
                d = G.edges[u, v]
                d["taps"] += t
                d["effective"] = d["effective"] or e
                d["block"] += "," + b.name
            else:
                G.add_edge(u, v, block=b.name, kind=b.kind, taps=t, effective=e)
    return G
