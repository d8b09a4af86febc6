"""The core type: a layered DAG of unit groups joined by sparse boolean connection blocks.

Contract
--------
* A :class:`Group` is a set of units that one tensor dimension indexes (the outputs of a
  linear layer, the channels of a conv, the input features).  It may carry *constant
  seeds*: units that emit an input-independent, non-zero value (a bias, a BatchNorm shift,
  an activation with ``f(0) != 0``).
* A :class:`Block` joins a source group to a destination group.  Its connections are the
  pairs ``(i, j)`` (``i`` a source unit, ``j`` a destination unit) stored as sorted COO
  index arrays; ``matrix`` gives them as a scipy CSR boolean matrix of shape
  ``(width_src, width_dst)``.  A *weighted* block comes from a prunable weight and also
  stores ``taps[k]``: how many kept weights (kernel taps) realise pair ``k``.  Structural
  blocks (identity, expand, all-to-all, arbitrary) come from the architecture.
* :class:`LayeredGraph` validates itself when built: known groups, widths that chain,
  binary masks, no cycle.  It is never mutated afterwards.

The transpose from PyTorch's ``(out, in/groups, *kernel)`` weight layout to the block's
``(in, out)`` orientation happens in exactly one function, :func:`weight_pairs`.

::

    input(4) --fc1.weight--> fc1(3) --fc2.weight--> fc2(2)
         \\______________identity (skip)______________/   (widths must match)
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
from ._lazy import sparse as sp  # scipy.sparse, imported on first use (start-up)

from .errors import HasACycle, InvalidGraph

__all__ = [
    "Group",
    "Block",
    "LayeredGraph",
    "GraphBuilder",
    "weight_pairs",
    "pair_selector",
    "conv_group_index",
    "chain",
]

WEIGHTED = "weighted"
IDENTITY = "identity"
EXPAND = "expand"
DENSE = "dense"
SPARSE = "sparse"
_KINDS = (WEIGHTED, IDENTITY, EXPAND, DENSE, SPARSE)
TOPOLOGIES = ("traced", "stored", "inferred-chain", "declared")


@dataclass(frozen=True, eq=False)
class Group:
    """A named set of ``width`` units; ``constant`` marks units that emit a value on their own."""

    name: str
    width: int
    constant: np.ndarray = field(repr=False)  # (width,) bool

    @property
    def has_constant(self) -> bool:
        return bool(self.constant.any())


@dataclass(frozen=True, eq=False)
class Block:
    """Connections from group ``src`` to group ``dst``.

    Attributes
    ----------
    name : str
        The state_dict key of the weight for weighted blocks (``"fc1.weight"``), a
        descriptive name for structural ones.
    kind : {"weighted", "identity", "expand", "dense", "sparse"}
    shape : (int, int)
        ``(width_src, width_dst)``.
    rows, cols : ndarray of int64, shape (nnz,)
        The connected pairs, sorted by row then column, unique.  ``None`` for ``dense``
        (all-to-all) blocks, which are never materialised.
    taps : ndarray of int64, shape (nnz,)
        Weighted blocks: the number of kept weights behind each pair (1 for a linear
        layer, up to ``prod(kernel)`` for a conv).  Structural blocks: ones.
    weight_shape : tuple of int
        Weighted blocks: the PyTorch shape of the weight, ``(out, in/groups, *kernel)``.
    conv_groups : int
        Weighted blocks: the ``groups`` of a grouped / depthwise conv (1 otherwise).
    note : str
        Why a structural block is there (shown in warnings for over-approximations).
    """

    name: str
    src: str
    dst: str
    kind: str
    shape: tuple[int, int]
    rows: np.ndarray | None = field(repr=False)
    cols: np.ndarray | None = field(repr=False)
    taps: np.ndarray | None = field(repr=False)
    weight_shape: tuple[int, ...] = ()
    conv_groups: int = 1
    note: str = ""

    @property
    def weighted(self) -> bool:
        return self.kind == WEIGHTED

    @property
    def weights(self) -> int:
        """Number of prunable weights behind the block (0 for structural blocks)."""
        return int(np.prod(self.weight_shape)) if self.weighted else 0

    @property
    def kept(self) -> int:
        """Number of kept (mask = 1) weights; 0 for structural blocks."""
        return int(self.taps.sum()) if self.weighted else 0

    @property
    def nnz(self) -> int:
        if self.kind == DENSE:
            return self.shape[0] * self.shape[1]
        return int(self.rows.size)

    @property
    def matrix(self) -> sp.csr_matrix:
        """The connections as a boolean CSR matrix of shape ``(width_src, width_dst)``."""
        if self.kind == DENSE:
            return sp.csr_matrix(np.ones(self.shape, dtype=bool))
        data = np.ones(self.rows.size, dtype=bool)
        return sp.csr_matrix((data, (self.rows, self.cols)), shape=self.shape)

    def forward(self, src_units: np.ndarray) -> np.ndarray:
        """Destination units reached from the marked source units. ``(w_src,) -> (w_dst,)``."""
        out = np.zeros(self.shape[1], dtype=bool)
        if self.kind == DENSE:
            out[:] = bool(src_units.any())
        else:
            out[self.cols[src_units[self.rows]]] = True
        return out

    def backward(self, dst_units: np.ndarray) -> np.ndarray:
        """Source units that reach a marked destination unit. ``(w_dst,) -> (w_src,)``."""
        out = np.zeros(self.shape[0], dtype=bool)
        if self.kind == DENSE:
            out[:] = bool(dst_units.any())
        else:
            out[self.rows[dst_units[self.cols]]] = True
        return out


def weight_pairs(mask: np.ndarray, conv_groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn a PyTorch-layout mask into block pairs: the one place the transpose happens.

    Parameters
    ----------
    mask : ndarray of bool, shape (out, in/groups, *kernel)
        ``True`` where the weight is kept.  A linear weight is ``(out, in)``.
    conv_groups : int
        ``groups`` of the conv; input channel of weight ``(o, c)`` is
        ``(o // (out/groups)) * (in/groups) + c``.

    Returns
    -------
    rows, cols, taps : ndarray of int64
        Source unit (input feature / channel), destination unit (output) and number of
        kept taps of every connected pair, sorted by row then column.

    Examples
    --------
    >>> rows, cols, taps = weight_pairs(np.array([[1, 0, 1], [0, 0, 1]], dtype=bool))
    >>> rows.tolist(), cols.tolist(), taps.tolist()
    ([0, 2, 2], [0, 0, 1], [1, 1, 1])
    """
    out_ch, in_per_group = mask.shape[0], mask.shape[1]
    if mask.size and not any(mask.strides) and not mask.flat[0]:
        none = np.zeros(0, dtype=np.int64)  # a broadcast all-False mask (streaming skeletons): no scan
        return none, none.copy(), none.copy()
    if mask.ndim == 2:
        counts = mask.T  # (in/groups, out): the transpose
    else:
        counts = mask.reshape(out_ch, in_per_group, -1).sum(axis=2, dtype=np.int64).T
    c, o = np.nonzero(counts)  # sorted by c, then o
    taps = counts[c, o].astype(np.int64)
    if conv_groups == 1:
        return c.astype(np.int64), o.astype(np.int64), taps
    rows = conv_group_index(out_ch, in_per_group, conv_groups)[o, c]  # input unit
    order = np.lexsort((o, rows))
    return rows[order].astype(np.int64), o[order].astype(np.int64), taps[order]


def conv_group_index(out_channels: int, in_per_group: int, conv_groups: int = 1) -> np.ndarray:
    """The input unit read by weight ``(o, c)`` of a (grouped) conv: the one conv-group mapping.

    Output channel ``o`` belongs to group ``o // (out/groups)``, which reads input channels
    ``group * (in/groups) … (group+1) * (in/groups) - 1``; weight ``(o, c)`` reads the
    ``c``-th of them.  A linear layer or an ungrouped conv (``conv_groups == 1``) reads
    input ``c``.

    Returns
    -------
    ndarray of int64, shape (out_channels, in_per_group)

    Examples
    --------
    >>> conv_group_index(4, 1, 2).ravel().tolist()  # 2 groups, 2 inputs: outputs 0,1 read 0; 2,3 read 1
    [0, 0, 1, 1]
    """
    if conv_groups < 1 or out_channels % conv_groups:
        raise InvalidGraph(f"{out_channels} output channels are not divisible by groups={conv_groups}")
    group = np.arange(out_channels, dtype=np.int64) // (out_channels // conv_groups)
    return group[:, None] * in_per_group + np.arange(in_per_group, dtype=np.int64)[None, :]


def pair_selector(block: Block, src_units: np.ndarray, dst_units: np.ndarray) -> np.ndarray:
    """Weights of a weighted block whose source unit is in ``src_units`` and destination in ``dst_units``.

    Returns a boolean array of the block's ``weight_shape`` (broadcast over kernel taps),
    e.g. ``pair_selector(b, accessible, coaccessible) & kept`` is the effective weights.
    """
    out_ch, in_per_group = block.weight_shape[0], block.weight_shape[1]
    o = np.arange(out_ch)[:, None]
    src_index = conv_group_index(out_ch, in_per_group, block.conv_groups)  # (out, in/groups)
    ok = dst_units[o] & src_units[src_index]  # (out, in/groups)
    extra = len(block.weight_shape) - 2
    return np.broadcast_to(ok.reshape(ok.shape + (1,) * extra), block.weight_shape)


@dataclass(frozen=True, eq=False)
class LayeredGraph:
    """A validated layered DAG; build it with :class:`GraphBuilder`.

    Attributes
    ----------
    groups : Mapping[str, Group]
    blocks : tuple of Block, in topological order of their source groups (forward order)
    sources, sinks : tuple of str
        Input and output groups.
    order : tuple of str
        Group names in topological order (ties broken by insertion order).
    warnings : tuple of str
        Over-approximations made when the graph was built (unknown ops), and the
        assumptions of an inferred topology.
    topology : {"traced", "stored", "inferred-chain", "declared"}
        Where the topology comes from: a torch.fx trace of the model, a topology spec stored
        in a checkpoint, an order inferred from weight shapes without model code (an
        assumption, stated in ``warnings``), or built by hand with :class:`GraphBuilder`.
    """

    groups: Mapping[str, Group]
    blocks: tuple[Block, ...]
    sources: tuple[str, ...]
    sinks: tuple[str, ...]
    order: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    topology: str = "declared"

    @property
    def weighted_blocks(self) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.weighted)

    def _index(self) -> dict:
        idx = self.__dict__.get("_idx")
        if idx is None:  # built once, on first use (the graph never changes)
            idx = {"in": {g: [] for g in self.order}, "out": {g: [] for g in self.order}, "name": {}}
            for b in self.blocks:
                idx["in"][b.dst].append(b)
                idx["out"][b.src].append(b)
                idx["name"].setdefault(b.name, b)
            object.__setattr__(self, "_idx", idx)
        return idx

    def incoming(self, group: str) -> tuple[Block, ...]:
        """Blocks into ``group``, in forward order."""
        return tuple(self._index()["in"][group])

    def outgoing(self, group: str) -> tuple[Block, ...]:
        """Blocks out of ``group``, in forward order."""
        return tuple(self._index()["out"][group])

    def block(self, name: str) -> Block:
        """The block called ``name`` (weighted blocks: the weight's state_dict key)."""
        return self._index()["name"][name]

    def depth(self) -> dict[str, int]:
        """Longest number of blocks from a source to each group."""
        d = {g: 0 for g in self.order}
        for b in self.blocks:  # blocks are in topological order of their source
            d[b.dst] = max(d[b.dst], d[b.src] + 1)
        return d


class GraphBuilder:
    """Collects groups and blocks, then :meth:`build` validates them into a :class:`LayeredGraph`.

    Examples
    --------
    >>> b = GraphBuilder()
    >>> b.input("x", 3)
    >>> b.weight("fc.weight", "x", "fc", np.array([[1, 0, 0], [0, 1, 0]]))
    >>> g = b.build()
    >>> g.sinks, g.groups["fc"].width
    (('fc',), 2)
    """

    def __init__(self) -> None:
        self._widths: dict[str, int] = {}
        self._constant: dict[str, np.ndarray] = {}
        self._sources: list[str] = []
        self._blocks: list[Block] = []
        self._warnings: list[str] = []

    # -- groups -----------------------------------------------------------------------
    def input(self, name: str, width: int) -> None:
        """Declare a source group of ``width`` input units."""
        self._group(name, width, who=f"input {name!r}")
        self._sources.append(name)

    def group(self, name: str, width: int) -> None:
        """Declare a (hidden or output) group; blocks also declare their destination."""
        self._group(name, width, who=f"group {name!r}")

    def _group(self, name: str, width: int, *, who: str) -> None:
        width = int(width)
        if width < 1:
            raise InvalidGraph(f"{who} has width {width}; a group needs at least one unit")
        if name in self._widths:
            if self._widths[name] != width:
                raise InvalidGraph(
                    f"{who} has width {width} but group {name!r} already has width "
                    f"{self._widths[name]}; widths must chain"
                )
            return
        self._widths[name] = width
        self._constant[name] = np.zeros(width, dtype=bool)

    def constant(self, group: str, units: np.ndarray | bool = True) -> None:
        """Mark units of ``group`` as constant sources (non-zero bias, BN shift, f(0) != 0)."""
        if group not in self._widths:
            raise InvalidGraph(f"constant seeds for unknown group {group!r}; declare it first")
        units = np.broadcast_to(np.asarray(units, dtype=bool), (self._widths[group],))
        self._constant[group] = self._constant[group] | units

    def warn(self, message: str) -> None:
        self._warnings.append(message)

    # -- blocks -----------------------------------------------------------------------
    def weight(
        self,
        name: str,
        src: str,
        dst: str,
        mask: np.ndarray,
        *,
        conv_groups: int = 1,
    ) -> None:
        """Add the weighted block of a prunable weight.

        Parameters
        ----------
        name : str
            The weight's state_dict key (``"fc1.weight"``).
        src, dst : str
            Source group (must exist) and destination group (created with width ``out``).
        mask : array of 0/1 or bool, shape (out, in/groups, *kernel)
            PyTorch layout, ``1`` = kept.
        conv_groups : int
            ``groups`` of a grouped / depthwise conv.
        """
        mask = np.asarray(mask)
        if mask.dtype != bool:
            if not np.isin(mask, (0, 1)).all():
                bad = mask[~np.isin(mask, (0, 1))].ravel()[:3].tolist()
                raise InvalidGraph(f"mask of {name!r} has entries {bad}; masks must be binary (0/1)")
            mask = mask.astype(bool)
        if mask.ndim < 2:
            raise InvalidGraph(
                f"mask of {name!r} has shape {tuple(mask.shape)}; a prunable weight is "
                "(out, in) or (out, in/groups, *kernel)"
            )
        if mask.size == 0:
            raise InvalidGraph(f"weight {name!r} has shape {tuple(mask.shape)}: it is empty")
        out_ch = mask.shape[0]
        if conv_groups < 1 or out_ch % conv_groups:
            raise InvalidGraph(
                f"weight {name!r} has {out_ch} outputs, not divisible by groups={conv_groups}"
            )
        if src not in self._widths:
            raise InvalidGraph(f"weight {name!r} reads unknown group {src!r}; declare it first")
        in_width = mask.shape[1] * conv_groups
        if self._widths[src] != in_width:
            raise InvalidGraph(
                f"weight {name!r} has shape {tuple(mask.shape)} (groups={conv_groups}) and takes "
                f"{in_width} inputs, but group {src!r} has {self._widths[src]} units; widths must chain"
            )
        self._group(dst, out_ch, who=f"output of weight {name!r}")
        rows, cols, taps = weight_pairs(mask, conv_groups)
        self._blocks.append(
            Block(name, src, dst, WEIGHTED, (in_width, out_ch), rows, cols, taps,
                  tuple(int(s) for s in mask.shape), conv_groups)
        )

    def identity(self, src: str, dst: str, *, name: str | None = None) -> None:
        """Unit i of ``src`` feeds unit i of ``dst`` (residual add, BN, activation, pooling)."""
        w = self._need(src)
        self._group(dst, w, who=f"identity from {src!r}")
        idx = np.arange(w, dtype=np.int64)
        self._structural(name or f"{src}->{dst}", src, dst, IDENTITY, idx, idx)

    def expand(self, src: str, dst: str, factor: int, *, channels_last: bool = False,
               name: str | None = None) -> None:
        """Flatten: each unit of ``src`` feeds ``factor`` units of ``dst``.

        Channels first (PyTorch's ``(C, H, W)`` flatten): channel ``c`` feeds units
        ``c*factor … (c+1)*factor-1``.  Channels last (``(n_nodes, C)`` flattened node-major,
        as in a GCN's dense layer): channel ``c`` feeds units ``c, c+C, c+2C, …``.
        """
        w = self._need(src)
        self._group(dst, w * factor, who=f"expansion of {src!r} by {factor}")
        rows = np.repeat(np.arange(w, dtype=np.int64), factor)
        if channels_last:
            cols = rows + w * np.tile(np.arange(factor, dtype=np.int64), w)
        else:
            cols = np.arange(w * factor, dtype=np.int64)
        self._structural(name or f"{src}->{dst}", src, dst, EXPAND, rows, cols)

    def connect(self, src: str, dst: str, matrix, *, name: str | None = None, note: str = "") -> None:
        """Add a structural block with arbitrary connections (e.g. a concatenation's slice)."""
        self._need(src)
        m = sp.coo_matrix(matrix)
        if m.shape[0] != self._widths[src]:
            raise InvalidGraph(
                f"block {name or src + '->' + dst!r} has {m.shape[0]} rows but group {src!r} "
                f"has {self._widths[src]} units; widths must chain"
            )
        self._group(dst, m.shape[1], who=f"block into {dst!r}")
        keep = m.data != 0
        rows, cols = m.row[keep].astype(np.int64), m.col[keep].astype(np.int64)
        flat = np.unique(rows * m.shape[1] + cols)
        self._structural(name or f"{src}->{dst}", src, dst, SPARSE, flat // m.shape[1],
                         flat % m.shape[1], note=note)

    def dense(self, src: str, dst: str, width: int | None = None, *, name: str | None = None,
              note: str = "") -> None:
        """Every unit of ``src`` feeds every unit of ``dst`` (the conservative choice)."""
        w = self._need(src)
        self._group(dst, width if width is not None else w, who=f"all-to-all from {src!r}")
        nm = name or f"{src}->{dst}"
        self._blocks.append(Block(nm, src, dst, DENSE, (w, self._widths[dst]), None, None, None,
                                  note=note))

    def _structural(self, name, src, dst, kind, rows, cols, note: str = "") -> None:
        shape = (self._widths[src], self._widths[dst])
        taps = np.ones(rows.size, dtype=np.int64)
        self._blocks.append(Block(name, src, dst, kind, shape, rows, cols, taps, note=note))

    def _need(self, group: str) -> int:
        if group not in self._widths:
            raise InvalidGraph(f"unknown group {group!r}; declare it (input/group) before using it")
        return self._widths[group]

    # -- build ------------------------------------------------------------------------
    def build(self, sinks: Sequence[str] | None = None, *, topology: str = "declared") -> LayeredGraph:
        """Validate and freeze.  ``sinks`` default to the groups with no outgoing block.

        ``topology`` records where the structure comes from (see :class:`LayeredGraph`).
        """
        if topology not in TOPOLOGIES:
            raise InvalidGraph(f"topology {topology!r} is not one of {', '.join(TOPOLOGIES)}")
        if not self._sources:
            raise InvalidGraph("the graph has no input group; declare one with input()")
        into = {b.dst for b in self._blocks}
        for s in self._sources:
            if s in into:
                raise InvalidGraph(f"input group {s!r} has incoming blocks; inputs must be sources")
        names = {b.name for b in self._blocks if b.weighted}
        if len(names) != sum(b.weighted for b in self._blocks):
            raise InvalidGraph("two weighted blocks share a name; weight names must be unique")
        sorter = graphlib.TopologicalSorter({g: set() for g in self._widths})
        for b in self._blocks:
            sorter.add(b.dst, b.src)
        position = {g: i for i, g in enumerate(self._widths)}
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise HasACycle(f"the connection blocks form a cycle ({cycle}); a network must be a DAG") from None
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            order.extend(ready)
            sorter.done(*ready)
        rank = {g: i for i, g in enumerate(order)}
        blocks = sorted(self._blocks, key=lambda b: (rank[b.src], rank[b.dst]))
        if sinks is None:
            outs = {b.src for b in blocks}
            sinks = [g for g in order if g not in outs and g not in self._sources]
        for s in sinks:
            if s not in self._widths:
                raise InvalidGraph(f"sink {s!r} is not a group of the graph")
        if not sinks:
            raise InvalidGraph("the graph has no output group")
        groups = {g: Group(g, self._widths[g], self._constant[g].copy()) for g in order}
        return LayeredGraph(groups, tuple(blocks), tuple(self._sources), tuple(sinks),
                            tuple(order), tuple(self._warnings), topology)


def chain(masks: Iterable[np.ndarray], names: Sequence[str] | None = None) -> LayeredGraph:
    """Build a chain (MLP) from PyTorch-layout masks ``(out, in)``: the papers' setting.

    >>> g = chain([np.ones((3, 4)), np.ones((2, 3))])
    >>> [b.shape for b in g.blocks]
    [(4, 3), (3, 2)]
    """
    masks = [np.asarray(m) for m in masks]
    names = list(names) if names is not None else [f"layer{i}" for i in range(len(masks))]
    if not masks:
        raise InvalidGraph("a chain needs at least one mask")
    b = GraphBuilder()
    if masks[0].ndim < 2:
        raise InvalidGraph(f"masks[0] has shape {masks[0].shape}; expected (out, in)")
    b.input("input", masks[0].shape[1])
    src = "input"
    for i, (m, n) in enumerate(zip(masks, names)):
        if m.ndim >= 2 and i > 0 and m.shape[1] != masks[i - 1].shape[0]:
            raise InvalidGraph(
                f"masks[{i}] has shape {tuple(m.shape)} but masks[{i - 1}] produces "
                f"{masks[i - 1].shape[0]} units; consecutive masks must chain"
            )
        b.weight(n, src, f"{n}:out", m)
        src = f"{n}:out"
    return b.build()
