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
``seed``           int       optional; the run's seed (rows of one cell differ only in it)
``n_test``         int       optional; test-set size (written in the caption: one sample = 100/n points)
``classes``        int       optional; number of classes: chance = 100 / classes, drawn as a line
``chance``         number    optional; chance accuracy in percent (overrides ``classes``)
=================  ========  ===================================================================

Any other key (``speedup``, ``achieved_rate``, ...) is ignored.  Rows at rate 0 are unpruned
baselines (``dense``): drawn as horizontal reference lines with their ± sd band, not as points
of a curve.  Rows with the same dataset, method and rate (seeds) are summarised by
:func:`ablation_summary`: the mean and the sample standard deviation (``ddof=1``; 0 for a
single run).  The figure draws exactly those numbers: the mean as a line, ± sd as error bars,
each run as a faint dot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.transforms import ScaledTranslation

from ._errors import BadPlotInput
from ._style import GRID, KEPT, new_figure

__all__ = ["AblationRow", "ablation_rows", "ablation_summary", "plot_ablation", "ablation_panels", "DENSE"]

_METHOD_COLOURS = ("#0072b2", "#009e73", "#e69f00", "#56b4e9", "#000000", "#8c564b", "#cc79a7", "#d55e00")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DENSE = "#555555"
CHANCE = "#999999"


@dataclass(frozen=True)
class AblationRow:
    """One run (method, rate, seed); see the module docstring for units."""

    method: str
    rate: float
    effective_pct: float | None
    accuracy: float | None
    kept: int | None = None
    dataset: str = ""
    seed: int | None = None
    n_test: int | None = None
    chance: float | None = None


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


def _count(row: Mapping[str, Any], key: str, where: str, lo: int) -> int | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise BadPlotInput(f"{where}: {key} must be an integer >= {lo}, got {value!r}")
    return int(value)


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
        seed = _count(row, "seed", where, 0)
        n_test = _count(row, "n_test", where, 1)
        chance = _number(row, "chance", where, 0.0, 100.0, required=False)
        if chance is None:
            classes = _count(row, "classes", where, 1)
            chance = 100.0 / classes if classes else None
        rows.append(AblationRow(method, rate, eff, acc, kept, dataset, seed, n_test, chance))
    return rows


def _as_rows(rows: Iterable[AblationRow | Mapping[str, Any]]) -> list[AblationRow]:
    rows = list(rows)
    if rows and not isinstance(rows[0], AblationRow):
        rows = ablation_rows(rows)
    return rows


def _mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def ablation_summary(rows: Iterable[AblationRow | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (dataset, method, rate), in order of first appearance: the runs' mean and sd.

    Each entry: ``dataset, method, rate, runs`` (number of rows), ``effective_mean,
    effective_sd, accuracy_mean, accuracy_sd`` (sd = sample standard deviation, ``ddof=1``;
    0.0 for one run; ``None`` when no run measured it), ``n_accuracy`` (runs with an
    accuracy), ``kept_mean``.
    """
    groups: dict[tuple[str, str, float], list[AblationRow]] = {}
    for r in _as_rows(rows):
        groups.setdefault((r.dataset, r.method, r.rate), []).append(r)
    out = []
    for (ds, method, rate), mine in groups.items():
        em, es = _mean_sd([r.effective_pct for r in mine if r.effective_pct is not None])
        accs = [r.accuracy for r in mine if r.accuracy is not None]
        am, asd = _mean_sd(accs)
        kept = [r.kept for r in mine if r.kept is not None]
        out.append({"dataset": ds, "method": method, "rate": rate, "runs": len(mine),
                    "effective_mean": em, "effective_sd": es, "accuracy_mean": am, "accuracy_sd": asd,
                    "n_accuracy": len(accs), "kept_mean": float(np.mean(kept)) if kept else None})
    return out


def _fmt_rate(r: float) -> str:
    return f"{100.0 * r:.4g}%"


def _nines(x):
    """x ↦ -log10(1 - x): 90 % → 1, 99 % → 2, 99.9 % → 3 (rates near 1 spread out)."""
    x = np.asarray(x, dtype=float)
    return -np.log10(np.clip(1.0 - x, 1e-6, None))


def _nines_inv(y):
    return 1.0 - 10.0 ** (-np.asarray(y, dtype=float))


def _style_for(order: Sequence[str]) -> dict[str, tuple[str, str]]:
    return {m: (_METHOD_COLOURS[k % len(_METHOD_COLOURS)], _MARKERS[k % len(_MARKERS)]) for k, m in enumerate(order)}


def plot_ablation(rows: Iterable[AblationRow | Mapping[str, Any]], *, methods: Sequence[str] | None = None,
                  dataset: str | None = None, title: str | None = None, labels: Mapping[str, str] | None = None):
    """Two panels per dataset: % effective and accuracy vs rate, mean ± sd per method.

    Parameters
    ----------
    rows : iterable of :class:`AblationRow` or dicts in the JSON shape
    methods : sequence of str, optional
        Line order (and colours); default: order of first appearance.
    dataset : str, optional
        Draw only this dataset's rows; default: every dataset, one row of panels each.
    labels : mapping, optional
        Legend names of methods (``{"mp": "MP w/o TC"}``); gids keep the method's own name.

    What is drawn (and what the tests read back)
    --------------------------------------------
    Per method, in each panel: the per-rate means of :func:`ablation_summary` as a line
    (``gid`` ``"effective:<method>"`` / ``"accuracy:<method>"``, x = the rates, y = the
    means), ± sd as error bars (a ``LineCollection`` with ``gid`` ``"sd-effective:<method>"``
    / ``"sd-accuracy:<method>"``; one vertical segment ``mean ± sd`` per rate), each run as a
    faint dot.  Methods are dodged sideways by a few points so their bars do not overlap (the
    data x stays the rate).  Rate-0 rows (the dense baseline): a dashed horizontal line at the
    mean (``gid`` ``"baseline-<key>:<method>"``) with a ± sd band; chance (from ``classes``
    / ``chance``): a dotted line (``gid`` ``"chance"``).  Both y axes span 0–100 %.  The x
    axis is ``-log10(1 - rate)`` when the rates reach 90 % (90, 99, 99.9 % equally spaced);
    tick labels that would collide are dropped.  The accuracy panel's title gives the
    test-set size and the number of seeds.
    """
    rows = _as_rows(rows)
    if not rows:
        raise BadPlotInput("no ablation rows to plot")
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    if dataset is not None:
        if dataset not in datasets:
            raise BadPlotInput(f"no rows for dataset {dataset!r}; datasets: {', '.join(map(repr, datasets))}")
        datasets = [dataset]
        rows = [r for r in rows if r.dataset == dataset]
    order = list(methods) if methods is not None else list(dict.fromkeys(r.method for r in rows))
    style = _style_for(order)
    fig = new_figure(11.0, 4.5 * len(datasets) + 1.0)
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    handles: dict[str, Any] = {}
    for (ax_eff, ax_acc), ds in zip(axes, datasets):
        mine = [r for r in rows if r.dataset == ds]
        handles.update(ablation_panels(ax_eff, ax_acc, mine, order, style, dataset=ds, panel_width=4.6,
                                       labels=labels))
    if title:
        fig.suptitle(title, fontsize=11)
    legend = [handles[k] for k in list(order) + ["__dense", "__chance", "__sd"] if k in handles]
    fig.legend(handles=legend, loc="outside lower center", ncols=min(len(legend), 4), fontsize=9, frameon=False)
    return fig


def _caption(rows: list[AblationRow], dataset: str) -> str:
    seeds = {}
    for r in rows:
        if r.rate > 0:
            seeds.setdefault((r.method, r.rate), set()).add(r.seed)
    runs = sorted({len(v) for v in seeds.values()}) or [1]
    n_test = sorted({r.n_test for r in rows if r.n_test})
    parts = []
    if n_test:
        n = n_test[0] if len(n_test) == 1 else None
        parts.append(f"test set {n:,} samples, 1 sample = {100.0 / n:.2g} points" if n else
                     f"test sets of {n_test[0]:,}-{n_test[-1]:,} samples")
    parts.append(f"mean ± sd over {runs[0]} seed{'s' if runs[0] > 1 else ''}" if len(runs) == 1 else
                 f"mean ± sd over {runs[0]}-{runs[-1]} seeds")
    return (f"{dataset}: " if dataset else "") + "\n".join(parts)


def ablation_panels(ax_eff, ax_acc, rows: list[AblationRow], order: Sequence[str], style=None, *,
                    dataset: str = "", panel_width: float = 4.6,
                    labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Draw one dataset's two panels into the given axes; returns legend handles by method
    (plus ``"__dense"``, ``"__chance"``, ``"__sd"``).  Used by :func:`plot_ablation` and the
    demo's headline figure; see :func:`plot_ablation` for what is drawn."""
    style = style or _style_for(order)
    name = dict(labels or {})
    summary = [s for s in ablation_summary(rows)]
    rates = sorted({s["rate"] for s in summary if s["rate"] > 0})
    nines = bool(rates) and rates[-1] >= 0.9
    handles: dict[str, Any] = {}
    curve_methods = [m for m in order if any(s["method"] == m and s["rate"] > 0 for s in summary)]
    step = 0.05 if len(curve_methods) > 1 else 0.0  # inches between neighbouring methods' bars
    any_sd = False
    for k, method in enumerate(order):
        colour, marker = style[method]
        mine = [s for s in summary if s["method"] == method]
        if not mine:
            continue
        dodge = (curve_methods.index(method) - (len(curve_methods) - 1) / 2) * step if method in curve_methods \
            else 0.0
        for ax, key, short in ((ax_eff, "effective", "effective"), (ax_acc, "accuracy", "accuracy")):
            shift = ax.transData + ScaledTranslation(dodge, 0.0, ax.figure.dpi_scale_trans)
            pts = [s for s in mine if s[f"{key}_mean"] is not None]
            for s in pts:
                if s["rate"] == 0:  # the unpruned reference: a horizontal line and its band
                    m, sd = s[f"{key}_mean"], s[f"{key}_sd"]
                    ax.axhline(m, color=DENSE, linestyle="--", linewidth=1.2, gid=f"baseline-{key}:{method}",
                               zorder=1)
                    if sd:
                        ax.axhspan(m - sd, m + sd, color=DENSE, alpha=0.12, linewidth=0, zorder=0)
                    if key == "accuracy":
                        text = f"{name.get(method, method)} (unpruned): {m:.1f} ± {sd:.1f} %"
                        handles["__dense"] = Line2D([], [], color=DENSE, linestyle="--", label=text)
            curve = sorted((s for s in pts if s["rate"] > 0), key=lambda s: s["rate"])
            if not curve:
                continue
            xs = [s["rate"] for s in curve]
            means = [s[f"{key}_mean"] for s in curve]
            sds = [s[f"{key}_sd"] for s in curve]
            ax.plot(xs, means, color=colour, marker=marker, linewidth=1.6, markersize=5, transform=shift,
                    gid=f"{short}:{method}", zorder=3)
            if any(s["runs"] > 1 for s in curve):
                any_sd = True
                eb = ax.errorbar(xs, means, yerr=sds, fmt="none", ecolor=colour, elinewidth=1.2, capsize=3,
                                 transform=shift, zorder=3)
                eb.lines[2][0].set_gid(f"sd-{short}:{method}")
                runs = [(r.rate, getattr(r, "effective_pct" if key == "effective" else "accuracy"))
                        for r in rows if r.method == method and r.rate > 0]
                runs = [(x, v) for x, v in runs if v is not None]
                ax.scatter([x for x, _ in runs], [v for _, v in runs], color=colour, s=9, alpha=0.35,
                           linewidths=0, transform=shift, zorder=2)
            handles[method] = Line2D([], [], color=colour, marker=marker, label=name.get(method, method))
        if method not in handles and any(s["rate"] == 0 for s in mine):
            pass  # a baseline-only method: its legend entry is the dense line
    chance = sorted({r.chance for r in rows if r.chance is not None})
    if chance:
        ax_acc.axhline(chance[0], color=CHANCE, linestyle=":", linewidth=1.4, gid="chance", zorder=1)
        handles["__chance"] = Line2D([], [], color=CHANCE, linestyle=":", label=f"chance ({chance[0]:.3g} %)")
    if any_sd:
        handles["__sd"] = Line2D([], [], color=KEPT, marker="|", markersize=8, linestyle="",
                                 label="error bar: ± 1 sd (dots: single runs)")
    for ax in (ax_eff, ax_acc):
        if nines:
            ax.set_xscale("function", functions=(_nines, _nines_inv))
        if rates:
            lo, hi = (_nines(rates[0]), _nines(rates[-1])) if nines else (rates[0], rates[-1])
            pad = 0.06 * (hi - lo if hi > lo else 1.0)
            ax.set_xlim(*(_nines_inv([lo - pad, hi + pad]) if nines else (lo - pad, hi + pad)))
            ax.set_xticks(rates, _thin_labels(rates, nines, panel_width), fontsize=8)
            ax.minorticks_off()
        ax.set_xlabel("pruning rate" + (" (axis: -log10(1 - rate))" if nines else ""), fontsize=9)
        ax.set_ylim(-2, 102)
        ax.set_yticks(range(0, 101, 20))
        ax.grid(True, color=GRID, alpha=0.25, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    ax_eff.set_ylabel("effective weights (% of kept)")
    ax_eff.set_title(f"{dataset + ': ' if dataset else ''}effective weights\n(accessible and coaccessible), % of kept",
                     fontsize=9)
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title(f"test accuracy\n{_caption(rows, dataset)}", fontsize=9)
    if not any(r.accuracy is not None for r in rows):
        ax_acc.text(0.5, 0.5, "no accuracy in the data", ha="center", va="center", transform=ax_acc.transAxes,
                    color=GRID)
    return handles


def _thin_labels(rates: Sequence[float], nines: bool, panel_width: float, fontsize: float = 8.0) -> list[str]:
    """Tick labels, with those that would overlap their kept left neighbour blanked.

    A label is about ``0.6·fontsize`` points per character wide; positions are measured in
    the axis's own (transformed) coordinate over a panel ``panel_width`` inches wide.
    """
    labels = [_fmt_rate(r) for r in rates]
    x = _nines(rates) if nines else np.asarray(rates, dtype=float)
    span = float(x[-1] - x[0]) * 1.12 or 1.0
    per_inch = span / panel_width
    out, last = [], None
    for xi, lab in zip(x, labels):
        half = 0.5 * len(lab) * 0.6 * fontsize / 72.0 * per_inch
        if last is None or xi - half > last[0] + last[1] + 0.08 * per_inch:
            out.append(lab)
            last = (xi, half)
        else:
            out.append("")
    return out
