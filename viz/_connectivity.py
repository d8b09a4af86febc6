"""Connectivity figures: the layered drawing, per-layer bars, dead units, receptive sets.

Contract
--------
* Units are in one of three states (:func:`viz.unit_states`): *effective* (accessible and
  coaccessible), *dead* (kept connections, not effective: its weights do nothing) and
  *unused* (no kept connection at all: pruned away, which is not a defect).  Dead units are
  filled vermillion, unused ones small and hollow grey, effective ones dark.
* :func:`plot_network` draws every unit (units of a group in one column, columns by depth,
  positions from networkx's ``multipartite_layout``) and every connected unit pair.  Pairs
  of prunable weights are classed at the **unit-pair level** (one edge per connected
  ``(i, j)``, whatever the number of kernel taps behind it): *effective* (dark), dead and
  *not accessible* (vermillion, solid), dead and *not coaccessible* (purple, dash-dot),
  *constant* (blue, dashed; dead, source fed by a bias, destination coaccessible).  The dead
  edges drawn = the dead pairs (``~Reachability.pair_masks(b)["effective"]``), which equals
  the audit's dead count when every pair is one weight (linear layers).  Structural pairs
  (identity, flatten) are dotted grey.  Above ``MAX_UNITS`` units or ``MAX_EDGES`` pairs the
  drawing is refused (a hairball); :func:`plot_audit` draws any size.
* :func:`plot_network_pair` draws two models of one architecture on one layout and makes
  what differs stand out (bold effective pairs the other model lacks, rings on units whose
  state differs).
* :func:`plot_layer_bars` stacks, per prunable weight, the kept weights (kernel taps
  counted, as in the audit) into four disjoint parts that sum to ``kept``:
  effective; constant; not accessible (and not constant) = ``kept − accessible − constant``;
  not coaccessible (but accessible) = ``accessible − effective`` (hatched).
* :func:`plot_dead_units` is a strip per group: unit states as above.
* :func:`plot_receptive_sets` shows ``S_a`` (which inputs reach each unit) as an image.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from netgraph import AuditReport, LayeredGraph, Reachability, products, reachability

from ._errors import BadPlotInput
from ._states import DEAD_UNIT, EFFECTIVE, UNUSED, unit_states
from ._style import (CONSTANT, DEAD, GRID, KEPT, NOT_COACCESSIBLE, NOT_COACCESSIBLE_HATCH, PRUNED, STRUCTURAL,
                     new_figure)

CHANGED = "#009e73"  # bluish green (Okabe-Ito): the ring around a unit whose state differs between two models

__all__ = [
    "network_layout",
    "edge_classes",
    "dead_units",
    "layer_parts",
    "plot_network",
    "plot_network_pair",
    "plot_layer_bars",
    "plot_dead_units",
    "plot_audit",
    "plot_receptive_sets",
    "plot_connectivity",
    "is_small",
]

MAX_UNITS = 160  # beyond this many units (or MAX_EDGES pairs) a layered drawing is unreadable
MAX_EDGES = 4000

Unit = tuple[str, int]  # (group name, unit index)


def _reach(graph: LayeredGraph, reach: Reachability | None) -> Reachability:
    return reach if reach is not None else reachability(graph)


def _pairs(block) -> tuple[np.ndarray, np.ndarray]:
    if block.rows is None:  # an all-to-all block is stored without its pairs
        rows, cols = np.nonzero(np.ones(block.shape, dtype=bool))
        return rows, cols
    return block.rows, block.cols


def network_layout(graph: LayeredGraph) -> dict[Unit, np.ndarray]:
    """Position ``(x, y)`` of every unit: one column per depth (networkx ``multipartite_layout``).

    Unit 0 of each group is at the top.  Groups at the same depth share a column, stacked.
    """
    import networkx as nx

    depth = graph.depth()
    g = nx.Graph()
    columns: dict[int, list[Unit]] = {}
    for name in graph.order:
        for u in range(graph.groups[name].width):
            g.add_node((name, u))
            columns.setdefault(depth[name], []).append((name, u))
    # A dict keeps each column in unit order (a node attribute would group them through a
    # set, in arbitrary order); multipartite_layout lists a column bottom-up, so flip y to
    # put unit 0 at the top, as in the mask images.
    pos = nx.multipartite_layout(g, subset_key=columns, align="vertical")
    return {k: np.array([v[0], -v[1]]) for k, v in pos.items()}


def _arc(a: np.ndarray, b: np.ndarray, bend: float = 0.12, n: int = 16) -> np.ndarray:
    """A quadratic Bézier from ``a`` to ``b`` bowed sideways, so a structural edge never
    hides under a weight's straight edge or runs through the units of a skipped column."""
    d = b - a
    ctrl = (a + b) / 2 + bend * np.array([-d[1], d[0]]) + np.array([0.0, bend * np.hypot(*d)])
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t ** 2 * b


def edge_classes(graph: LayeredGraph, reach: Reachability | None = None) -> dict[str, list[tuple[Unit, Unit]]]:
    """Every connected unit pair by class.

    ``effective``; the dead pairs of prunable weights split three ways: ``constant`` (source
    not accessible but fed by a bias, destination coaccessible), ``not_accessible`` (no input
    reaches the source; not constant), ``not_coaccessible`` (the source is reached, the
    destination reaches no output); ``structural`` (identity, flatten: not weights); and
    ``possible_skip`` (structural blocks netgraph's chain inference assumed without model
    code, named ``…:possible-skip``: hypothetical, drawn faint).
    """
    r = _reach(graph, reach)
    names = ("effective", "not_accessible", "not_coaccessible", "constant")
    out: dict[str, list[tuple[Unit, Unit]]] = {k: [] for k in names + ("structural", "possible_skip")}
    for b in graph.blocks:
        rows, cols = _pairs(b)
        if not b.weighted:
            kind = "possible_skip" if b.name.endswith(":possible-skip") else "structural"
            out[kind] += [((b.src, int(i)), (b.dst, int(j))) for i, j in zip(rows, cols)]
            continue
        m = r.pair_masks(b)
        cls = np.where(m["effective"], 0, np.where(m["constant"], 3, np.where(m["accessible"], 2, 1)))
        for i, j, c in zip(rows, cols, cls):
            out[names[c]].append(((b.src, int(i)), (b.dst, int(j))))
    return out


def dead_units(graph: LayeredGraph, reach: Reachability | None = None) -> dict[str, np.ndarray]:
    """``{group: (width,) bool}``: *dead* units, with kept connections but not effective
    (:func:`viz.unit_states` == 1).  Units with no kept connection are *unused*, not dead."""
    return {g: s == DEAD_UNIT for g, s in unit_states(graph, _reach(graph, reach)).items()}


def is_small(graph: LayeredGraph, *, max_units: int = MAX_UNITS, max_edges: int = MAX_EDGES) -> bool:
    """Whether :func:`plot_network` gives a readable drawing of ``graph``."""
    units, edges = _size(graph)
    return units <= max_units and edges <= max_edges


def _size(graph: LayeredGraph) -> tuple[int, int]:
    return sum(g.width for g in graph.groups.values()), sum(b.nnz for b in graph.blocks)


_EDGE_STYLE = {
    "not_accessible": dict(colors=DEAD, linewidths=1.5, alpha=0.95, zorder=3),
    "not_coaccessible": dict(colors=NOT_COACCESSIBLE, linewidths=1.5, alpha=0.95, linestyles="-.", zorder=3),
    "constant": dict(colors=CONSTANT, linewidths=1.3, alpha=0.9, linestyles="--", zorder=3),
    "structural": dict(colors=STRUCTURAL, linewidths=0.8, alpha=0.8, linestyles=":", zorder=1),
    "possible_skip": dict(colors=STRUCTURAL, linewidths=0.7, alpha=0.35, linestyles=(0, (1, 3)), zorder=1),
}
_EDGE_LABEL = {"not_accessible": "dead: not accessible", "not_coaccessible": "dead: not coaccessible",
               "constant": "constant (dead, fed by a bias)", "structural": "structural (identity, flatten)",
               "possible_skip": "possible skip (assumed: no model code)"}


def _effective_set(graph: LayeredGraph, reach: Reachability) -> set[tuple[Unit, Unit]]:
    return set(edge_classes(graph, reach)["effective"])


def _draw_network(ax, graph: LayeredGraph, r: Reachability, pos, *, other: set | None = None,
                  other_states: Mapping[str, np.ndarray] | None = None) -> dict[str, int]:
    """Edges and units of one network into ``ax``; returns the counts the caption states.

    With ``other`` (the effective pairs of a second model on the same units), effective pairs
    shared with it are faint (``edges:effective``) and the ones only this model has are bold
    (``edges:effective-only``); units whose state differs from ``other_states`` get a ring
    (``units:changed``)."""
    classes = edge_classes(graph, r)
    states = unit_states(graph, r)
    eff = classes["effective"]
    if other is None:
        groups = {"effective": (eff, dict(colors=KEPT, linewidths=0.9, zorder=2,
                                          alpha=float(np.clip(12.0 / np.sqrt(len(eff) + 1), 0.15, 0.55))))}
    else:
        shared = [e for e in eff if e in other]
        only = [e for e in eff if e not in other]
        groups = {"effective": (shared, dict(colors=KEPT, linewidths=0.7, zorder=2,
                                             alpha=float(np.clip(6.0 / np.sqrt(len(shared) + 1), 0.08, 0.3)))),
                  "effective-only": (only, dict(colors=KEPT, linewidths=1.8, alpha=0.9, zorder=2))}
    for name in ("not_accessible", "not_coaccessible", "constant", "structural", "possible_skip"):
        groups[name] = (classes[name], _EDGE_STYLE[name])
    for name, (pairs, style) in groups.items():
        if name in ("structural", "possible_skip"):
            segments = [_arc(pos[a], pos[b]) for a, b in pairs]
        else:
            segments = [np.array([pos[a], pos[b]]) for a, b in pairs]
        ax.add_collection(LineCollection(segments, gid=f"edges:{name}", **style))
    size = float(np.clip(2400.0 / max(len(pos), 1), 10.0, 90.0))

    def xy(state: int, where=None) -> np.ndarray:
        pts = [pos[(g, u)] for g in graph.order for u in np.flatnonzero(states[g] == state)
               if where is None or where(g, u)]
        return np.array(pts).reshape(-1, 2)

    e, d, u = xy(EFFECTIVE), xy(DEAD_UNIT), xy(UNUSED)
    ax.scatter(e[:, 0], e[:, 1], s=size, c=KEPT, edgecolors=KEPT, zorder=4, gid="units:effective")
    ax.scatter(d[:, 0], d[:, 1], s=size, facecolors=DEAD, edgecolors=KEPT, linewidths=1.0, zorder=4,
               gid="units:dead")
    ax.scatter(u[:, 0], u[:, 1], s=size * 0.45, facecolors="white", edgecolors=STRUCTURAL, linewidths=0.8,
               zorder=4, gid="units:unused")
    changed = 0
    if other_states is not None:
        ch = np.array([pos[(g, k)] for g in graph.order for k in np.flatnonzero(states[g] != other_states[g])])
        ch = ch.reshape(-1, 2)
        changed = len(ch)
        ax.scatter(ch[:, 0], ch[:, 1], s=size * 3.2, facecolors="none", edgecolors=CHANGED, linewidths=1.6,
                   zorder=5, gid="units:changed")
    n = {k: len(v) for k, v in classes.items()}
    n.update(dead_units=len(d), unused_units=len(u), effective_units=len(e), changed_units=changed)
    if other is not None:
        n["effective_only"] = len(groups["effective-only"][0])
    return n


def _group_labels(ax, graph: LayeredGraph, pos) -> None:
    depth = graph.depth()
    one_per_column = len(set(depth.values())) == len(graph.order)
    top = max(p[1] for p in pos.values())
    for name in graph.order:
        xy = np.array([pos[(name, u)] for u in range(graph.groups[name].width)])
        # One group per column (a chain): all labels on one line; else above each group.
        y = top if one_per_column else xy[:, 1].max()
        ax.annotate(f"{name}\n({graph.groups[name].width})", (xy[:, 0].mean(), y),
                    xytext=(0, 10), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    ax.autoscale_view()
    ax.margins(0.08, 0.12)
    lo, hi = ax.get_ylim()  # headroom inside the axes for the group labels (about 32 pt; never under the title)
    frac = 32.0 / max(ax.figure.get_figheight() * 72.0 * 0.6, 72.0)
    ax.set_ylim(lo, hi + (hi - lo) * frac / max(1.0 - frac, 0.2))
    ax.set_axis_off()


def _refuse_big(graph: LayeredGraph, max_units: int, max_edges: int) -> None:
    units, edges = _size(graph)
    if units > max_units or edges > max_edges:
        raise BadPlotInput(f"the network has {units:,} units and {edges:,} connected pairs; a layered drawing is "
                           f"readable up to {max_units:,} units and {max_edges:,} pairs: draw the per-layer bars "
                           "instead (plot_audit; `netgraph plot connectivity --style bars`)")


def _network_handles(n: Mapping[str, int], *, pair: bool) -> list[Line2D]:
    handles = []
    if pair:
        handles += [Line2D([], [], color=KEPT, alpha=0.3, linewidth=0.8, label="effective in both models"),
                    Line2D([], [], color=KEPT, linewidth=1.8, label="effective in this model only")]
    else:
        handles.append(Line2D([], [], color=KEPT, alpha=0.7, label="effective"))
    for name in ("not_accessible", "not_coaccessible", "constant", "structural", "possible_skip"):
        if name not in ("structural", "possible_skip") or n.get(name):
            st = _EDGE_STYLE[name]
            handles.append(Line2D([], [], color=st["colors"], linewidth=1.5, linestyle=st.get("linestyles", "-"),
                                  label=_EDGE_LABEL[name]))
    handles += [Line2D([], [], marker="o", linestyle="", color=KEPT, label="effective unit"),
                Line2D([], [], marker="o", linestyle="", markerfacecolor=DEAD, markeredgecolor=KEPT,
                       label="dead unit (kept weights, no effect)"),
                Line2D([], [], marker="o", markersize=4, linestyle="", markerfacecolor="white",
                       markeredgecolor=STRUCTURAL, label="unused unit (no kept weight)")]
    if pair:
        handles.append(Line2D([], [], marker="o", markersize=9, linestyle="", markerfacecolor="none",
                              markeredgecolor=CHANGED, markeredgewidth=1.6, label="unit state differs between models"))
    return handles


def _network_caption(n: Mapping[str, int]) -> str:
    dead = n["not_accessible"] + n["not_coaccessible"] + n["constant"]
    return (f"{n['effective']} effective pairs, {dead} dead ({n['not_accessible']} not accessible, "
            f"{n['not_coaccessible']} not coaccessible, {n['constant']} constant)\n"
            f"units: {n['effective_units']} effective, {n['dead_units']} dead, {n['unused_units']} unused")


def plot_network(graph: LayeredGraph, reach: Reachability | None = None, *, title: str | None = None,
                 max_units: int = MAX_UNITS, max_edges: int = MAX_EDGES):
    """Layered drawing of a small network: every unit, every connected unit pair, classed.

    Edge collections carry ``gid`` ``"edges:<class>"`` for the classes of
    :func:`edge_classes`; unit scatters ``"units:effective"``, ``"units:dead"`` (filled
    vermillion: kept connections, no effect) and ``"units:unused"`` (small, hollow grey: no
    kept connection), so the drawn data can be checked.

    Raises
    ------
    BadPlotInput
        The network has more than ``max_units`` units or ``max_edges`` pairs: the drawing
        would be a hairball; :func:`plot_audit` draws networks of any size.

    Examples
    --------
    >>> import numpy as np
    >>> from netgraph import chain
    >>> fig = plot_network(chain([np.array([[1, 0], [0, 0]]), np.array([[1, 1]])]))
    >>> # unit 1 of the hidden layer has no input, so its edge to the output is dead
    >>> [len(c.get_segments()) for c in fig.axes[0].collections if c.get_gid() == "edges:not_accessible"]
    [1]
    """
    _refuse_big(graph, max_units, max_edges)
    r = _reach(graph, reach)
    pos = network_layout(graph)
    fig = new_figure(float(np.clip(2.0 + 1.8 * (max(graph.depth().values()) + 1), 6.0, 14.0)),
                     float(np.clip(0.12 * max(g.width for g in graph.groups.values()) + 2.5, 4.5, 11.0)) + 0.6)
    ax = fig.add_subplot()
    n = _draw_network(ax, graph, r, pos)
    _group_labels(ax, graph, pos)
    head = title if title is not None else "connectivity (unit pairs)"
    if getattr(graph, "topology", "") == "inferred-chain":
        head += "\n(topology inferred from the weight shapes, without model code)"
    ax.set_title(f"{head}\n{_network_caption(n)}", fontsize=9)
    handles = _network_handles(n, pair=False)
    fig.legend(handles=handles, loc="outside lower center", ncols=3 if fig.get_figwidth() >= 7.5 else 2, fontsize=8,
               frameon=False)
    return fig


def plot_network_pair(a: LayeredGraph, b: LayeredGraph, *, labels: tuple[str, str] = ("A", "B"),
                      reach_a: Reachability | None = None, reach_b: Reachability | None = None,
                      notes: tuple[str, str] = ("", ""), title: str | None = None, max_units: int = MAX_UNITS,
                      max_edges: int = MAX_EDGES):
    """Two models of one architecture side by side, drawn so that what differs stands out.

    Both panels share one layout.  In each, effective pairs that the other model also has
    effective are faint (``edges:effective``), those only this model has are bold
    (``edges:effective-only``); dead pairs are coloured by kind (as :func:`plot_network`);
    units are effective (dark), dead (vermillion) or unused (small hollow), and a unit whose
    state differs between the models is ringed (``units:changed``).  ``notes`` are written after
    each panel's label (e.g. its accuracy).

    Raises
    ------
    BadPlotInput
        The two graphs do not have the same groups and widths, or are too big to draw.
    """
    shape_a = [(g, a.groups[g].width) for g in a.order]
    shape_b = [(g, b.groups[g].width) for g in b.order]
    if shape_a != shape_b:
        raise BadPlotInput(f"plot_network_pair needs two models of one architecture; groups differ: "
                           f"{shape_a} vs {shape_b}")
    for g in (a, b):
        _refuse_big(g, max_units, max_edges)
    ra, rb = _reach(a, reach_a), _reach(b, reach_b)
    pos = network_layout(a)
    eff = (_effective_set(a, ra), _effective_set(b, rb))
    states = (unit_states(a, ra), unit_states(b, rb))
    w = float(np.clip(1.0 + 1.5 * (max(a.depth().values()) + 1), 4.5, 8.0))
    h = float(np.clip(0.12 * max(g.width for g in a.groups.values()) + 2.5, 4.5, 10.0)) + 1.2
    fig = new_figure(2 * w, h)
    axes = fig.subplots(1, 2)
    counts = []
    for k, (ax, g, r, label) in enumerate(zip(axes, (a, b), (ra, rb), labels)):
        n = _draw_network(ax, g, r, pos, other=eff[1 - k], other_states=states[1 - k])
        _group_labels(ax, g, pos)
        head = f"{label} {notes[k]}" if notes[k] else label
        ax.set_title(f"{head}\n{_network_caption(n)}\n{n['effective_only']} effective pairs not effective "
                     f"in {labels[1 - k]}; {n['changed_units']} units in another state", fontsize=8.5)
        counts.append(n)
    if title:
        fig.suptitle(title, fontsize=11)
    handles = _network_handles(counts[0], pair=True)
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return fig


_BAR_PARTS = (
    ("effective", KEPT, "effective"),
    ("constant", CONSTANT, "constant (dead, fed by a bias)"),
    ("not_accessible", DEAD, "dead: not accessible"),
    ("not_coaccessible", NOT_COACCESSIBLE, "dead: not coaccessible"),
)


def layer_parts(report: AuditReport | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per layer of an audit: the four disjoint parts of ``kept`` that the bars stack."""
    d = report.to_dict() if hasattr(report, "to_dict") else report
    try:
        layers = list(d["layers"])
        out = []
        for l in layers:
            kept, acc, eff, const = int(l["kept"]), int(l["accessible"]), int(l["effective"]), int(l["constant"])
            out.append({"name": str(l["name"]), "kept": kept, "effective": eff, "constant": const,
                        "not_accessible": kept - acc - const, "not_coaccessible": acc - eff})
    except (KeyError, TypeError, ValueError) as exc:
        raise BadPlotInput(f"not an audit report (need layers with kept/accessible/effective/constant): {exc!r}") \
            from None
    return out


def _bars(ax, parts: list[dict[str, Any]], normalize: bool) -> None:
    x = np.arange(len(parts))
    bottom = np.zeros(len(parts))
    kept = np.array([p["kept"] for p in parts], dtype=float)
    scale = np.where(kept > 0, 100.0 / np.maximum(kept, 1), 0.0) if normalize else np.ones(len(parts))
    for key, colour, label in _BAR_PARTS:
        h = np.array([p[key] for p in parts], dtype=float) * scale
        hatch = NOT_COACCESSIBLE_HATCH if key == "not_coaccessible" else None
        ax.bar(x, h, bottom=bottom, color=colour, width=0.7, label=label, edgecolor="white", linewidth=0.5,
               hatch=hatch)
        bottom += h
    crowded = len(parts) > 8  # long labels side by side would overlap: write them upright
    for xi, p, top in zip(x, parts, bottom):
        dead = p["kept"] - p["effective"]
        pct = f"{100.0 * dead / p['kept']:.0f}%" if p["kept"] else "-"
        text = f"{_short(p['kept'])} kept, {pct} dead" if crowded else f"kept {p['kept']:,}\ndead {pct}"
        ax.annotate(text, (xi, top), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                    fontsize=7, rotation=90 if crowded else 0)
    ax.set_xticks(x, [p["name"] for p in parts], rotation=30 if len(parts) > 4 else 0,
                  ha="right" if len(parts) > 4 else "center", fontsize=8)
    ax.set_ylabel("share of kept weights (%)" if normalize else "kept weights (kernel taps counted)")
    headroom = 1.45 if crowded else 1.18
    ax.set_ylim(0, (100 * headroom if normalize else max(bottom.max(initial=0.0), 1) * headroom))
    if normalize:
        ax.set_yticks(range(0, 101, 20))  # the headroom above 100 % is for labels, not data
    if not parts:
        ax.text(0.5, 0.5, "no prunable weight", ha="center", va="center", transform=ax.transAxes, color=GRID)
    ax.spines[["top", "right"]].set_visible(False)


def _short(n: int) -> str:
    """1234 -> '1.2k', 2_500_000 -> '2.5M'."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def plot_layer_bars(report: AuditReport | Mapping[str, Any], *, normalize: bool = False, title: str | None = None):
    """Stacked bars per prunable layer: effective / constant / not accessible / not coaccessible.

    Parameters
    ----------
    report : AuditReport or its ``to_dict()``
    normalize : bool
        False: heights are weight counts (they sum to ``kept``).  True: percent of ``kept``.

    The bar containers are labelled with the parts' legend labels (``ax.containers``).
    """
    parts = layer_parts(report)
    fig = new_figure(float(np.clip(1.2 * len(parts) + 3.0, 5.0, 14.0)), 4.6)
    ax = fig.add_subplot()
    _bars(ax, parts, normalize)
    src = report.source if hasattr(report, "source") else report.get("source", "")
    ax.set_title(title if title is not None else f"kept weights per layer{': ' + str(src) if src else ''}",
                 fontsize=10)
    fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False,
               handles=_bar_handles())
    return fig


def _bar_handles() -> list[Patch]:
    return [Patch(facecolor=c, edgecolor="white", hatch=NOT_COACCESSIBLE_HATCH if k == "not_coaccessible" else None,
                  label=l) for k, c, l in _BAR_PARTS]


_STATE_COLOURS = {UNUSED: PRUNED, DEAD_UNIT: DEAD, EFFECTIVE: KEPT}


def _strip(ax, graph: LayeredGraph, states: Mapping[str, np.ndarray]) -> None:
    names = list(graph.order)
    palette = np.array([_rgb(_STATE_COLOURS[k]) for k in (UNUSED, DEAD_UNIT, EFFECTIVE)])
    for k, name in enumerate(names):
        img = palette[np.asarray(states[name], dtype=int)][None, :, :]  # (1, width, 3)
        ax.imshow(img, extent=(0, 1, k + 0.4, k - 0.4), aspect="auto", interpolation="nearest", gid=f"strip:{name}")
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_yticks(range(len(names)),
                  [f"{n}: {int((states[n] == DEAD_UNIT).sum())} dead, {int((states[n] == UNUSED).sum())} unused "
                   f"of {graph.groups[n].width}" for n in names], fontsize=8)
    ax.set_xticks([0, 1], ["unit 0", "last unit"], fontsize=7)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)


def _unit_handles() -> list[Patch]:
    return [Patch(color=KEPT, label="effective unit"), Patch(color=DEAD, label="dead unit (kept weights, no effect)"),
            Patch(facecolor=PRUNED, edgecolor=GRID, linewidth=0.5, label="unused unit (no kept weight)")]


def _rgb(colour: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


def plot_dead_units(graph: LayeredGraph, reach: Reachability | None = None, *, title: str | None = None):
    """One strip per group (forward order): each unit a cell, effective dark, dead
    vermillion, unused light grey (:func:`viz.unit_states`).

    Each strip's image (``gid="strip:<group>"``) has one pixel per unit, stretched to the
    same width so groups of different widths line up.
    """
    states = unit_states(graph, _reach(graph, reach))
    fig = new_figure(8.0, 0.45 * len(graph.order) + 1.6)
    ax = fig.add_subplot()
    _strip(ax, graph, states)
    ax.set_title(title if title is not None else "units per group: effective, dead (kept weights, no effect), "
                 "unused (no kept weight)", fontsize=10)
    fig.legend(handles=_unit_handles(), loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig


def plot_audit(report: AuditReport | Mapping[str, Any], graph: LayeredGraph, reach: Reachability | None = None,
               *, normalize: bool = True, title: str | None = None):
    """For networks of any size: the per-layer bars above the dead-units strip."""
    parts = layer_parts(report)
    states = unit_states(graph, _reach(graph, reach))
    fig = new_figure(float(np.clip(1.2 * len(parts) + 4.0, 7.0, 14.0)), 4.6 + 0.4 * len(graph.order))
    top, bottom = fig.subplots(2, 1, height_ratios=[4.0, max(1.0, 0.4 * len(graph.order))])
    _bars(top, parts, normalize)
    _strip(bottom, graph, states)
    bottom.set_title("units per group", fontsize=9, loc="left")
    summ = sum(p["kept"] for p in parts), sum(p["effective"] for p in parts)
    pct = 100.0 * (summ[0] - summ[1]) / summ[0] if summ[0] else 0.0
    const = sum(p["constant"] for p in parts)
    numbers = (f"{summ[0]:,} kept weights, {summ[0] - summ[1]:,} dead ({pct:.1f}%"
               + (f"; {const:,} of them constant" if const else "") + ")")
    fig.suptitle(f"{title}\n{numbers}" if title else f"audit: {numbers}", fontsize=10)
    top.legend(handles=_bar_handles()[::-1], loc="upper left",
               bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="kept weights", title_fontsize=8)
    bottom.legend(handles=_unit_handles(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  title="units", title_fontsize=8)
    return fig


def plot_connectivity(graph: LayeredGraph, reach: Reachability | None = None, *, report: AuditReport | None = None,
                      max_units: int = MAX_UNITS, max_edges: int = MAX_EDGES, title: str | None = None):
    """The layered drawing when the network is small (:func:`is_small`), else :func:`plot_audit`."""
    r = _reach(graph, reach)
    if is_small(graph, max_units=max_units, max_edges=max_edges):
        return plot_network(graph, r, title=title)
    if report is None:
        from netgraph import audit

        report = audit(graph, r)
    return plot_audit(report, graph, r, title=title)


def plot_receptive_sets(graph: LayeredGraph, group: str | None = None, *, input_shape: tuple[int, ...] | None = None,
                        max_panels: int = 16, title: str | None = None):
    """Which inputs reach each unit of ``group`` (default: the first sink): the columns of ``S_a``.

    Without ``input_shape``: one image, a row per unit of the group, a column per input unit
    (dark = the input reaches the unit); the image array (``gid="receptive"``) is
    ``S_a[group].T``.  With ``input_shape`` (e.g. ``(8, 8)`` for digits): one panel per unit
    (the first ``max_panels``), its receptive set reshaped to the input's shape.
    """
    name = group if group is not None else graph.sinks[0]
    if name not in graph.groups:
        raise BadPlotInput(f"no group named {name!r}; groups: {', '.join(graph.order)}")
    sa = products(graph, "accessibility")[name].matrix.toarray().astype(bool)  # (n_inputs, width)
    n_in, width = sa.shape
    reached = sa.any(axis=0)
    if input_shape is not None:
        if int(np.prod(input_shape)) != n_in:
            raise BadPlotInput(f"input_shape {tuple(input_shape)} has {int(np.prod(input_shape))} entries but the "
                               f"network has {n_in} inputs")
        k = min(width, max_panels)
        ncols = k if k <= 5 else (5 if k <= 10 else 8)
        nrows = -(-k // ncols)
        fig = new_figure(1.6 * ncols + 0.4, 1.7 * nrows + 1.2)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        cmap = _binary_cmap()
        for idx, ax in enumerate(axes.ravel()):
            ax.set_xticks([])
            ax.set_yticks([])
            if idx >= k:
                ax.set_axis_off()
                continue
            ax.imshow(sa[:, idx].reshape(input_shape).astype(float), cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest", gid=f"receptive:{idx}")
            n_reach = int(sa[:, idx].sum())
            ax.set_title(f"unit {idx}: {n_reach} input{'' if n_reach == 1 else 's'}", fontsize=8,
                         color=KEPT if reached[idx] else DEAD)
    else:
        fig = new_figure(float(np.clip(n_in / 30.0, 6.0, 11.0)), float(np.clip(width / 8.0, 2.2, 8.0)) + 1.6)
        ax = fig.add_subplot()
        ax.imshow(sa.T.astype(float), cmap=_binary_cmap(), vmin=0, vmax=1, aspect="auto",
                  interpolation="nearest" if n_in <= 400 else "antialiased", gid="receptive")
        ax.set_xlabel("input unit")
        ax.set_ylabel(f"unit of {name}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    dead_in = int((~sa.any(axis=1)).sum())
    head = title if title is not None else f"receptive sets of {name} (from S_a)"
    fig.suptitle(f"{head}\n{int((~reached).sum())} of {width} units reached by no input; "
                 f"{dead_in} of {n_in} inputs reach none of them", fontsize=10)
    fig.legend(handles=[Patch(color=KEPT, label="input reaches the unit"),
                        Patch(facecolor=PRUNED, edgecolor=GRID, label="does not")],
               loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def _binary_cmap():
    from matplotlib.colors import ListedColormap

    return ListedColormap([PRUNED, KEPT])
