"""Exact reachability on a :class:`~netgraph.LayeredGraph`.

Contract
--------
* ``accessible[g][u]``: some input unit reaches unit ``u`` of group ``g`` through kept
  connections.  Inputs are accessible.  ``acc(g) = OR over incoming blocks of (Cᵀ·acc(src) > 0)``
  in topological order; each block is read once: O(total kept connections).
* ``coaccessible[g][u]``: unit ``u`` reaches some output unit.  The mirror image.
* ``constant[g][u]``: unit ``u`` carries a value fed by a constant seed (bias, BN shift), i.e.
  it is reached from a seeded unit.  Independent of ``accessible``.
* A kept pair ``(i, j)`` of a block is **effective** iff ``i`` is accessible and ``j`` is
  coaccessible, **dead** otherwise; a dead pair is **constant** when ``i`` carries a constant
  and ``j`` is coaccessible: removing it would change the output by an input-independent amount.

The papers' products ``S_a`` (inputs × units) and ``S_c`` (units × outputs) are available
from :func:`products`, as booleans or as float64 path counts with a separate power-of-two
scale, so they never overflow silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from ._lazy import sparse as sp  # scipy.sparse, imported on first use (start-up)

from ._graph import DENSE, Block, LayeredGraph, pair_selector

__all__ = ["Reachability", "reachability", "Product", "products", "WeightStates", "unit_states",
           "UNUSED", "DEAD", "EFFECTIVE"]

#: Unit states of :func:`unit_states` (int8).
UNUSED, DEAD, EFFECTIVE = 0, 1, 2


@dataclass(frozen=True, eq=False)
class WeightStates:
    """Boolean arrays of a weighted block's ``weight_shape`` (PyTorch layout), each ⊆ ``kept``.

    ``effective = accessible & coaccessible``; ``dead = kept & ~effective``;
    ``constant ⊆ dead``: the source unit is not accessible but carries a constant (bias /
    BN shift) and the destination is coaccessible.
    """

    kept: np.ndarray
    accessible: np.ndarray
    coaccessible: np.ndarray
    effective: np.ndarray
    dead: np.ndarray
    constant: np.ndarray


@dataclass(frozen=True, eq=False)
class Reachability:
    """Per-group unit vectors (``(width,) bool``) of one graph; see the module contract."""

    graph: LayeredGraph
    accessible: Mapping[str, np.ndarray]
    coaccessible: Mapping[str, np.ndarray]
    constant: Mapping[str, np.ndarray]

    def pair_masks(self, block: Block) -> dict[str, np.ndarray]:
        """Boolean masks over the block's pairs: accessible, coaccessible, effective, constant."""
        acc = self.accessible[block.src][block.rows]
        coacc = self.coaccessible[block.dst][block.cols]
        eff = acc & coacc
        const = ~acc & self.constant[block.src][block.rows] & coacc
        return {"accessible": acc, "coaccessible": coacc, "effective": eff, "constant": const}

    def weight_states(self, block: Block, kept: np.ndarray) -> WeightStates:
        """The kept / accessible / coaccessible / effective / dead / constant weights of a block.

        The one place that turns unit reachability into weight masks: repair, compaction,
        figures and tests all call it.

        Parameters
        ----------
        block : Block
            A weighted block of this reachability's graph.
        kept : array of bool (or 0/1), shape ``block.weight_shape``
            The block's mask (PyTorch layout), the one the graph was built from.

        Returns
        -------
        WeightStates
            Arrays of ``block.weight_shape``; a kernel tap follows its channel pair.

        Examples
        --------
        >>> from netgraph import chain
        >>> m = np.array([[1, 1], [0, 0]], bool)
        >>> g = chain([m, np.array([[0, 1]])])
        >>> r = reachability(g)
        >>> r.weight_states(g.blocks[0], m).dead.astype(int).tolist()
        [[1, 1], [0, 0]]
        """
        kept = np.asarray(kept).astype(bool, copy=False)
        if kept.shape != tuple(block.weight_shape):
            raise ValueError(f"kept mask of {block.name!r} has shape {kept.shape}; the block's weight "
                             f"has shape {tuple(block.weight_shape)}")
        acc_u, coacc_u = self.accessible[block.src], self.coaccessible[block.dst]
        acc = kept & pair_selector(block, acc_u, np.ones_like(coacc_u))
        coacc = kept & pair_selector(block, np.ones_like(acc_u), coacc_u)
        eff = acc & coacc
        const = kept & pair_selector(block, ~acc_u & self.constant[block.src], coacc_u)
        return WeightStates(kept, acc, coacc, eff, kept & ~eff, const)

    def effective_matrix(self, block: Block) -> sp.csr_matrix:
        """The effective pairs of a block as a boolean CSR matrix ``(width_src, width_dst)``."""
        eff = self.pair_masks(block)["effective"]
        data = np.ones(int(eff.sum()), dtype=bool)
        return sp.csr_matrix((data, (block.rows[eff], block.cols[eff])), shape=block.shape)

    def dead_matrix(self, block: Block) -> sp.csr_matrix:
        """The dead (kept, not effective) pairs of a block, boolean CSR."""
        dead = ~self.pair_masks(block)["effective"]
        data = np.ones(int(dead.sum()), dtype=bool)
        return sp.csr_matrix((data, (block.rows[dead], block.cols[dead])), shape=block.shape)


def _propagate(graph: LayeredGraph, seeds: Mapping[str, np.ndarray], forward: bool) -> dict[str, np.ndarray]:
    vec = {g: np.array(seeds[g], dtype=bool) if g in seeds else np.zeros(graph.groups[g].width, bool)
           for g in graph.order}
    blocks = graph.blocks if forward else graph.blocks[::-1]
    # Blocks are sorted by the topological rank of their source (then destination), so in
    # forward order every block into g is visited before any block out of g, and in reverse
    # order every block out of g is visited before any block into g.
    for b in blocks:
        if forward:
            vec[b.dst] |= b.forward(vec[b.src])
        else:
            vec[b.src] |= b.backward(vec[b.dst])
    return vec


def reachability(graph: LayeredGraph) -> Reachability:
    """Accessible, coaccessible and constant-carrying units of every group.

    Examples
    --------
    >>> from netgraph import chain
    >>> g = chain([np.array([[1, 0], [0, 0]]), np.array([[0, 1]])])
    >>> r = reachability(g)
    >>> r.accessible[g.order[1]].tolist(), r.coaccessible[g.order[1]].tolist()
    ([True, False], [False, True])
    """
    ones = {s: np.ones(graph.groups[s].width, bool) for s in graph.sources}
    acc = _propagate(graph, ones, forward=True)
    coacc = _propagate(graph, {s: np.ones(graph.groups[s].width, bool) for s in graph.sinks}, forward=False)
    seeds = {g: grp.constant for g, grp in graph.groups.items() if grp.has_constant}
    const = _propagate(graph, seeds, forward=True)
    return Reachability(graph, acc, coacc, const)


def unit_states(graph: LayeredGraph, reach: Reachability | None = None) -> dict[str, np.ndarray]:
    """The one meaning of a dead unit: per group, ``int8`` states ``UNUSED`` / ``DEAD`` / ``EFFECTIVE``.

    * **effective** (2): accessible and coaccessible — the unit lies on an input → output
      path (equivalently: it has an effective connection in or out).
    * **dead** (1): not effective, but a kept weight reads or writes it — a defect: the
      weight is kept and does nothing for the output.
    * **unused** (0): no kept weight reads or writes it — pruned away, not a defect.

    A unit that is not effective and that a kept weight reads or writes directly is dead.
    Deadness then spreads through structural blocks (identity, flatten expansion,
    concatenation, all-to-all), which carry no weights, to units that are not effective
    either: a BatchNorm channel after a dead conv channel is dead, and so are the flattened
    copies of a dead channel.  The flattened positions of an *effective* channel that no
    kept weight reads are unused: the conv weights that compute them do something for the
    output through the other positions.

    Parameters
    ----------
    graph : LayeredGraph
    reach : Reachability, optional
        ``reachability(graph)``, computed when not given.

    Returns
    -------
    dict of str to ndarray of int8, shape (width,)
        One array per group of ``graph.order``.

    Examples
    --------
    >>> from netgraph import chain
    >>> g = chain([np.array([[1, 0, 0], [0, 1, 0]]), np.array([[0, 1]])])
    >>> [unit_states(g)[n].tolist() for n in g.order]  # input 2 is unused; input 0, unit 0 dead
    [[1, 2, 0], [1, 2], [2]]
    """
    r = reach if reach is not None else reachability(graph)
    into = {g: np.zeros(graph.groups[g].width, bool) for g in graph.order}
    out_of = {g: np.zeros(graph.groups[g].width, bool) for g in graph.order}
    for b in graph.blocks:
        if b.weighted:  # pairs are kept pairs only
            into[b.dst][b.cols] = True
            out_of[b.src][b.rows] = True
    live = {g: r.accessible[g] & r.coaccessible[g] for g in graph.order}
    direct = {g: (into[g] | out_of[g]) & ~live[g] for g in graph.order}
    down = {g: d.copy() for g, d in direct.items()}
    up = {g: d.copy() for g, d in direct.items()}
    structural = [b for b in graph.blocks if not b.weighted]
    for b in structural:  # topological order: every block into b.src came earlier
        down[b.dst] |= b.forward(down[b.src]) & ~live[b.dst]
    for b in structural[::-1]:
        up[b.src] |= b.backward(up[b.dst]) & ~live[b.src]
    return {g: np.where(live[g], EFFECTIVE, np.where(down[g] | up[g], DEAD, UNUSED)).astype(np.int8)
            for g in graph.order}


@dataclass(frozen=True, eq=False)
class Product:
    """A reachability product; ``matrix * 2**log2_scale`` is the value.

    For booleans ``matrix`` is a bool CSR and ``log2_scale`` is 0.  For path counts
    ``matrix`` is float64 CSR, rescaled by powers of two whenever its largest entry
    passes 2**900, so counts up to 2**(2**63) are represented without overflow.
    """

    matrix: sp.csr_matrix
    log2_scale: int = 0

    def log2(self) -> sp.csr_matrix:
        """log2 of the (non-zero) path counts, as a float64 CSR with the same pattern."""
        m = self.matrix.tocsr(copy=True).astype(np.float64)
        m.data = np.log2(m.data) + self.log2_scale
        return m


_LIMIT = 900  # rescale when an entry exceeds 2**900 (float64 overflows past 2**1024)


def _block_matrix(b: Block, dtype) -> sp.csr_matrix:
    if b.kind == DENSE:
        return sp.csr_matrix(np.ones(b.shape, dtype=dtype))
    # A pair is one connection: path counts count unit-level paths, not kernel taps.
    return sp.csr_matrix((np.ones(b.rows.size, dtype=dtype), (b.rows, b.cols)), shape=b.shape)


def _rescale(m: sp.csr_matrix, scale: int) -> tuple[sp.csr_matrix, int]:
    if m.nnz and m.data.max() > 2.0 ** _LIMIT:
        shift = int(np.floor(np.log2(m.data.max()))) - 1
        m = m.copy()
        m.data = np.ldexp(m.data, -shift)
        scale += shift
    return m, scale


def products(graph: LayeredGraph, direction: str = "accessibility", *, counts: bool = False) -> dict[str, Product]:
    """S_a or S_c for every group.

    Parameters
    ----------
    direction : {"accessibility", "coaccessibility"}
        ``"accessibility"``: ``S_a[g]`` has shape ``(n_inputs, width_g)``; entry ``(s, u)``
        is non-zero iff input unit ``s`` reaches unit ``u`` (rows are the source groups'
        units, concatenated in ``graph.sources`` order).  Column ``u`` is non-null iff
        ``u`` is accessible.
        ``"coaccessibility"``: ``S_c[g]`` has shape ``(width_g, n_outputs)``; row ``u`` is
        non-null iff ``u`` is coaccessible.
    counts : bool
        False: boolean products.  True: the number of unit-level paths, float64 with a
        power-of-two scale (:class:`Product`).
    """
    if direction not in ("accessibility", "coaccessibility"):
        raise ValueError(f"direction must be 'accessibility' or 'coaccessibility', got {direction!r}")
    dtype = np.float64 if counts else np.int64
    forward = direction == "accessibility"
    ends = graph.sources if forward else graph.sinks
    total = sum(graph.groups[s].width for s in ends)
    result: dict[str, tuple[sp.csr_matrix, int]] = {}
    offset = 0
    for s in ends:
        w = graph.groups[s].width
        eye = sp.csr_matrix((np.ones(w, dtype=dtype), (np.arange(w) + offset, np.arange(w))), shape=(total, w))
        result[s] = (eye if forward else eye.T.tocsr(), 0)
        offset += w
    order = graph.order if forward else graph.order[::-1]
    for g in order:
        incoming = graph.incoming(g) if forward else graph.outgoing(g)
        parts = []
        for b in incoming:
            other = b.src if forward else b.dst
            if other not in result:
                continue
            m, scale = result[other]
            bm = _block_matrix(b, dtype)
            prod = (m @ bm) if forward else (bm @ m)
            if not counts:
                prod = (prod > 0).astype(np.int64)
            parts.append((prod.tocsr(), scale))
        if g in result:
            parts.append(result[g])
        if not parts:
            continue
        top = max(s for _, s in parts)
        acc = None
        for m, s in parts:
            if s != top:
                m = m.copy()
                m.data = np.ldexp(m.data, s - top)
            acc = m if acc is None else acc + m
        if not counts:
            acc = (acc > 0).astype(np.int64)
        else:
            acc, top = _rescale(acc.tocsr(), top)
        result[g] = (acc.tocsr(), top)
    out = {}
    for g in graph.order:
        w = graph.groups[g].width
        if g in result:
            m, s = result[g]
        else:
            m, s = sp.csr_matrix((total, w) if forward else (w, total), dtype=dtype), 0
        if not counts:
            m = (m > 0).tocsr()
        out[g] = Product(m.tocsr(), s)
    return out
