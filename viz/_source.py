"""The one place viz reads files: checkpoints (netgraph's safe loader and its graph
inference) and ablation JSON.

Every drawing function takes data (arrays, views, graphs, reports, rows), never a path;
this module turns files into that data.  It imports the drawing modules' data types, and
no drawing module imports it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from netgraph import LayeredGraph, Reachability, reachability

from ._ablation import AblationRow, ablation_rows
from ._errors import BadPlotInput
from ._masks import MaskView, mask_view, select_views

__all__ = ["read_checkpoint", "checkpoint_views", "grid_views", "load_ablation", "read_ablation"]


def read_checkpoint(ckpt: Any) -> tuple[LayeredGraph, dict[str, Any], str]:
    """``(graph, {weight name: bool mask (PyTorch layout)}, source)`` of a checkpoint.

    ``ckpt`` is a path or an already loaded ``netgraph`` checkpoint object.  Raises what
    the loader raises (``BadCheckpoint``, ``ChainNotInferable``): all ``NetgraphError``.
    """
    # The safe loader and the chain inference are netgraph's; this is the one place viz names them.
    from netgraph import graph_from_checkpoint, load_checkpoint

    if isinstance(ckpt, (str, os.PathLike)):
        ckpt = load_checkpoint(os.fspath(ckpt))
    graph = graph_from_checkpoint(ckpt)
    masks = {name: w.mask for name, w in ckpt.prunable().items()}
    return graph, masks, str(getattr(ckpt, "path", "<checkpoint>"))


def checkpoint_views(ckpt: Any, reach: Reachability | None = None) -> dict[str, MaskView]:
    """Every prunable weight of a checkpoint as an audited :class:`MaskView`, in forward order."""
    graph, masks, _ = read_checkpoint(ckpt)
    r = reach if reach is not None else reachability(graph)
    order = [b.name for b in graph.weighted_blocks if b.name in masks]
    return {name: mask_view(masks[name], graph, name, reach=r) for name in order}


def grid_views(cells: Mapping[tuple[str, float | None], Any], layer: str | Sequence[str] | None = None
               ) -> dict[tuple[str, float | None], MaskView]:
    """The cells of :func:`viz.plot_mask_grid` with checkpoints (paths or objects) read and audited.

    ``layer`` names the weight to take from each checkpoint; several names, ``"a,b"`` or a
    glob (``"heads.*.weight"``) stack per-head weights block-diagonally.  Arrays and views
    pass through unchanged.
    """
    out = {}
    for key, value in cells.items():
        if isinstance(value, (str, os.PathLike)) or hasattr(value, "prunable"):
            views = checkpoint_views(value)
            where = f"cell {key!r}"
            if layer is None:
                if len(views) != 1:
                    raise BadPlotInput(f"{where}: the checkpoint has {len(views)} prunable weights "
                                       f"({', '.join(views)}); name one with layer=")
                out[key] = next(iter(views.values()))
            else:
                out[key] = select_views(views, layer, where)
        else:
            out[key] = value
    return out


def read_ablation(path: str | os.PathLike) -> Any:
    """The parsed JSON of an ablation file (one-line :class:`BadPlotInput` when unreadable)."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise BadPlotInput(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadPlotInput(f"{p}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BadPlotInput(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # json's parser recurses once per nesting level
        raise BadPlotInput(f"{p}: JSON nested too deeply to be an ablation file") from None


def load_ablation(path: str | os.PathLike) -> list[AblationRow]:
    """Read and validate an ablation JSON file (shape in :mod:`viz._ablation`)."""
    return ablation_rows(read_ablation(path), source=os.fspath(path))
