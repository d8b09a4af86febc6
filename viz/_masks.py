"""Mask tensors drawn as binary images, like Fig. 2 of the coarse-to-fine paper.

Contract
--------
* A mask is in PyTorch layout, ``(out, in/groups, *kernel)``, ``True`` = kept.  It is drawn
  *unfolded* to 2-D: ``(out, in/groups · prod(kernel))``, one row per output unit / channel;
  a conv's kernel taps of one input channel sit side by side, so the image is a row of
  ``kh·kw``-wide blocks, one block per input channel (grid lines every ``kh·kw`` columns).
  A 2-D mask made of per-head (per-channel) blocks gets its grid from ``block=(rows, cols)``.
* Colours (``viz._style``): kept → near-black, pruned → light grey, dead because not
  accessible → vermillion, dead because not coaccessible (the source is reached, the
  destination reaches no output) → reddish purple, and with ``show_constant=True`` the
  constant weights (dead, fed by a bias, destination coaccessible) in blue.  *Dead* comes from
  the audit of a graph (:func:`mask_view`), never from the mask alone.
* Visibility: a drawn (non-exact) image never has cells smaller than ``MIN_CELL_PX`` screen
  pixels at the saving dpi.  A mask with more entries than that across is pooled into cells
  of ``f_r × f_c`` entries; a cell shows the most telling state inside it (constant > not
  accessible > not coaccessible > kept > pruned > no weight), so every kept weight is drawn
  at least ``MIN_CELL_PX`` pixels wide at any pruning rate (:func:`pooled_codes`).
* ``crop=(r0, r1, c0, c1)`` selects rows ``r0:r1`` and columns ``c0:c1`` of the unfolded
  image (half-open, like slicing); tick labels keep the tensor's own indices.
* ``exact=True`` renders one pixel per entry (a figure of ``W × H`` pixels at dpi 1, the image
  placed with ``figimage``, no resampling): the saved PNG *is* :func:`mask_rgb`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from netgraph import LayeredGraph, Reachability, reachability

from ._errors import BadPlotInput
from ._style import (CONSTANT, DEAD, GRID, KEPT, MIN_CELL_PX, NOT_A_WEIGHT, NOT_COACCESSIBLE, PRUNED, SAVE_DPI,
                     new_figure, rgb8)

__all__ = [
    "MaskView",
    "mask_view",
    "unfold",
    "block_diagonal",
    "mask_rgb",
    "mask_codes",
    "pooled_codes",
    "select_views",
    "plot_mask",
    "plot_layer_masks",
    "plot_mask_grid",
]

_MAX_GRID_LINES = 128  # more lines than this in one direction wash the image out: skip them


@dataclass(frozen=True, eq=False)
class MaskView:
    """One mask to draw, with what the audit says about its kept weights.

    Attributes
    ----------
    mask : ndarray of bool, shape (out, in/groups, *kernel)
        ``True`` = kept.
    dead, constant : ndarray of bool, same shape, or None
        Kept weights that are dead / constant (``constant ⊆ dead ⊆ mask``); ``None`` when
        the mask was not audited (then nothing is drawn in the warning colour).
    name : str
        The weight's name (``"fc1.weight"``), used in titles.
    block : (int, int) or None
        Grid step ``(rows, cols)`` in the unfolded image; 0 = no lines in that direction.
        ``None``: a conv gets ``(0, prod(kernel))``, a 2-D mask no grid.
    weights : ndarray of bool, same shape, or None
        Entries that are weights at all (``None``: every entry).  Only
        :func:`block_diagonal` sets it: the entries between heads are drawn white and are
        not counted as pruned.
    no_output : ndarray of bool, same shape, or None
        Dead weights whose source is accessible but whose destination is not coaccessible
        (``no_output ⊆ dead``, disjoint from ``constant``); the rest of ``dead`` is dead
        because no input reaches the source.
    """

    mask: np.ndarray
    dead: np.ndarray | None = None
    constant: np.ndarray | None = None
    name: str = ""
    block: tuple[int, int] | None = None
    weights: np.ndarray | None = None
    no_output: np.ndarray | None = None

    def __post_init__(self) -> None:
        m = _binary(self.mask, self.name or "mask")
        object.__setattr__(self, "mask", m)
        for attr in ("dead", "constant", "weights", "no_output"):
            a = getattr(self, attr)
            if a is None:
                continue
            a = np.asarray(a, dtype=bool)
            if a.shape != m.shape:
                raise BadPlotInput(f"{attr} set of {self.name or 'mask'!r} has shape {a.shape} but the mask "
                                   f"has shape {m.shape}; they must be equal")
            if attr == "weights":
                if (m & ~a).any():
                    raise BadPlotInput(f"mask of {self.name or 'mask'!r} keeps {int((m & ~a).sum())} entries "
                                       "outside its weights")
            elif (a & ~m).any():
                raise BadPlotInput(f"{attr} set of {self.name or 'mask'!r} marks {int((a & ~m).sum())} pruned "
                                   "weights; dead and constant weights must be kept ones")
            object.__setattr__(self, attr, a)
        if self.block is not None:
            blk = tuple(int(b) for b in self.block)
            if len(blk) != 2 or min(blk) < 0:
                raise BadPlotInput(f"block must be two non-negative steps (rows, cols), got {self.block!r}")
            object.__setattr__(self, "block", blk)

    @property
    def total(self) -> int:
        """Number of weights drawn (entries that are weights)."""
        return int(self.weights.sum()) if self.weights is not None else int(self.mask.size)

    @property
    def grid(self) -> tuple[int, int]:
        """The grid step actually used: ``block``, or the default for the mask's layout."""
        if self.block is not None:
            return self.block
        if self.mask.ndim > 2:
            return (0, int(np.prod(self.mask.shape[2:])))
        return (0, 0)


def _binary(mask: Any, what: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim < 2:
        raise BadPlotInput(f"{what} has shape {m.shape}; a mask is (out, in) or (out, in/groups, *kernel)")
    if m.size == 0:
        raise BadPlotInput(f"{what} has shape {m.shape}: it is empty")
    if m.dtype != bool:
        ok = np.isin(m, (0, 1))
        if not ok.all():
            raise BadPlotInput(f"{what} has entries {m[~ok].ravel()[:3].tolist()}; masks must be binary (0/1)")
        m = m.astype(bool)
    return m


def mask_view(mask: Any, graph: LayeredGraph | None = None, name: str | None = None, *,
              reach: Reachability | None = None, block: tuple[int, int] | None = None) -> MaskView:
    """A :class:`MaskView` whose dead / constant weights come from the audit of ``graph``.

    Parameters
    ----------
    mask : array of 0/1 or bool, shape (out, in/groups, *kernel)
        The weight's mask, PyTorch layout.
    graph : LayeredGraph, optional
        The network the weight belongs to; without it nothing is marked dead.
    name : str
        The weight's block name in ``graph`` (``"fc1.weight"``).
    reach : Reachability, optional
        ``reachability(graph)``, when already computed.

    Examples
    --------
    >>> import numpy as np
    >>> from netgraph import chain
    >>> masks = [np.array([[1, 1], [0, 0]]), np.array([[1, 1]])]
    >>> v = mask_view(masks[1], chain(masks), "layer1")
    >>> v.dead.astype(int).tolist()      # unit 1 of layer0 has no input: its edge is dead
    [[0, 1]]
    """
    m = _binary(mask, repr(name) if name else "mask")
    if graph is None:
        return MaskView(m, name=name or "", block=block)
    try:
        blk = graph.block(name)
    except KeyError:
        known = ", ".join(b.name for b in graph.weighted_blocks)
        raise BadPlotInput(f"no weight named {name!r} in the graph; known weights: {known}") from None
    if not blk.weighted:
        raise BadPlotInput(f"block {name!r} is structural ({blk.kind}); only prunable weights have masks")
    if tuple(m.shape) != tuple(blk.weight_shape):
        raise BadPlotInput(f"mask of {name!r} has shape {tuple(m.shape)} but the graph's weight has shape "
                           f"{tuple(blk.weight_shape)}; they must be equal")
    r = reach if reach is not None else reachability(graph)
    ws = r.weight_states(blk, m)  # netgraph's one definition of a block's dead / constant weights
    return MaskView(m, ws.dead, ws.constant, name, block, no_output=ws.accessible & ~ws.coaccessible)


def unfold(mask: np.ndarray) -> np.ndarray:
    """``(out, in/groups, *kernel) -> (out, in/groups · prod(kernel))``; 2-D masks unchanged."""
    a = np.asarray(mask)
    return a.reshape(a.shape[0], -1)


def block_diagonal(views: Sequence[MaskView | np.ndarray], *, name: str | None = None) -> MaskView:
    """Per-head (per-channel) masks placed on the diagonal of one image, as in Fig. 2.

    A multi-head layer stored as one weight per head (``heads.k.weight``, each ``(out_k, in_k)``,
    unfolded if conv) is drawn the way the paper draws its attention layer: head ``k``'s mask
    is the ``k``-th diagonal block, off-diagonal entries are not weights (drawn as pruned),
    and the grid marks the blocks when all heads have one shape.  Dead / constant sets follow.
    Off-diagonal entries are not weights: drawn white (``NOT_A_WEIGHT``), never counted.

    >>> v = block_diagonal([np.ones((2, 3)), np.zeros((2, 3))])
    >>> v.mask.astype(int).tolist(), v.block
    ([[1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], (2, 3))
    """
    vs = [_as_view(v) for v in views]
    if not vs:
        raise BadPlotInput("block_diagonal needs at least one mask")
    shapes = [unfold(v.mask).shape for v in vs]
    rows, cols = sum(h for h, _ in shapes), sum(w for _, w in shapes)
    audited = all(v.dead is not None for v in vs)
    out = {k: np.zeros((rows, cols), bool) for k in ("mask", "dead", "constant", "weights", "no_output")}
    r = c = 0
    for v, (h, w) in zip(vs, shapes):
        out["mask"][r:r + h, c:c + w] = unfold(v.mask)
        out["weights"][r:r + h, c:c + w] = True if v.weights is None else unfold(v.weights)
        if audited:
            out["dead"][r:r + h, c:c + w] = unfold(v.dead)
            if v.constant is not None:
                out["constant"][r:r + h, c:c + w] = unfold(v.constant)
            if v.no_output is not None:
                out["no_output"][r:r + h, c:c + w] = unfold(v.no_output)
        r, c = r + h, c + w
    block = shapes[0] if len(set(shapes)) == 1 else (0, 0)
    label = name if name is not None else (" + ".join(v.name for v in vs if v.name) if len(vs) <= 3 else
                                           f"{vs[0].name} ... {vs[-1].name} ({len(vs)} blocks)")
    return MaskView(out["mask"], out["dead"] if audited else None, out["constant"] if audited else None,
                    label, tuple(int(b) for b in block), out["weights"], out["no_output"] if audited else None)


def select_views(views: Mapping[str, MaskView], layer: str | Sequence[str], where: str) -> MaskView:
    """One weight by name, or several (a list, ``"a,b"`` or a glob like ``"heads.*.weight"``)
    stacked with :func:`block_diagonal` in the mapping's (forward) order."""
    import fnmatch

    if isinstance(layer, str) and layer in views:
        return views[layer]
    patterns = [p for p in (layer.split(",") if isinstance(layer, str) else list(layer)) if p]
    names = [n for n in views if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not names:
        raise BadPlotInput(f"{where} has no prunable weight named {layer!r}; known: {', '.join(views)}")
    return views[names[0]] if len(names) == 1 else block_diagonal([views[n] for n in names])


def _as_view(x: Any, name: str = "") -> MaskView:
    return x if isinstance(x, MaskView) else MaskView(_binary(x, repr(name) if name else "mask"), name=name)


def _check_crop(crop: Sequence[int] | None, shape: tuple[int, int], name: str) -> tuple[int, int, int, int]:
    h, w = shape
    if crop is None:
        return 0, h, 0, w
    try:
        r0, r1, c0, c1 = (int(v) for v in crop)
    except (TypeError, ValueError):
        raise BadPlotInput(f"crop must be four integers (r0, r1, c0, c1), got {crop!r}") from None
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise BadPlotInput(
            f"crop {(r0, r1, c0, c1)} does not fit the unfolded mask of {name or 'the mask'} ({h} x {w}); "
            f"need 0 <= r0 < r1 <= {h} and 0 <= c0 < c1 <= {w}"
        )
    return r0, r1, c0, c1


# Pixel codes, in increasing order of how much a reader must see them (pooling keeps the max).
NO_WEIGHT, PRUNED_CODE, KEPT_CODE, NOT_COACC_CODE, DEAD_CODE, CONSTANT_CODE = range(6)
_CODE_COLOURS = (NOT_A_WEIGHT, PRUNED, KEPT, NOT_COACCESSIBLE, DEAD, CONSTANT)


def mask_codes(view: MaskView | np.ndarray, *, crop: Sequence[int] | None = None,
               show_constant: bool = False) -> np.ndarray:
    """``(rows, cols) uint8`` state of every entry of the (cropped) unfolded mask.

    0 no weight, 1 pruned, 2 kept (effective, or not audited), 3 dead: not coaccessible,
    4 dead: not accessible, 5 constant (only with ``show_constant``; else constant weights,
    being dead and not accessible, are 4).
    """
    v = _as_view(view)
    m = unfold(v.mask)
    r0, r1, c0, c1 = _check_crop(crop, m.shape, repr(v.name) if v.name else "")
    codes = np.where(m, KEPT_CODE, PRUNED_CODE).astype(np.uint8)
    if v.weights is not None:
        codes[~unfold(v.weights)] = NO_WEIGHT
    if v.dead is not None:
        codes[unfold(v.dead)] = DEAD_CODE
        if v.no_output is not None:
            codes[unfold(v.no_output)] = NOT_COACC_CODE
    if show_constant and v.constant is not None:
        codes[unfold(v.constant)] = CONSTANT_CODE
    return codes[r0:r1, c0:c1]


def pooled_codes(codes: np.ndarray, max_cells: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Pool a code image into at most ``max_cells = (rows, cols)`` cells, keeping each cell's
    maximum code; returns ``(pooled, (f_r, f_c))``.  The image is padded with ``NO_WEIGHT``
    to a multiple of the factors; ``f = (1, 1)`` returns the image unchanged."""
    h, w = codes.shape
    fr, fc = max(1, -(-h // max(1, max_cells[0]))), max(1, -(-w // max(1, max_cells[1])))
    if fr == fc == 1:
        return codes, (1, 1)
    H, W = -(-h // fr) * fr, -(-w // fc) * fc
    padded = np.zeros((H, W), np.uint8)
    padded[:h, :w] = codes
    return padded.reshape(H // fr, fr, W // fc, fc).max(axis=(1, 3)), (fr, fc)


def codes_rgb(codes: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` colours of a code image."""
    palette = np.stack([rgb8(c) for c in _CODE_COLOURS])
    return palette[codes]


def mask_rgb(view: MaskView | np.ndarray, *, crop: Sequence[int] | None = None,
             show_constant: bool = False) -> np.ndarray:
    """The exact image: ``(rows, cols, 3) uint8`` RGB of the (cropped) unfolded mask.

    Kept → ``KEPT``, pruned → ``PRUNED``, dead because not accessible → ``DEAD``, dead
    because not coaccessible → ``NOT_COACCESSIBLE``; constant → ``CONSTANT`` when
    ``show_constant`` (else constant weights are ``DEAD``); entries that are no weight
    (between the heads of :func:`block_diagonal`) → ``NOT_A_WEIGHT``.
    """
    return codes_rgb(mask_codes(view, crop=crop, show_constant=show_constant))


def _counts(v: MaskView) -> str:
    kept, total = int(v.mask.sum()), v.total
    text = f"kept {kept:,}/{total:,} ({100.0 * (1 - kept / total):.1f}% pruned)"
    if v.dead is not None:
        dead = int(v.dead.sum())
        text += f", dead {dead:,}" + (f" ({100.0 * dead / kept:.1f}% of kept)" if kept else "")
    return text


def _max_cells(width_in: float, height_in: float) -> tuple[int, int]:
    """How many cells fit a panel of this size with cells of at least ``MIN_CELL_PX`` pixels."""
    return (max(1, int(height_in * SAVE_DPI / MIN_CELL_PX)), max(1, int(width_in * SAVE_DPI / MIN_CELL_PX)))


def _draw(ax, v: MaskView, crop, show_constant: bool, *, ticks: bool = True,
          panel: tuple[float, float] = (6.0, 4.0)) -> tuple[int, int]:
    """imshow of the cropped mask with tensor indices on the axes and the block grid.

    ``panel`` is the panel's (width, height) in inches: the image is pooled so that no cell
    is smaller than ``MIN_CELL_PX`` pixels at ``SAVE_DPI``.  Returns the pooling factors.
    """
    codes = mask_codes(v, crop=crop, show_constant=show_constant)
    h, w = unfold(v.mask).shape
    r0, r1, c0, c1 = _check_crop(crop, (h, w), repr(v.name))
    ratio = (r1 - r0) / (c1 - c0)
    # Square pixels unless the crop is a thin strip that would vanish; pixel shape carries no data.
    aspect = "equal" if 1 / 8 <= ratio <= 8 else "auto"
    pooled, (fr, fc) = pooled_codes(codes, _max_cells(*panel))
    ph, pw = pooled.shape
    ax.imshow(codes_rgb(pooled), extent=(c0 - 0.5, c0 - 0.5 + pw * fc, r0 - 0.5 + ph * fr, r0 - 0.5),
              aspect=aspect, interpolation="nearest", gid="mask")
    ax.set_xlim(c0 - 0.5, c1 - 0.5)
    ax.set_ylim(r1 - 0.5, r0 - 0.5)
    step_r, step_c = v.grid
    for step, lo, hi, line in ((step_r, r0, r1, ax.axhline), (step_c, c0, c1, ax.axvline)):
        if step and (hi - lo) / step <= _MAX_GRID_LINES:
            first = (lo // step + 1) * step
            for k in range(first, hi, step):
                line(k - 0.5, color=GRID, linewidth=0.6, alpha=0.8)
    if not ticks:
        ax.set_xticks([])
        ax.set_yticks([])
    else:  # tensor indices are integers
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if v.block is None and v.mask.ndim > 2:  # conv: label the channel blocks, not the columns
            taps = step_c
            first, last = -(-c0 // taps), (c1 - 1) // taps
            chans = np.arange(first, last + 1)
            chans = chans[:: max(1, -(-len(chans) // 16))]
            ax.set_xticks(chans * taps + (taps - 1) / 2, [str(k) for k in chans])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fr, fc


def _legend_handles(views: Sequence[MaskView], show_constant: bool) -> list[Patch]:
    audited = any(v.dead is not None for v in views)
    handles = [Patch(facecolor=KEPT, label="kept" + (", effective" if audited else "")
                     + f" (>= {MIN_CELL_PX} px each)"),
               Patch(facecolor=PRUNED, edgecolor=GRID, linewidth=0.5, label="pruned")]
    if any(v.weights is not None and not v.weights.all() for v in views):
        handles.append(Patch(facecolor=NOT_A_WEIGHT, edgecolor=GRID, linewidth=0.5, label="no weight (between heads)"))
    if audited:
        handles.append(Patch(facecolor=DEAD, label="dead: not accessible" + (" (not constant)" if show_constant
                                                                               else "")))
        handles.append(Patch(facecolor=NOT_COACCESSIBLE, label="dead: not coaccessible"))
        if show_constant:
            handles.append(Patch(facecolor=CONSTANT, label="constant (dead, fed by a bias)"))
    return handles


def _axis_labels(ax, v: MaskView) -> None:
    if v.mask.ndim > 2:
        k = "x".join(str(s) for s in v.mask.shape[2:])
        ax.set_xlabel(f"input channel (a block of {k} kernel taps each)")
        ax.set_ylabel("output channel")
    else:
        ax.set_xlabel("input unit")
        ax.set_ylabel("output unit")


def _crop_note(crop, v: MaskView) -> str:
    if crop is None:
        return ""
    r0, r1, c0, c1 = _check_crop(crop, unfold(v.mask).shape, repr(v.name))
    return f"\ncrop: rows {r0}-{r1 - 1}, columns {c0}-{c1 - 1}"


def plot_mask(mask: MaskView | np.ndarray, *, crop: Sequence[int] | None = None, title: str | None = None,
              exact: bool = False, show_constant: bool = False):
    """Draw one mask as a binary image; returns a :class:`matplotlib.figure.Figure`.

    Parameters
    ----------
    mask : MaskView or array, shape (out, in/groups, *kernel)
        A bare array is drawn kept / pruned only; a :class:`MaskView` from :func:`mask_view`
        also shows its dead weights in the warning colour.
    crop : (r0, r1, c0, c1), optional
        Rows ``r0:r1`` and columns ``c0:c1`` of the unfolded image.
    exact : bool
        One pixel per entry, no axes or text: the figure is ``cols x rows`` pixels at dpi 1
        and its canvas equals :func:`mask_rgb` (what the tests compare with the mask).
    show_constant : bool
        Draw constant weights (a subset of dead) in their own colour.

    Raises
    ------
    BadPlotInput
        Non-binary or empty mask, crop outside the unfolded mask.

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_mask(np.eye(4), exact=True)
    >>> fig.canvas.draw(); np.asarray(fig.canvas.buffer_rgba()).shape
    (4, 4, 4)
    """
    v = _as_view(mask)
    if exact:
        img = mask_rgb(v, crop=crop, show_constant=show_constant)
        h, w = img.shape[:2]
        # dpi 1: the figure size in inches is the pixel count exactly (w/100 at dpi 100 can
        # round to w-1 pixels); figimage places the array without resampling.
        fig = new_figure(w, h, layout=None, dpi=1)
        fig.figimage(img, xo=0, yo=0, origin="upper", resize=False)
        return fig
    h, w = unfold(v.mask).shape
    r0, r1, c0, c1 = _check_crop(crop, (h, w), repr(v.name))
    ch, cw = r1 - r0, c1 - c0
    width = float(np.clip(cw / 45.0, 6.0, 10.0))
    # image height for square pixels in the axes width, plus room for title, labels, legend
    handles = _legend_handles([v], show_constant)
    ncols = min(len(handles), 3 if width >= 9 else 2)
    extra = 0.22 * (-(-len(handles) // ncols)) + (0.2 if crop is not None else 0.0)  # legend rows, crop line
    height = float(np.clip((width - 1.2) * ch / cw, 1.0, 9.0)) + 1.5 + extra
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    f = _draw(ax, v, crop, show_constant, panel=(width - 1.2, height - 1.5 - extra))
    _axis_labels(ax, v)
    head = title if title is not None else (v.name or "mask")
    ax.set_title(f"{head}\n{_counts(v)}{_crop_note(crop, v)}{_pool_note([f])}", fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=9, frameon=False)
    return fig


def plot_layer_masks(masks: Mapping[str, MaskView | np.ndarray] | Sequence[MaskView], *,
                     show_constant: bool = False, title: str | None = None):
    """Every prunable layer's mask, one panel per layer (forward order), in one figure.

    ``masks`` maps weight names to masks / views, or is a sequence of named views.
    """
    views = [_as_view(m, name) for name, m in masks.items()] if isinstance(masks, Mapping) \
        else [_as_view(m) for m in masks]
    if not views:
        raise BadPlotInput("no masks to draw; the checkpoint has no prunable weight")
    shapes = [unfold(v.mask).shape for v in views]
    ratios = [float(np.clip(h / w * 3.0, 0.6, 3.5)) for h, w in shapes]
    fig = new_figure(8.0, sum(ratios) + 0.9 * len(views) + 0.8)
    axes = fig.subplots(len(views), 1, squeeze=False, height_ratios=ratios)[:, 0]
    factors = []
    for ax, v, ratio in zip(axes, views, ratios):
        factors.append(_draw(ax, v, None, show_constant, panel=(7.0, ratio)))
        ax.set_aspect("auto")
        ax.set_title(f"{v.name or 'mask'} {tuple(v.mask.shape)}: {_counts(v)}", fontsize=9, loc="left")
        ax.set_ylabel("output", fontsize=8)
        ax.tick_params(labelsize=7)
    conv = any(v.mask.ndim > 2 for v in views)
    axes[-1].set_xlabel("input" + (" (conv: channel x kernel tap)" if conv else ""), fontsize=8)
    note = _pool_note(factors).strip()
    if title or note:
        fig.suptitle("\n".join(t for t in (title, note) if t), fontsize=10)
    handles = _legend_handles(views, show_constant)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 2), fontsize=9, frameon=False)
    return fig


def _pool_note(factors: Sequence[tuple[int, int]]) -> str:
    """The caption line that says a drawn cell holds several weights (or nothing)."""
    big = [f for f in factors if f != (1, 1)]
    if not big:
        return ""
    fr = max(f[0] for f in big)
    fc = max(f[1] for f in big)
    return f"\n1 cell = {fr}x{fc} weights (dead if any is, else kept if any is)"


def _fmt_rate(rate: float) -> str:
    return f"{100.0 * rate:g}%" if rate <= 1.0 else f"{rate:g}%"


def _resolve(value: Any, where: str) -> MaskView:
    """A grid cell's value as a view: an array or a view (checkpoints: :func:`viz.grid_views`)."""
    if isinstance(value, MaskView):
        return value
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__") or hasattr(value, "prunable"):
        raise BadPlotInput(f"{where} is a checkpoint; drawing functions take masks: read it with "
                           "viz.grid_views(cells, layer) first")
    return MaskView(_binary(value, where))


def plot_mask_grid(cells: Mapping[tuple[str, float | None], Any], *, methods: Sequence[str] | None = None,
                   rates: Sequence[float] | None = None,
                   crop: Sequence[int] | None = None, show_constant: bool = False, title: str | None = None):
    """The Fig. 2 grid: rows = methods, columns = pruning rates, one mask image per cell.

    Parameters
    ----------
    cells : mapping ``{(method, rate): mask}``
        Each value is an array (PyTorch layout) or a :class:`MaskView` (checkpoints are read
        into audited views by :func:`viz.grid_views`).  ``rate`` is a fraction (0.9 = 90 %
        pruned); ``rate=None`` means rate-independent (the unpruned *original*) and is drawn
        in every column, as in the paper.
    methods, rates : sequence, optional
        Row / column order; default: methods in order of first appearance, rates ascending.
    crop : (r0, r1, c0, c1), optional
        The same window of every mask (the paper shows a crop).

    Returns
    -------
    Figure
        Empty cells (no mask for that method and rate) are left blank.  Under each cell:
        kept share and dead count of the whole weight (not only of the crop).
    """
    if not cells:
        raise BadPlotInput("plot_mask_grid needs at least one (method, rate) cell")
    for key in cells:
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)):
            raise BadPlotInput(f"grid keys must be (method, rate) pairs, got {key!r}")
    views = {k: _resolve(v, f"cell {k!r}") for k, v in cells.items()}
    row_names = list(methods) if methods is not None else list(dict.fromkeys(m for m, _ in views))
    col_rates = list(rates) if rates is not None else sorted({r for _, r in views if r is not None})
    if not col_rates:
        col_rates = [None]
    shapes = {tuple(unfold(v.mask).shape) for v in views.values()}
    if crop is not None:
        for k, v in views.items():
            _check_crop(crop, unfold(v.mask).shape, f"{v.name or 'mask'} in cell {k!r}")
    h, w = next(iter(shapes))
    if crop is not None:
        h, w = crop[1] - crop[0], crop[3] - crop[2]
    cell_w = 2.4
    cell_h = float(np.clip(cell_w * h / w, 0.6, 4.0)) + 0.35
    fig_w = max(cell_w * len(col_rates) + 1.0, 6.5)  # room for the title and legend even with one column
    fig = new_figure(fig_w, cell_h * len(row_names) + 1.5)
    axes = fig.subplots(len(row_names), len(col_rates), squeeze=False)
    factors = []
    for i, method in enumerate(row_names):
        for j, rate in enumerate(col_rates):
            ax = axes[i, j]
            v = views.get((method, rate), views.get((method, None)))
            if v is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no mask", ha="center", va="center", color=GRID, fontsize=8,
                        transform=ax.transAxes)
                continue
            factors.append(_draw(ax, v, crop, show_constant, ticks=False, panel=(cell_w - 0.2, cell_h - 0.35)))
            kept = int(v.mask.sum())
            note = f"kept {100.0 * kept / max(v.total, 1):.1f}%"
            if v.dead is not None:
                note += f", dead {int(v.dead.sum()):,}"
            ax.set_xlabel(note, fontsize=7)
            if j == 0:
                ax.set_ylabel(method, fontsize=10, fontweight="bold")
            if i == 0 and rate is not None:
                ax.set_title(f"rate {_fmt_rate(rate)}", fontsize=10)
    some = next(iter(views.values()))
    head = title if title is not None else f"mask of {some.name or 'the layer'}"
    fig.suptitle(head + (f"\ncrop: rows {crop[0]}-{crop[1] - 1}, columns {crop[2]}-{crop[3] - 1}" if crop else "")
                 + _pool_note(factors), fontsize=10, wrap=True)
    handles = _legend_handles(list(views.values()), show_constant)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles) if fig_w >= 9 else 2, fontsize=8,
               frameon=False)
    return fig
