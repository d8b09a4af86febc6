"""The one place viz reads a checkpoint: netgraph's safe loader and its graph inference.

Everything else in viz takes data (arrays, graphs, reports); only the grid of
:func:`~viz.plot_mask_grid` (cells given as checkpoints) and the CLI come through here.
"""

from __future__ import annotations

import os
from typing import Any

from netgraph import LayeredGraph, Reachability, reachability

from ._masks import MaskView, mask_view

__all__ = ["read_checkpoint", "checkpoint_views"]


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
