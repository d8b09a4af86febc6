"""Boolean convolutions for the tap-level pass, dense or sparse by the mask's density.

Contract
--------
:class:`BoolConv` is one conv layer seen on 0/1 position maps of its *padded* input
(``(N, C_in, *S_padded)``; the padding itself is applied by the caller, so zero padding reads
nothing and reflect / replicate / circular padding read the positions they copy):

* :meth:`forward` — output positions that read a marked input position through a kept tap;
* :meth:`backward` — input positions read through a kept tap by a marked output position;
* :meth:`correlate` — per weight ``(o, i, tap d)``: some marked output position of ``o``
  reads through ``d`` a marked input position of ``i`` (the weight-gradient correlation).

Dense route (density ≥ ``SPARSE_BELOW``, or 3-D convs): torch's own conv, conv-input and
conv-weight gradients on float32 0/1 maps, thresholded at 0.  Sparse route (1-D and 2-D):
the input unfolded once (``F.unfold``), then gathers / scatter-adds over the kept taps only,
so the cost follows the number of kept weights, not the dense layer.  Both routes give the
same booleans (a test checks them against each other).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BoolConv", "SPARSE_BELOW"]

SPARSE_BELOW = 0.05  # kept fraction under which the sparse route is used
CORRELATE_SPARSE_BELOW = 0.05  # ... under which the per-weight correlation visits kept taps only
_CHUNK = 1 << 22  # elements per gathered block (bounds the memory of the sparse route)
_F = torch.float32


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
    route : {"auto", "dense", "sparse"}
    """

    def __init__(self, mask: torch.Tensor, stride, dilation, groups: int, in_shape, out_shape,
                 route: str = "auto") -> None:
        self.mask = mask
        self.nd = mask.dim() - 2
        self.stride, self.dilation = _tuple(stride, self.nd), _tuple(dilation, self.nd)
        self.groups = int(groups)
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.m = mask.to(_F)
        density = int(torch.count_nonzero(mask)) / max(1, mask.numel())
        if route == "auto":
            route = "sparse" if density < SPARSE_BELOW and self.nd in (1, 2) else "dense"
        if route == "sparse" and self.nd not in (1, 2):
            route = "dense"
        self.route = route
        # the correlation is wanted for kept weights only (a separate threshold: measured on
        # this project's shared CPU, 0.25 was no better than 0.05 — within the noise)
        self.sparse_correlate = self.nd in (1, 2) and (route == "sparse" or density < CORRELATE_SPARSE_BELOW)
        self._memo: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.nd in (1, 2):
            self._prepare_view()
        if self.sparse_correlate:
            self._prepare_sparse()

    # -- dense -------------------------------------------------------------------------
    def _conv(self, x):
        fn = (F.conv1d, F.conv2d, F.conv3d)[self.nd - 1]
        return fn(x, self.m, None, self.stride, 0, self.dilation, self.groups)

    def _grad_input(self, g):
        fn = (torch.nn.grad.conv1d_input, torch.nn.grad.conv2d_input, torch.nn.grad.conv3d_input)[self.nd - 1]
        return fn(self.in_shape, self.m, g, self.stride, 0, self.dilation, self.groups)

    def _grad_weight(self, x, g):
        fn = (torch.nn.grad.conv1d_weight, torch.nn.grad.conv2d_weight, torch.nn.grad.conv3d_weight)[self.nd - 1]
        return fn(x, self.m.shape, g, self.stride, 0, self.dilation, self.groups)

    # -- sparse (2-D view; a 1-D conv is a 2-D conv of height 1) -------------------------
    def _prepare_view(self) -> None:
        k = tuple(self.mask.shape[2:])
        if self.nd == 1:
            self.k2, self.s2, self.d2 = (1, k[0]), (1, self.stride[0]), (1, self.dilation[0])
        else:
            self.k2, self.s2, self.d2 = k, self.stride, self.dilation
        self.kk = int(np.prod(k))

    def _prepare_sparse(self) -> None:
        k = tuple(self.mask.shape[2:])
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
        u = F.unfold(y.to(_F), self.k2, self.d2, 0, self.s2)
        self._memo = [(x, u)] + self._memo[:1]
        return u

    def _chunks(self, n_rows: int, length: int):
        step = max(1, _CHUNK // max(1, length))
        for s in range(0, n_rows, step):
            yield slice(s, min(n_rows, s + step))

    # -- the three operations ------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output positions (bool, ``out_shape``) that read a ``True`` input position."""
        if not bool(x.any()):
            return torch.zeros(self.out_shape, dtype=torch.bool)
        if self.route == "dense":
            return self._conv(x.to(_F)) > 0
        u = self._unfold(x)  # (N, C*kk, L)
        n, length = u.shape[0], u.shape[2]
        out = torch.zeros((n, self.out_shape[1], length), dtype=_F)
        for i in range(n):
            for sl in self._chunks(self.o.numel(), length):
                out[i].index_add_(0, self.o[sl], u[i].index_select(0, self.r[sl]))
        return (out > 0).reshape(self.out_shape)

    def backward(self, co: torch.Tensor) -> torch.Tensor:
        """Input positions (bool, ``in_shape``, padded) read by a ``True`` output position."""
        if not bool(co.any()):
            return torch.zeros(self.in_shape, dtype=torch.bool)
        if self.route == "dense":
            return self._grad_input(co.to(_F)) > 0
        n = co.shape[0]
        b = co.reshape(n, co.shape[1], -1).to(_F)  # (N, C_out, L)
        length = b.shape[2]
        cols = torch.zeros((n, self.in_shape[1] * self.kk, length), dtype=_F)
        for i in range(n):
            for sl in self._chunks(self.o.numel(), length):
                cols[i].index_add_(0, self.r[sl], b[i].index_select(0, self.o[sl]))
        size = self.in_shape[2:] if self.nd == 2 else (1,) + self.in_shape[2:]
        x = F.fold(cols, size, self.k2, self.d2, 0, self.s2)
        return (x > 0).reshape(self.in_shape)

    def correlate(self, x: torch.Tensor, co: torch.Tensor, *, kept_only: bool = True) -> torch.Tensor:
        """Per weight: some ``True`` output position reads through its tap a ``True`` input
        position.  Bool, the mask's shape; with ``kept_only`` (sparse route) only kept weights
        are computed (the others are ``False``)."""
        if not bool(x.any()) or not bool(co.any()):
            return torch.zeros(self.mask.shape, dtype=torch.bool)
        if not self.sparse_correlate or not kept_only:
            return self._grad_weight(x.to(_F), co.to(_F)) > 0
        u = self._unfold(x) > 0  # (N, C*kk, L)
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
        if self.nd == 3:
            return self.correlate(x, torch.ones(self.out_shape, dtype=torch.bool), kept_only=False)
        rows = (self._unfold(x) > 0).any(2).any(0)  # (C_in * kk,): channel-major, then tap
        out_ch, in_g = self.mask.shape[:2]
        g = rows.view(self.groups, 1, in_g, self.kk)
        return g.expand(self.groups, out_ch // self.groups, in_g, self.kk).reshape(self.mask.shape)

    def written_any(self, co: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """Per weight: some ``True`` output position of its output channel reads through its
        tap a real input position (``inside``: ``(1, 1, *S_padded)``, ``False`` on zero padding)."""
        if self.nd == 3:
            return self.correlate(inside.expand(self.in_shape).contiguous(), co, kept_only=False)
        y = inside.unsqueeze(2) if self.nd == 1 else inside
        ins = F.unfold(y.to(_F), self.k2, self.d2, 0, self.s2)[0]  # (kk, L)
        b = co.reshape(co.shape[0], co.shape[1], -1).to(_F)  # (N, C_out, L)
        q = torch.einsum("nol,kl->ok", b, ins) > 0  # (C_out, kk)
        view = (q.shape[0], 1) + tuple(self.mask.shape[2:])
        return q.reshape(view).expand(self.mask.shape)
