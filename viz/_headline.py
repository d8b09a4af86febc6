"""The headline figure: the sweep (mean ± sd) next to which inputs still reach an output.

Contract
--------
* :func:`plot_input_states` draws, per model, its input units reshaped to the input's shape
  (``(8, 8)`` for digits): dark = the input reaches an output (accessible and coaccessible),
  vermillion = a *dead* input (it has kept weights but reaches no output), light grey =
  *unused* (no kept weight leaves it).  The states are :func:`viz.input_states`, i.e. a
  pixel is dark exactly when its row of ``S_a`` (inputs × outputs,
  :func:`netgraph.products`) has a non-zero entry.  Each image is an ``AxesImage`` with
  ``gid="inputs:<label>"`` whose array is the state codes (0 / 1 / 2) in the input's shape.
* :func:`plot_headline` puts the two ablation panels of :func:`viz.ablation_panels` (% effective
  and accuracy vs rate, mean ± sd, dense and chance lines) on the left and the input images
  on the right.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from ._ablation import AblationRow, _as_rows, ablation_panels
from ._errors import BadPlotInput
from ._states import DEAD_UNIT, EFFECTIVE, UNUSED
from ._style import DEAD, GRID, KEPT, PRUNED, new_figure

__all__ = ["plot_input_states", "plot_headline"]

_CMAP = ListedColormap([PRUNED, DEAD, KEPT])


def _check(states: Any, shape: Sequence[int], label: str) -> np.ndarray:
    a = np.asarray(states)
    if a.ndim != 1 or a.size != int(np.prod(shape)):
        raise BadPlotInput(f"input states of {label!r} have shape {a.shape}; expected {int(np.prod(shape))} "
                           f"values for input shape {tuple(shape)}")
    if not np.isin(a, (UNUSED, DEAD_UNIT, EFFECTIVE)).all():
        raise BadPlotInput(f"input states of {label!r} must be 0 (unused), 1 (dead) or 2 (reaches an output)")
    shape = tuple(shape)
    return a.astype(np.int8).reshape(shape if len(shape) == 2 else (1, a.size) if len(shape) == 1 else (-1, shape[-1]))


def _input_panel(ax, img: np.ndarray, label: str, *, fontsize: float = 9) -> None:
    ax.imshow(img, cmap=_CMAP, vmin=0, vmax=2, interpolation="nearest", gid=f"inputs:{label}")
    h, w = img.shape
    ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    n = img.size
    reach, dead, unused = (int((img == k).sum()) for k in (EFFECTIVE, DEAD_UNIT, UNUSED))
    ax.set_title(f"{label}\n{reach} of {n} reach an output\n{dead} dead, {unused} unused", fontsize=fontsize)


def _legend() -> list[Patch]:
    return [Patch(color=KEPT, label="input reaches an output"),
            Patch(color=DEAD, label="dead input (kept weights, reaches no output)"),
            Patch(facecolor=PRUNED, edgecolor=GRID, linewidth=0.5, label="unused input (no kept weight)")]


def plot_input_states(panels: Mapping[str, Any], shape: Sequence[int], *, title: str | None = None):
    """One image per model of which inputs reach an output; see the module contract."""
    if not panels:
        raise BadPlotInput("plot_input_states needs at least one model")
    imgs = {label: _check(v, shape, label) for label, v in panels.items()}
    fig = new_figure(max(2.3 * len(imgs) + 0.6, 5.5), 3.6)
    axes = fig.subplots(1, len(imgs), squeeze=False)[0]
    for ax, (label, img) in zip(axes, imgs.items()):
        _input_panel(ax, img, label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.legend(handles=_legend(), loc="outside lower center", ncols=1, fontsize=8, frameon=False)
    return fig


def plot_headline(rows: Iterable[AblationRow | Mapping[str, Any]], inputs: Mapping[str, Any], *,
                  shape: Sequence[int], inputs_title: str = "", methods: Sequence[str] | None = None,
                  title: str | None = None):
    """% effective and accuracy vs rate (mean ± sd, dense and chance lines) and, for each
    model of ``inputs``, which of its inputs still reach an output.

    Parameters
    ----------
    rows : the sweep's per-run rows (the JSON shape of :mod:`viz._ablation`), one dataset
    inputs : ``{label: (n_inputs,) states}`` from :func:`viz.input_states`
    shape : the input's shape, e.g. ``(8, 8)``
    inputs_title : what the images show (which checkpoints), written above them
    """
    rows = _as_rows(rows)
    if not rows:
        raise BadPlotInput("no sweep rows to plot")
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    if len(datasets) != 1:
        raise BadPlotInput(f"the headline draws one dataset, got {', '.join(map(repr, datasets))}")
    imgs = {label: _check(v, shape, label) for label, v in inputs.items()}
    order = list(methods) if methods is not None else list(dict.fromkeys(r.method for r in rows))
    fig = new_figure(14.0, 5.6)
    left, right = fig.subfigures(1, 2, width_ratios=[3.0, 1.0 + 0.35 * max(0, len(imgs) - 2)], wspace=0.02)
    ax_eff, ax_acc = left.subplots(1, 2)
    handles = ablation_panels(ax_eff, ax_acc, rows, order, dataset=datasets[0], panel_width=4.2)
    legend = [handles[k] for k in list(order) + ["__dense", "__chance", "__sd"] if k in handles]
    left.legend(handles=legend, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    if imgs:
        axes = right.subplots(1, len(imgs), squeeze=False)[0]
        for ax, (label, img) in zip(axes, imgs.items()):
            _input_panel(ax, img, label, fontsize=8.5)
        if inputs_title:
            right.suptitle(inputs_title, fontsize=9)
        right.legend(handles=_legend(), loc="outside lower center", ncols=1, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
