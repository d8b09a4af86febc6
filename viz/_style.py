"""One palette and a few helpers shared by every figure.

Colours follow the Okabe–Ito palette (readable with the common colour-vision deficiencies)
and mean the same thing in every figure:

===================  =========  ==========================================================
role                 colour     used for
===================  =========  ==========================================================
``KEPT``             near-black kept weights in masks, effective edges / bars, effective units
``PRUNED``           light grey pruned weights in masks; unused units (no kept weight at all)
``DEAD``             vermillion dead because *not accessible* (no input reaches the source),
                                not constant: mask pixels, solid edges, plain bars; dead units
``NOT_COACCESSIBLE`` purple     dead because *not coaccessible* (accessible, the destination
                                reaches no output): mask pixels, dash-dot edges, hatched bars
``CONSTANT``         blue       constant: dead, fed by a bias, destination coaccessible
``STRUCTURAL``       mid grey   architecture edges (identity, flatten) in layered drawings
``NOT_A_WEIGHT``     white      entries between stacked per-head masks (no weight there)
===================  =========  ==========================================================

Vermillion and reddish purple differ in hue *and* lightness under the three common
colour-vision deficiencies (Okabe & Ito); bars and edges add a hatch / line style so the two
kinds of dead weights never rest on colour alone.

``MIN_CELL_PX``: a mask image is never drawn with cells smaller than this many screen pixels
at the saving dpi; a larger mask is pooled into cells of several weights, a cell taking the
most telling state inside it (dead > kept > pruned), so a kept weight stays visible at any
pruning rate.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

__all__ = ["KEPT", "PRUNED", "DEAD", "NOT_COACCESSIBLE", "CONSTANT", "STRUCTURAL", "NOT_A_WEIGHT", "UNUSED",
           "NOT_COACCESSIBLE_HATCH", "MIN_CELL_PX", "SAVE_DPI", "rgb8", "new_figure"]

KEPT = "#1f1f1f"
PRUNED = "#dcdcdc"
DEAD = "#d55e00"
NOT_COACCESSIBLE = "#cc79a7"
NOT_COACCESSIBLE_HATCH = "////"
UNUSED = PRUNED
CONSTANT = "#0072b2"
STRUCTURAL = "#9a9a9a"
NOT_A_WEIGHT = "#ffffff"
GRID = "#7f7f7f"
SAVE_DPI = 150
MIN_CELL_PX = 2


def rgb8(colour: str) -> np.ndarray:
    """``(3,) uint8`` RGB of a matplotlib colour (what a PNG pixel of that colour holds)."""
    return np.round(np.asarray(to_rgb(colour)) * 255).astype(np.uint8)


def new_figure(width: float, height: float, *, layout: str | None = "constrained",
               dpi: float = 100.0) -> Figure:
    """A figure detached from pyplot (no global state), with an Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(width, height), layout=layout, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig
