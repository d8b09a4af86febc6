"""Boolean convolutions for the tap-level pass: by channel patterns, dense or sparse.

Contract
--------
:class:`BoolConv` is one conv layer seen on 0/1 position maps of its *padded* input
(``(N, C_in, *S_padded)``; the padding itself is applied by the caller, so zero padding reads
nothing and reflect / replicate / circular padding read the positions they copy):

* :meth:`forward` — output positions that read a marked input position through a kept tap;
* :meth:`backward` — input positions read through a kept tap by a marked output position;
* :meth:`correlate` — per weight ``(o, i, tap d)``: some marked output position of ``o``
  reads through ``d`` a marked input position of ``i`` (the weight-gradient correlation).

Three routes give the same booleans (tests check them against each other):

* **patterns** (default whenever it applies): the channels of a map are grouped by their
  pattern of marked positions (in a pruned network most channels are *full* or *empty*, so
  a layer has a handful of distinct patterns).  Every operation is exact on the distinct
  patterns alone: the forward of a kept tap ``d`` of ``o`` reading channel ``i`` only depends
  on ``i``'s pattern, so the kept taps are merged per (output channel, input pattern) and one
  convolution runs over the ``k`` patterns instead of the ``C_in`` channels; the backward
  likewise over the output patterns; the correlation is computed once per (output pattern,
  input pattern, tap) and gathered back per weight.  Empty channels are dropped.  Used
  when the patterns number at most ``PATTERNS_UP_TO`` of the channels; a correlation with
  few patterns on one side only takes every channel of the other side as its own pattern.
* **dense** (otherwise, density ≥ ``SPARSE_BELOW``, or 3-D convs): torch's own conv,
  conv-input and conv-weight gradients on float32 0/1 maps of all channels.
* **sparse** (otherwise, 1-D and 2-D): the input unfolded once (``F.unfold``), then
  gathers / scatter-adds over the kept taps only.

Float results are counts of marked (position, tap) pairs, thresholded at 1/2 (robust to
rounding of the convolution algorithms).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BoolConv", "SPARSE_BELOW", "PATTERNS_UP_TO", "channel_patterns", "as_float"]

PATTERNS_UP_TO = 0.5  # share of a map's channels up to which the patterns route is used
SPARSE_BELOW = 0.05  # kept fraction under which the sparse route is used
CORRELATE_SPARSE_BELOW = 0.05  # ... under which the per-weight correlation visits kept taps only
_CHUNK = 1 << 22  # elements per gathered block (bounds the memory of the sparse route)
_F = torch.float32


def as_float(t: torch.Tensor) -> torch.Tensor:
    """A 0/1 float32 copy of a boolean tensor (through ``uint8``: torch's direct bool → float
    conversion is not vectorised and many times slower)."""
    if t.dtype == torch.bool:
        return t.view(torch.uint8).to(_F)
    return t.to(_F)


def channel_patterns(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct non-empty channel maps of ``t`` (bool, ``(N, C, *S)``).

    Returns
    -------
    patterns : Tensor of float32, shape ``(N, k, *S)``
        One 0/1 map per distinct pattern with at least one marked position (``k`` may be 0).
    index : Tensor of int64, shape ``(C,)``
        Channel ``c`` equals ``patterns[:, index[c]]``; ``-1`` where the channel is empty.
    """
    n, c = t.shape[:2]
    rows = t.transpose(0, 1).reshape(c, -1)
    packed = np.packbits(rows.numpy(), axis=1)  # exact: equal rows <=> equal bytes
    index = np.full(c, -1, dtype=np.int64)
    first: list[int] = []
    left = np.flatnonzero(packed.any(1))
    while left.size and len(first) < 8:  # the first patterns (full, ...): vectorised
        same = (packed[left] == packed[left[0]]).all(1)
        index[left[same]] = len(first)
        first.append(int(left[0]))
        left = left[~same]
    seen: dict[bytes, int] = {}  # (the rows left differ from every pattern found so far)
    for j in left:  # many distinct patterns: one dictionary look-up per channel
        key = packed[j].tobytes()
        v = seen.get(key)
        if v is None:
            v = seen[key] = len(first)
            first.append(int(j))
        index[j] = v
    picked = rows.index_select(0, torch.tensor(first, dtype=torch.int64))
    patterns = as_float(picked.reshape((len(first), n) + tuple(t.shape[2:])).transpose(0, 1))
    return patterns, torch.from_numpy(index)


def _tuple(v, nd: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * nd


class BoolConv:
    """One conv layer on boolean position maps (see the module contract).

    Parameters
    ----------
    mask : Tensor of bool, shape (out, in/groups, *kernel)
        The kept weights.
    stride, dilation : int or tuple
    groups : int
    in_shape : tuple of int
        Shape of the padded input ``(N, C_in, *S)``.
    out_shape : tuple of int
        Shape of the output ``(N, C_out, *S_out)``.
    route : {"auto", "patterns", "dense", "sparse"}
        ``"auto"``: patterns where they are few (per operation), else dense or sparse by the
        mask's density.  The others force one route (``"sparse"`` is dense for 3-D convs).
    """

    def __init__(self, mask: torch.Tensor, stride, dilation, groups: int, in_shape, out_shape,
                 route: str = "auto") -> None:
        if route not in ("auto", "patterns", "dense", "sparse"):
            raise ValueError(f"route must be auto, patterns, dense or sparse, got {route!r}")
        self.mask = mask
        self.nd = mask.dim() - 2
        self.stride, self.dilation = _tuple(stride, self.nd), _tuple(dilation, self.nd)
        self.groups = int(groups)
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.kernel = tuple(mask.shape[2:])
        self.kk = int(np.prod(self.kernel))
        self.route = route
        self._m: torch.Tensor | None = None  # float mask, on demand
        self._fallback: str | None = None  # dense / sparse, decided on demand
        self._dens: float | None = None
        self._memo: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pmemo: list[tuple[torch.Tensor, tuple]] = []
        if self.nd in (1, 2):
            self._prepare_view()

    # -- routes --------------------------------------------------------------------------
    @property
    def m(self) -> torch.Tensor:
        """The kept weights as 0/1 float32 (computed once)."""
        if self._m is None:
            self._m = as_float(self.mask)
        return self._m

    def _density(self) -> float:
        if self._dens is None:
            self._dens = int(np.count_nonzero(self.mask.numpy())) / max(1, self.mask.numel())
        return self._dens

    def _density_route(self) -> str:
        """dense or sparse, by the mask's density (the route when patterns are not used)."""
        if self._fallback is None:
            route = self.route if self.route in ("dense", "sparse") else \
                ("sparse" if self._density() < SPARSE_BELOW else "dense")
            if self.nd not in (1, 2):
                route = "dense"
            self._fallback = route
            if route == "sparse":
                self._prepare_sparse()
        return self._fallback

    @property
    def sparse_correlate(self) -> bool:
        """Whether the correlation visits the kept taps only (sparse route, or a kept fraction
        under ``CORRELATE_SPARSE_BELOW``; measured on this project's shared CPU, 0.25 was no
        better than 0.05 — within the noise)."""
        if self.nd not in (1, 2):
            return False
        if self._density_route() == "sparse" or self._density() < CORRELATE_SPARSE_BELOW:
            self._prepare_sparse()
            return True
        return False

    def _patterns(self, t: torch.Tensor):
        """``(patterns, index)`` of ``t`` if the patterns route applies to it, else ``None``."""
        if self.route in ("dense", "sparse"):
            return None
        for key, val in self._pmemo:
            if key is t:
                break
        else:
            val = channel_patterns(t)
            self._pmemo = [(t, val)] + self._pmemo[:3]
        if self.route == "auto" and val[0].shape[1] > PATTERNS_UP_TO * t.shape[1]:
            return None
        return val

    # -- patterns: kept taps merged per channel pattern ------------------------------------
    @staticmethod
    def _identity(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every channel its own pattern (the side of a correlation with many patterns)."""
        return as_float(t), torch.arange(t.shape[1])

    def _m4(self) -> torch.Tensor:
        out_ch, in_g = self.mask.shape[:2]
        return self.m.reshape(self.groups, out_ch // self.groups, in_g, self.kk)

    def _onehot(self, index: torch.Tensor, k: int) -> torch.Tensor:
        oh = torch.zeros((index.numel(), k + 1), dtype=_F)
        oh[torch.arange(index.numel()), index] = 1.0  # -1 (empty) lands in the last column
        return oh[:, :k]

    def _mask3(self) -> np.ndarray:
        """The mask as a numpy ``(C_out, C_in/groups, kk)`` array (a view)."""
        out_ch, in_g = self.mask.shape[:2]
        return self.mask.numpy().reshape(out_ch, in_g, self.kk)

    def _merge(self, idx: np.ndarray, k: int, axis: int) -> torch.Tensor:
        """groups == 1: the mask OR-ed over the channels of each pattern along ``axis`` (1:
        input channels, 0: output channels); bool, that axis of size ``k``."""
        m = self._mask3()
        if k == 1 and (idx == 0).all():  # one pattern, nothing empty (the common case)
            return torch.from_numpy(np.expand_dims(_or_reduce(m, axis), axis))
        parts = [_or_reduce(np.compress(idx == p, m, axis=axis), axis) for p in range(k)]
        return torch.from_numpy(np.stack(parts, axis))

    def _merged_in(self, index: torch.Tensor, k: int) -> torch.Tensor:
        """``(C_out, k, *kernel)``: output channel o keeps tap d from input pattern p."""
        out_ch, in_g = self.mask.shape[:2]
        if self.groups == 1:  # OR over the input channels of each pattern
            return as_float(self._merge(index.numpy(), k, 1)).reshape((out_ch, k) + self.kernel)
        oh = self._onehot(index, k).reshape(self.groups, 1, in_g, k)
        w = torch.matmul(self._m4().transpose(2, 3), oh)  # (g, per, kk, k)
        return as_float(w.transpose(2, 3) > 0.5).reshape((out_ch, k) + self.kernel)

    def _merged_out(self, index: torch.Tensor, k: int) -> torch.Tensor:
        """``(k, C_in, *kernel)``: some output channel of pattern q keeps tap d from input i."""
        out_ch, in_g = self.mask.shape[:2]
        if self.groups == 1:  # OR over the output channels of each pattern
            return as_float(self._merge(index.numpy(), k, 0)).reshape((k, in_g) + self.kernel)
        oh = self._onehot(index, k).reshape(self.groups, out_ch // self.groups, k)
        m = self._m4().reshape(self.groups, out_ch // self.groups, in_g * self.kk)
        w = torch.matmul(oh.transpose(1, 2), m)  # (g, k, in_g * kk)
        return as_float(w.transpose(0, 1) > 0.5).reshape((k, self.groups * in_g) + self.kernel)

    def _per_input(self, index: torch.Tensor) -> torch.Tensor:
        """``(C_out, C_in/groups)``: the pattern index of the input channel each weight reads."""
        out_ch, in_g = self.mask.shape[:2]
        per = out_ch // self.groups
        return index.reshape(self.groups, 1, in_g).expand(self.groups, per, in_g).reshape(out_ch, in_g)

    def _gather(self, table: torch.Tensor, q_index: torch.Tensor | None, p_index: torch.Tensor | None):
        """Per weight ``(o, c, d)``: ``table[q(o), p(o, c), d]`` (index -1 reads ``False``).
        ``table`` is ``(k_out, k_in, kk)`` bool; a ``None`` index means that axis has size 1.
        Broadcast views where the result repeats (never a stride-0 inner axis)."""
        kq, kp = table.shape[:2]
        ext = torch.zeros((kq + 1, kp + 1, self.kk), dtype=torch.bool)
        ext[:kq, :kp] = table
        out_ch, in_g = self.mask.shape[:2]
        if p_index is None:
            p_index = torch.zeros(self.groups * in_g, dtype=torch.int64)
        if self.groups == 1:
            rows = ext[:, p_index].reshape(kq + 1, in_g * self.kk)  # per output pattern
            q = _uniform(q_index) if q_index is not None else 0
            if q is not None:
                out = rows[q:q + 1].expand(out_ch, in_g * self.kk) if q >= 0 else rows[-1:].expand(out_ch, -1)
            else:
                out = rows.index_select(0, q_index % (kq + 1))
            return out.reshape(self.mask.shape)
        pin = self._per_input(p_index)  # (C_out, in_g)
        q = (q_index if q_index is not None else torch.zeros(out_ch, dtype=torch.int64)) % (kq + 1)
        lin = (q.reshape(-1, 1) * (kp + 1) + pin % (kp + 1)).reshape(-1)
        return ext.reshape(-1, self.kk).index_select(0, lin).reshape(self.mask.shape)

    def _wgrad(self, x: torch.Tensor, k_out: int, g: torch.Tensor) -> torch.Tensor:
        fn = (torch.nn.grad.conv1d_weight, torch.nn.grad.conv2d_weight, torch.nn.grad.conv3d_weight)[self.nd - 1]
        w = fn(x, (k_out, x.shape[1]) + self.kernel, g, self.stride, 0, self.dilation, 1)
        return (w > 0.5).reshape(k_out, x.shape[1], self.kk)

    # -- dense -------------------------------------------------------------------------
    def _conv(self, x, w=None, groups=None):
        fn = (F.conv1d, F.conv2d, F.conv3d)[self.nd - 1]
        w = self.m if w is None else w
        return fn(x, w, None, self.stride, 0, self.dilation, self.groups if groups is None else groups)

    def _grad_input(self, g, w=None, groups=None):
        fn = (torch.nn.grad.conv1d_input, torch.nn.grad.conv2d_input, torch.nn.grad.conv3d_input)[self.nd - 1]
        w = self.m if w is None else w
        return fn(self.in_shape, w, g, self.stride, 0, self.dilation, self.groups if groups is None else groups)

    def _grad_weight(self, x, g):
        fn = (torch.nn.grad.conv1d_weight, torch.nn.grad.conv2d_weight, torch.nn.grad.conv3d_weight)[self.nd - 1]
        return fn(x, self.mask.shape, g, self.stride, 0, self.dilation, self.groups)

    # -- sparse (2-D view; a 1-D conv is a 2-D conv of height 1) -------------------------
    def _prepare_view(self) -> None:
        k = self.kernel
        if self.nd == 1:
            self.k2, self.s2, self.d2 = (1, k[0]), (1, self.stride[0]), (1, self.dilation[0])
        else:
            self.k2, self.s2, self.d2 = k, self.stride, self.dilation

    def _prepare_sparse(self) -> None:
        if hasattr(self, "flat"):
            return
        k = self.kernel
        out_ch, in_g = self.mask.shape[:2]
        kk = self.kk
        o, c, *taps = torch.nonzero(self.mask, as_tuple=True)
        d = torch.zeros_like(o)
        for t, size in zip(taps, k):
            d = d * size + t
        per = out_ch // self.groups
        self.o, self.d = o, d
        self.flat = ((o * in_g + c) * kk + d)  # index into the weight, flattened
        self.r = ((o // per) * in_g + c) * kk + d  # row of the unfolded input

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C*kk, L)`` float32 patches of a padded input (the last two are remembered)."""
        for key, u in self._memo:
            if key is x:
                return u
        y = x.unsqueeze(2) if self.nd == 1 else x
        u = F.unfold(as_float(y), self.k2, self.d2, 0, self.s2)
        self._memo = [(x, u)] + self._memo[:1]
        return u

    def _chunks(self, n_rows: int, length: int):
        step = max(1, _CHUNK // max(1, length))
        for s in range(0, n_rows, step):
            yield slice(s, min(n_rows, s + step))

    # -- the three operations ------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output positions (bool, ``out_shape``) that read a ``True`` input position."""
        pat = self._patterns(x)
        if pat is not None:
            p, index = pat
            if p.shape[1] == 0:
                return torch.zeros(self.out_shape, dtype=torch.bool)
            return self._conv(p, self._merged_in(index, p.shape[1]), 1) > 0.5
        if not _any(x):
            return torch.zeros(self.out_shape, dtype=torch.bool)
        if self._density_route() == "dense":
            return self._conv(as_float(x)) > 0.5
        u = self._unfold(x)  # (N, C*kk, L)
        n, length = u.shape[0], u.shape[2]
        out = torch.zeros((n, self.out_shape[1], length), dtype=_F)
        for i in range(n):
            for sl in self._chunks(self.o.numel(), length):
                out[i].index_add_(0, self.o[sl], u[i].index_select(0, self.r[sl]))
        return (out > 0.5).reshape(self.out_shape)

    def backward(self, co: torch.Tensor) -> torch.Tensor:
        """Input positions (bool, ``in_shape``, padded) read by a ``True`` output position."""
        pat = self._patterns(co)
        if pat is not None:
            q, index = pat
            if q.shape[1] == 0:
                return torch.zeros(self.in_shape, dtype=torch.bool)
            return self._grad_input(q, self._merged_out(index, q.shape[1]), 1) > 0.5
        if not _any(co):
            return torch.zeros(self.in_shape, dtype=torch.bool)
        if self._density_route() == "dense":
            return self._grad_input(as_float(co)) > 0.5
        n = co.shape[0]
        b = as_float(co.reshape(n, co.shape[1], -1))  # (N, C_out, L)
        length = b.shape[2]
        cols = torch.zeros((n, self.in_shape[1] * self.kk, length), dtype=_F)
        for i in range(n):
            for sl in self._chunks(self.o.numel(), length):
                cols[i].index_add_(0, self.r[sl], b[i].index_select(0, self.o[sl]))
        size = self.in_shape[2:] if self.nd == 2 else (1,) + self.in_shape[2:]
        x = F.fold(cols, size, self.k2, self.d2, 0, self.s2)
        return (x > 0.5).reshape(self.in_shape)

    def correlate(self, x: torch.Tensor, co: torch.Tensor, *, kept_only: bool = True) -> torch.Tensor:
        """Per weight: some ``True`` output position reads through its tap a ``True`` input
        position.  Bool, the mask's shape; with ``kept_only`` only kept weights can be
        ``True`` (the others are ``False``)."""
        px, pc = self._patterns(x), self._patterns(co)
        if (px is None) != (pc is None):  # one side has few patterns: the other, channel by channel
            px = px if px is not None else self._identity(x)
            pc = pc if pc is not None else self._identity(co)
        if px is not None and pc is not None:
            (p, pi), (q, qi) = px, pc
            if p.shape[1] == 0 or q.shape[1] == 0:
                return torch.zeros(self.mask.shape, dtype=torch.bool)
            out = self._gather(self._wgrad(p, q.shape[1], q), qi, pi)
            return out & self.mask if kept_only else out
        if not _any(x) or not _any(co):
            return torch.zeros(self.mask.shape, dtype=torch.bool)
        if not self.sparse_correlate or not kept_only:
            out = self._grad_weight(as_float(x), as_float(co)) > 0.5
            return out & self.mask if kept_only else out
        u = self._unfold(x) > 0.5  # (N, C*kk, L)
        n = u.shape[0]
        b = co.reshape(n, co.shape[1], -1)  # (N, C_out, L)
        out = torch.zeros(self.mask.numel(), dtype=torch.bool)
        hit = torch.zeros(self.o.numel(), dtype=torch.bool)
        for i in range(n):
            for sl in self._chunks(self.o.numel(), u.shape[2]):
                hit[sl] |= (u[i].index_select(0, self.r[sl]) & b[i].index_select(0, self.o[sl])).any(1)
        out[self.flat] = hit
        return out.reshape(self.mask.shape)

    def read_any(self, x: torch.Tensor) -> torch.Tensor:
        """Per weight: its tap reads a ``True`` input position at some output position."""
        pat = self._patterns(x)
        if pat is not None:
            p, index = pat
            if p.shape[1] == 0:
                return torch.zeros(self.mask.shape, dtype=torch.bool)
            ones = torch.ones((self.out_shape[0], 1) + self.out_shape[2:], dtype=_F)
            return self._gather(self._wgrad(p, 1, ones), None, index)
        if self.nd == 3:
            return self.correlate(x, torch.ones(self.out_shape, dtype=torch.bool), kept_only=False)
        rows = (self._unfold(x) > 0.5).any(2).any(0)  # (C_in * kk,): channel-major, then tap
        out_ch, in_g = self.mask.shape[:2]
        g = rows.view(self.groups, 1, in_g, self.kk)
        return g.expand(self.groups, out_ch // self.groups, in_g, self.kk).reshape(self.mask.shape)

    def written_any(self, co: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """Per weight: some ``True`` output position of its output channel reads through its
        tap a real input position (``inside``: ``(1, 1, *S_padded)``, ``False`` on zero padding)."""
        pat = self._patterns(co)
        if pat is not None:
            q, index = pat
            if q.shape[1] == 0:
                return torch.zeros(self.mask.shape, dtype=torch.bool)
            ins = as_float(inside).expand((self.in_shape[0], 1) + self.in_shape[2:])
            return self._gather(self._wgrad(ins, q.shape[1], q), index, None)
        if self.nd == 3:
            return self.correlate(inside.expand(self.in_shape).contiguous(), co, kept_only=False)
        y = inside.unsqueeze(2) if self.nd == 1 else inside
        ins = F.unfold(as_float(y), self.k2, self.d2, 0, self.s2)[0]  # (kk, L)
        b = as_float(co.reshape(co.shape[0], co.shape[1], -1))  # (N, C_out, L)
        q = torch.einsum("nol,kl->ok", b, ins) > 0.5  # (C_out, kk)
        view = (q.shape[0], 1) + tuple(self.mask.shape[2:])
        return q.reshape(view).expand(self.mask.shape)


def _uniform(index: torch.Tensor):
    """The one value of ``index`` if all its entries are equal, else ``None``."""
    v = int(index[0]) if index.numel() else 0
    return v if bool((index == v).all()) else None


def _or_reduce(a: np.ndarray, axis: int) -> np.ndarray:
    """``a.any(axis)`` by halving (contiguous ORs; numpy's ``any`` over a middle axis is slow)."""
    a = np.moveaxis(a, axis, 0)
    if a.shape[0] == 0:
        return np.zeros(a.shape[1:], dtype=bool)
    while a.shape[0] > 1:
        h = a.shape[0] // 2
        b = a[:h] | a[h:2 * h]
        if a.shape[0] % 2:
            b[0] |= a[2 * h]
        a = b
    return a[0]


def _any(t: torch.Tensor) -> bool:
    """``bool(t.any())`` (through ``uint8``: torch's reduction over bool is slow)."""
    return t.numel() > 0 and bool(t.view(torch.uint8).max()) if t.dtype == torch.bool else bool(t.any())
