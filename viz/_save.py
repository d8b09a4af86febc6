"""Writing a figure to disk: format from the extension, atomically."""

from __future__ import annotations

import os

from netgraph import atomic_write

from ._errors import BadPlotInput

__all__ = ["FORMATS", "figure_format", "save_figure"]

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def figure_format(path: str | os.PathLike) -> str:
    """``"png"``, ``"svg"`` or ``"pdf"`` from the file name; anything else is refused."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise BadPlotInput(f"{os.fspath(path)}: unknown image extension {ext or '(none)'!r}; "
                           f"use one of {', '.join(FORMATS)}")
    return FORMATS[ext]


def save_figure(fig, path: str | os.PathLike, *, dpi: float | None = None) -> str:
    """Save ``fig`` to ``path`` (PNG / SVG / PDF from the extension) atomically; returns the path.

    The figure is written to a temporary file in the destination folder, flushed and
    fsynced, then renamed over ``path``: a reader never sees a half-written image, and a
    failure leaves no partial file.  ``dpi`` defaults to the figure's own (150 for raster
    output of ordinary figures; one-pixel-per-entry figures keep dpi 1).
    """
    p = os.fspath(path)
    fmt = figure_format(p)
    folder = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(folder):
        raise BadPlotInput(f"{p}: folder {folder} does not exist")
    if dpi is None:
        dpi = fig.dpi if fig.dpi < 100 else 150
    # netgraph's atomic write: temp file in the same folder, fsync, os.replace.
    atomic_write(p, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))
    return p
