"""Repair of masks on a graph: function-preserving ``prune`` and budget-preserving ``reconnect``.

Contract
--------
Both work on masks in PyTorch layout keyed by weight name and return *new* masks.

* :func:`prune_masks` clears every dead weight.  Constant weights (dead, fed by a bias /
  BN shift, destination coaccessible) are kept unless ``keep_constant=False``: removing them
  changes the outputs by an input-independent amount that only a bias fold can restore.
  With the constants kept the network computes exactly the same function.
* :func:`reconnect_masks` clears every dead weight (constants included), then gives the
  freed budget to the highest-``|score|`` unkept weights whose source unit is accessible
  and destination unit coaccessible.  Each is effective the moment it is added, and
  adding a connection never makes another one dead, so the result keeps the same number
  of weights, all effective (fewer only when there are not enough candidates).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ._graph import LayeredGraph, conv_group_index, pair_selector
from ._reach import Reachability, reachability

__all__ = ["prune_masks", "reconnect_masks", "RepairResult", "rebuild_with_masks"]


@dataclass(frozen=True)
class RepairResult:
    masks: dict[str, np.ndarray]
    removed: int
    added: int
    kept_before: int
    kept_after: int


def rebuild_with_masks(graph: LayeredGraph, masks: Mapping[str, np.ndarray]) -> LayeredGraph:
    """The same topology with new masks for (some of) its weighted blocks."""
    from ._spec import graph_from_spec, graph_to_spec

    spec = graph_to_spec(graph)
    full = {}
    for b in graph.weighted_blocks:
        full[b.name] = masks[b.name] if b.name in masks else _mask_of(b)
    # Constant seeds and warnings of the original graph are kept by the spec; so is the
    # topology's provenance.
    return dataclasses.replace(graph_from_spec(spec, full), topology=graph.topology)


def _mask_of(block) -> np.ndarray:
    """Reconstruct a channel-level mask (all taps of a kept pair) — only for blocks not given."""
    m = np.zeros(block.weight_shape, bool)
    out_ch, in_g = block.weight_shape[0], block.weight_shape[1]
    first_input = conv_group_index(out_ch, in_g, block.conv_groups)[:, 0]  # of each output's group
    m[block.cols, block.rows - first_input[block.cols]] = True
    return m


def prune_masks(graph: LayeredGraph, masks: Mapping[str, np.ndarray], *, keep_constant: bool = True,
                reach: Reachability | None = None) -> RepairResult:
    """Clear the dead weights of ``masks`` (keyed by weight name, PyTorch layout).

    ``masks`` must be the masks the graph was built from.
    """
    r = reach or reachability(graph)
    out: dict[str, np.ndarray] = {}
    removed = kept = 0
    for b in graph.weighted_blocks:
        m = np.asarray(masks[b.name], dtype=bool)
        states = r.weight_states(b, m)
        keep = states.effective | states.constant if keep_constant else states.effective
        out[b.name] = keep.copy()
        removed += int(m.sum() - keep.sum())
        kept += int(m.sum())
    return RepairResult(out, removed, 0, kept, kept - removed)


def reconnect_masks(graph: LayeredGraph, masks: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
                    *, reach: Reachability | None = None) -> RepairResult:
    """Clear all dead weights and re-spend the freed budget on effective candidates.

    ``scores`` map weight names to arrays of the weight's shape (e.g. the dense
    ``weight_orig``); the largest ``|score|`` wins, ties by position.
    """
    r = reach or reachability(graph)
    pruned = prune_masks(graph, masks, keep_constant=False, reach=r)
    budget = pruned.removed
    # Removing a dead weight can make a unit inaccessible (its only incoming weights were
    # dead because the unit reached no output), so the candidates come from the pruned graph.
    # Each added weight joins an accessible unit to a coaccessible one; that can make new
    # units accessible / coaccessible and so create new candidates: spend in rounds.
    out = {k: v.copy() for k, v in pruned.masks.items()}
    added = 0
    while added < budget:
        graph = rebuild_with_masks(graph, out)
        r = reachability(graph)
        names, flat_scores, flat_index = [], [], []
        for b in graph.weighted_blocks:
            cand = ~out[b.name] & pair_selector(b, r.accessible[b.src], r.coaccessible[b.dst])
            idx = np.flatnonzero(cand)
            if idx.size:
                names.append(b.name)
                flat_scores.append(np.abs(np.asarray(scores[b.name], dtype=np.float64)).reshape(-1)[idx])
                flat_index.append(idx)
        if not flat_scores:
            break
        all_scores = np.concatenate(flat_scores)
        which = np.concatenate([np.full(s.size, i) for i, s in enumerate(flat_scores)])
        where = np.concatenate(flat_index)
        take = min(budget - added, all_scores.size)
        # highest score first, then block order, then position (deterministic)
        for i in np.lexsort((where, which, -all_scores))[:take]:
            out[names[which[i]]].reshape(-1)[where[i]] = True
        added += int(take)
    return RepairResult(out, pruned.removed, added, pruned.kept_before, pruned.kept_before - pruned.removed + added)
