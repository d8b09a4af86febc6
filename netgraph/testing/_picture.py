"""Small text pictures of a graph and of unit / weight vectors, for failure messages.

Contract
--------
:func:`draw_graph` lists the groups in forward order; under each group, the blocks into it,
a weighted block with its connections as a grid (rows = destination units, columns = source
units; ``#`` one kept weight, a digit the number of kept kernel taps, ``.`` none).  Grids
wider or taller than ``max_units`` are cut (``...``).  :func:`draw_units` puts per-group unit
vectors side by side (``1`` yes, ``0`` no) and marks the groups where two columns differ.
Pure functions of their arguments; only numpy.

Example::

    x    input, 2 units
    g0   2 units
           <- x     g0.weight (2, 2)   #.
                                       ..
    g1   2 units
           <- g0    g1.weight (2, 2)   ..
                                       ..
           <- x     identity
    outputs: g1
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .._graph import DENSE, EXPAND, IDENTITY, SPARSE, LayeredGraph

__all__ = ["draw_graph", "draw_units", "draw_weights", "bits"]


def bits(v, max_units: int = 24) -> str:
    """``[True, False, True]`` -> ``"101"`` (cut with ``...`` past ``max_units``)."""
    v = np.asarray(v).ravel()
    s = "".join("1" if x else "0" for x in v[:max_units])
    return s + ("..." if v.size > max_units else "")


def _grid(block, max_units: int) -> list[str]:
    w_src, w_dst = block.shape
    counts = np.zeros((w_dst, w_src), dtype=np.int64)  # rows: destination units
    counts[block.cols, block.rows] = block.taps
    lines = []
    for j in range(min(w_dst, max_units)):
        row = "".join("." if c == 0 else ("#" if c == 1 and len(block.weight_shape) == 2 else
                                          (str(c) if c < 10 else "+"))
                      for c in counts[j, :max_units])
        lines.append(row + ("..." if w_src > max_units else ""))
    if w_dst > max_units:
        lines.append(":")
    return lines


def _structural(block) -> str:
    if block.kind == IDENTITY:
        return "identity"
    if block.kind == DENSE:
        return "all-to-all" + (f" ({block.note})" if block.note else "")
    if block.kind == EXPAND:
        factor = block.shape[1] // max(block.shape[0], 1)
        last = block.shape[0] > 1 and factor > 1 and block.cols[1] - block.cols[0] == block.shape[0]
        return f"flatten x{factor}" + (" (channels last)" if last else " (channels first)" if factor > 1 else "")
    if block.kind == SPARSE:
        pairs = [f"{i}->{j}" for i, j in zip(block.rows.tolist(), block.cols.tolist())]
        return "pairs " + " ".join(pairs[:12]) + (" ..." if len(pairs) > 12 else "")
    return block.kind  # pragma: no cover


def draw_graph(graph: LayeredGraph, *, max_units: int = 24) -> str:
    """The graph as text: groups in forward order, the blocks into each, masks as grids."""
    name_w = max(len(g) for g in graph.order)
    out = []
    for g in graph.order:
        grp = graph.groups[g]
        head = f"{g:<{name_w}}  " + ("input, " if g in graph.sources else "") + \
            f"{grp.width} unit{'s' if grp.width != 1 else ''}"
        if grp.has_constant:
            head += f", constant (bias) on units {np.flatnonzero(grp.constant).tolist()}"
        out.append(head)
        for b in graph.incoming(g):
            lead = f"{'':<{name_w}}    <- {b.src:<{name_w}}  "
            if b.weighted:
                label = f"{b.name} {tuple(b.weight_shape)}"
                if b.conv_groups > 1:
                    label += f" groups={b.conv_groups}"
                grid = _grid(b, max_units)
                out.append(f"{lead}{label}   {grid[0]}")
                pad = " " * (len(lead) + len(label) + 3)
                out.extend(pad + row for row in grid[1:])
            else:
                out.append(lead + _structural(b))
    out.append("outputs: " + ", ".join(graph.sinks))
    return "\n".join(out)


def draw_units(graph: LayeredGraph, columns: Sequence[tuple[str, Mapping[str, np.ndarray]]],
               compare: Sequence[tuple[int, int]] = (), *, max_units: int = 24) -> str:
    """Per-group unit vectors side by side; ``compare=[(i, j)]`` marks groups where columns
    ``i`` and ``j`` differ (``<- <name j> wrong at units [...]``)."""
    name_w = max([len(g) for g in graph.order] + [5])
    widths = [max(len(title), min(max(graph.groups[g].width for g in graph.order), max_units) + 1)
              for title, _ in columns]
    lines = [f"{'group':<{name_w}}  " + "  ".join(f"{t:<{w}}" for (t, _), w in zip(columns, widths))]
    for g in graph.order:
        cells = []
        for (_, vecs), w in zip(columns, widths):
            cells.append(f"{bits(vecs[g], max_units) if g in vecs else '?':<{w}}")
        notes = []
        for i, j in compare:
            a, b = columns[i][1].get(g), columns[j][1].get(g)
            if a is None or b is None:
                continue
            diff = np.flatnonzero(np.asarray(a, bool) != np.asarray(b, bool))
            if diff.size:
                notes.append(f"{columns[j][0]} wrong at units {diff.tolist()}")
        lines.append((f"{g:<{name_w}}  " + "  ".join(cells) + ("   <- " + "; ".join(notes) if notes else ""))
                     .rstrip())
    return "\n".join(lines)


def draw_weights(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                 kept: Mapping[str, np.ndarray] | None = None, *, max_units: int = 24) -> str:
    """Per weight, the entries where ``got`` and ``expected`` (bool, weight shape) differ.

    Grid rows are output units, columns input units (kernel taps: the pair is marked when
    any tap differs): ``E`` effective and reported, ``x`` reported but dead, ``o`` effective
    but missed, ``-`` kept and dead, ``.`` pruned.  Only weights with a difference are drawn.
    """
    out = []
    for name in expected:
        e = np.asarray(expected[name], bool)
        g = np.asarray(got[name], bool)
        k = np.asarray(kept[name], bool) if kept is not None and name in kept else (e | g)
        if np.array_equal(e, g):
            continue
        e2, g2, k2 = (a.reshape(a.shape[0], a.shape[1], -1) for a in (e, g, k))
        lines = [f"{name} {tuple(e.shape)}: {int((g & ~e).sum())} reported but dead (x), "
                 f"{int((e & ~g).sum())} effective but missed (o)"]
        for o in range(min(e2.shape[0], max_units)):
            row = ""
            for c in range(min(e2.shape[1], max_units)):
                ee, gg, kk = e2[o, c], g2[o, c], k2[o, c]
                if (gg & ~ee).any():
                    ch = "x"
                elif (ee & ~gg).any():
                    ch = "o"
                elif ee.any():
                    ch = "E"
                elif kk.any():
                    ch = "-"
                else:
                    ch = "."
                row += ch
            lines.append("  " + row + ("..." if e2.shape[1] > max_units else ""))
        if e2.shape[0] > max_units:
            lines.append("  :")
        out.append("\n".join(lines))
    return "\n".join(out)
