"""Ablation curves: % effective and accuracy vs pruning rate, one line per method.

The ablation JSON (what ``netgraph ablate`` writes and :func:`load_ablation` reads)
----------------------------------------------------------------------------------
A list of rows, or an object whose ``"rows"`` key holds that list::

    [
      {"method": "MP w/o TC", "rate": 0.95, "kept": 89507, "effective_pct": 64.34, "accuracy": 83.47},
      {"method": "MP w TC",   "rate": 0.95, "kept": 89453, "effective_pct": 100.0, "accuracy": 85.21},
      {"method": "baseline",  "rate": 0.0,  "kept": 1967616, "effective_pct": 100.0, "accuracy": 86.08}
    ]

``trainer``'s ``run_ablation`` writes ``{"config": ..., "rows": [...]}`` with ``target_rate`` /
``achieved_rate`` and a ``dataset`` per row: read as is (x = the target rate).

=================  ========  ===================================================================
key                type      meaning
=================  ========  ===================================================================
``method``         str       the curve the row belongs to (``"MP w/o TC"``, ``"coarse"``, ``"CTF"``)
``rate``           number    pruning rate as a fraction in [0, 1] (0.95 = 95 % of weights pruned);
                             when missing, ``target_rate``, else ``achieved_rate`` (the trainer's keys)
``dataset``        str       optional; several datasets in one file get one row of panels each
``kept``           int       kept weights (optional for the plot)
``effective_pct``  number    effective (accessible and coaccessible) kept weights, percent of kept,
                             in [0, 100] (tc-pruning Table 2, "% of A-C").  When missing, computed
                             from ``effective`` (a count) and ``kept`` if both are there.
``accuracy``       number    test accuracy in percent, [0, 100]; ``null`` or missing = not measured
=================  ========  ===================================================================

Any other key (``speedup``, ``seed``, ``achieved_rate``, ...) is ignored.  Rows at rate 0 are
unpruned baselines: drawn as horizontal reference lines, not as points of a curve.  Several
rows with the same method and rate (seeds) are averaged; each is also drawn as a faint dot.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.lines import Line2D

from ._errors import BadPlotInput
from ._style import GRID, new_figure

__all__ = ["AblationRow", "load_ablation", "ablation_rows", "plot_ablation"]

_METHOD_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#8c564b")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class AblationRow:
    """One (method, rate) result; see the module docstring for units."""

    method: str
    rate: float
    effective_pct: float | None
    accuracy: float | None
    kept: int | None = None
    dataset: str = ""


def _number(row: Mapping[str, Any], key: str, where: str, lo: float, hi: float, *, required: bool) -> float | None:
    value = row.get(key)
    if value is None:
        if required:
            raise BadPlotInput(f"{where} has no {key!r}; every row needs method, rate and effective_pct")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadPlotInput(f"{where}: {key} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise BadPlotInput(f"{where}: {key} = {value!r} is outside [{lo:g}, {hi:g}]"
                           + (" (rates are fractions: 0.95 for 95 %)" if key == "rate" else ""))
    return float(value)


def ablation_rows(data: Any, *, source: str = "ablation data") -> list[AblationRow]:
    """Validate parsed ablation JSON (a list of rows or ``{"rows": [...]}``) into rows."""
    if isinstance(data, Mapping) and "rows" in data:
        data = data["rows"]
    if not isinstance(data, list):
        raise BadPlotInput(f"{source}: expected a list of rows (or an object with a 'rows' list), "
                           f"got {type(data).__name__}")
    if not data:
        raise BadPlotInput(f"{source}: no rows to plot")
    rows = []
    for k, row in enumerate(data):
        where = f"{source}: row {k}"
        if not isinstance(row, Mapping):
            raise BadPlotInput(f"{where} is a {type(row).__name__}, expected an object")
        method = row.get("method")
        if not isinstance(method, str) or not method:
            raise BadPlotInput(f"{where} has method {method!r}; expected a non-empty string")
        key = next((k for k in ("rate", "target_rate", "achieved_rate") if row.get(k) is not None), "rate")
        rate = _number(row, key, where, 0.0, 1.0, required=True)
        dataset = row.get("dataset", "")
        if not isinstance(dataset, str):
            raise BadPlotInput(f"{where} has dataset {dataset!r}; expected a string")
        eff = _number(row, "effective_pct", where, 0.0, 100.0, required=False)
        kept = row.get("kept")
        if kept is not None and (isinstance(kept, bool) or not isinstance(kept, int) or kept < 0):
            raise BadPlotInput(f"{where}: kept must be a non-negative integer, got {kept!r}")
        if eff is None:
            count = row.get("effective")
            if isinstance(count, int) and not isinstance(count, bool) and isinstance(kept, int) and 0 <= count <= kept:
                eff = 100.0 * count / kept if kept else 100.0
            else:
                raise BadPlotInput(f"{where} has no 'effective_pct' (nor 'effective' and 'kept' counts)")
        acc = _number(row, "accuracy", where, 0.0, 100.0, required=False)
        rows.append(AblationRow(method, rate, eff, acc, kept, dataset))
    return rows


def load_ablation(path: str | os.PathLike) -> list[AblationRow]:
    """Read and validate an ablation JSON file (shape in the module docstring)."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise BadPlotInput(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadPlotInput(f"{p}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BadPlotInput(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    return ablation_rows(data, source=p)


def _fmt_rate(r: float) -> str:
    return f"{100.0 * r:.4g}%"


def plot_ablation(rows: Iterable[AblationRow | Mapping[str, Any]], *, methods: Sequence[str] | None = None,
                  dataset: str | None = None, title: str | None = None):
    """Two panels per dataset: % effective vs rate and accuracy vs rate, one line per method.

    Parameters
    ----------
    rows : iterable of :class:`AblationRow` or dicts in the JSON shape
    methods : sequence of str, optional
        Line order (and colours); default: order of first appearance.
    dataset : str, optional
        Draw only this dataset's rows; default: every dataset, one row of panels each.

    The x axis is a logit scale when the rates reach 90 % or more (so 95 %, 99 % and 99.5 %
    do not pile up at the right edge); ticks sit at the measured rates.  Each method's line
    has ``gid`` ``"effective:<method>"`` / ``"accuracy:<method>"``; its points are the
    per-rate means.  A method's colour is the same in every panel.
    """
    rows = list(rows)
    if rows and not isinstance(rows[0], AblationRow):
        rows = ablation_rows(rows)
    if not rows:
        raise BadPlotInput("no ablation rows to plot")
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    if dataset is not None:
        if dataset not in datasets:
            raise BadPlotInput(f"no rows for dataset {dataset!r}; datasets: {', '.join(map(repr, datasets))}")
        datasets = [dataset]
        rows = [r for r in rows if r.dataset == dataset]
    order = list(methods) if methods is not None else list(dict.fromkeys(r.method for r in rows))
    style = {m: (_METHOD_COLOURS[k % len(_METHOD_COLOURS)], _MARKERS[k % len(_MARKERS)]) for k, m in enumerate(order)}
    fig = new_figure(11.0, 4.0 * len(datasets) + 0.8)
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    handles: dict[str, Line2D] = {}
    for (ax_eff, ax_acc), ds in zip(axes, datasets):
        mine = [r for r in rows if r.dataset == ds]
        handles.update(_panels(ax_eff, ax_acc, mine, order, style))
        if ds:
            ax_eff.set_title(f"{ds}: accessible and coaccessible (% A-C)", fontsize=10)
            ax_acc.set_title(f"{ds}: accuracy", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    legend = [handles[m] for m in order if m in handles]
    fig.legend(handles=legend, loc="outside lower center", ncols=min(len(legend), 6), fontsize=9, frameon=False)
    return fig


def _panels(ax_eff, ax_acc, rows: list[AblationRow], order: Sequence[str], style) -> dict[str, Line2D]:
    rates = sorted({r.rate for r in rows if r.rate > 0})
    logit = bool(rates) and rates[-1] >= 0.9 and rates[-1] < 1.0 and len(rates) > 1
    handles = {}
    for method in order:
        colour, marker = style[method]
        mine = [r for r in rows if r.method == method]
        if not mine:
            continue
        drew = False
        for ax, key in ((ax_eff, "effective_pct"), (ax_acc, "accuracy")):
            pts = [(r.rate, getattr(r, key)) for r in mine if getattr(r, key) is not None]
            base = [v for x, v in pts if x == 0]
            if base:  # an unpruned reference: a horizontal line across the panel
                ax.axhline(float(np.mean(base)), color=colour, linestyle="--", linewidth=1.0, alpha=0.8,
                           gid=f"baseline-{key}:{method}")
                drew = True
            curve = sorted({x for x, _ in pts if x > 0})
            if not curve:
                continue
            means = [float(np.mean([v for x, v in pts if x == c])) for c in curve]
            ax.plot(curve, means, color=colour, marker=marker, linewidth=1.6, markersize=5,
                    gid=f"{'effective' if key == 'effective_pct' else 'accuracy'}:{method}")
            if len(pts) > len(curve) + len(base):  # repeated runs: show every run faintly
                ax.scatter([x for x, _ in pts if x > 0], [v for x, v in pts if x > 0], color=colour, s=10,
                           alpha=0.35, linewidths=0)
            drew = True
        if drew:
            only_base = all(r.rate == 0 for r in mine)
            handles[method] = Line2D([], [], color=colour, marker=None if only_base else marker,
                                     linestyle="--" if only_base else "-",
                                     label=method + (" (unpruned)" if only_base else ""))
    for ax in (ax_eff, ax_acc):
        if logit:
            ax.set_xscale("logit")
        if rates:
            ax.set_xticks(rates, [_fmt_rate(r) for r in rates], rotation=45 if len(rates) > 4 else 0, fontsize=8)
            ax.minorticks_off()
        ax.set_xlabel("pruning rate" + (" (logit scale)" if logit else ""))
        ax.grid(True, color=GRID, alpha=0.25, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    ax_eff.set_ylabel("effective weights (% of kept)")
    ax_eff.set_ylim(-3, 105)
    ax_eff.set_title("accessible and coaccessible (% A-C)", fontsize=10)
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("accuracy", fontsize=10)
    if not any(r.accuracy is not None for r in rows):
        ax_acc.text(0.5, 0.5, "no accuracy in the data", ha="center", va="center", transform=ax_acc.transAxes,
                    color=GRID)
    return handles
