"""One palette and a few helpers shared by every figure.

Colours follow the Okabe–Ito palette (readable with the common colour-vision deficiencies)
and mean the same thing in every figure:

===================  =========  ==========================================================
role                 colour     used for
===================  =========  ==========================================================
``KEPT``             near-black kept weights in masks, effective edges / bars, live units
``PRUNED``           light grey pruned weights in masks
``DEAD``             vermillion dead (kept, not effective): mask pixels, edges, bars
``NOT_COACCESSIBLE`` orange     dead because the destination reaches no output (bars)
``CONSTANT``         blue       constant: dead, fed by a bias, destination coaccessible
``STRUCTURAL``       mid grey   architecture edges (identity, flatten) in layered drawings
``NOT_A_WEIGHT``     white      entries between stacked per-head masks (no weight there)
===================  =========  ==========================================================
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

__all__ = ["KEPT", "PRUNED", "DEAD", "NOT_COACCESSIBLE", "CONSTANT", "STRUCTURAL", "NOT_A_WEIGHT", "rgb8",
           "new_figure"]

KEPT = "#1f1f1f"
PRUNED = "#dcdcdc"
DEAD = "#d55e00"
NOT_COACCESSIBLE = "#e69f00"
CONSTANT = "#0072b2"
STRUCTURAL = "#9a9a9a"
NOT_A_WEIGHT = "#ffffff"
GRID = "#7f7f7f"


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
