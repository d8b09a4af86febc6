"""Model-level corner cases: ``(model, input_shape)`` pairs, ready for ``@example(...)``.

Contract
--------
These are the corner cases a :class:`~netgraph.LayeredGraph` cannot state by itself,
because they depend on what the model computes:

* ``TAP_READS_ONLY_PADDING``: a 3×3 conv (padding 1) on a 1×1 image; output channel 0
  keeps only a corner tap, which multiplies zero padding at every position, so channel 0
  is identically zero and its kept tap, and the head weight reading it, are dead.
  Channel 1 keeps the centre tap: effective.
* ``GATE_WITH_DEAD_BRANCH``: ``head(value(x) * sigmoid(gate(x)))`` with ``value``'s mask
  all zero.  The product is zero, so every kept weight of ``gate`` is dead (not
  coaccessible) although ``sigmoid`` never vanishes, and ``head`` is dead (not
  accessible).  Reading the product as a sum calls the gate and the head effective.

Neither model has a bias, so "influences the output" and "effective" coincide: the
tap-level probe (:func:`~netgraph.testing.tap_probe`) and the random-point gradient probe
(:func:`~netgraph.testing.influence_probe`) are both their oracles.  Weights are in torch's prune
format (``weight_orig`` random normal, ``weight_mask`` the mask).  Each access of the
module attribute builds a fresh model (``netgraph.testing.GATE_WITH_DEAD_BRANCH``), so
tests may modify it.  Importing this module imports torch.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import prune

__all__ = ["Gated", "tap_reads_only_padding", "gate_with_dead_branch", "MODEL_CASE_BUILDERS"]


def _prune(mod: nn.Module, mask, gen: torch.Generator) -> None:
    with torch.no_grad():
        mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen))
    prune.custom_from_mask(mod, "weight", torch.as_tensor(mask, dtype=torch.float32))


class Gated(nn.Module):
    """``head(value(x) * sigmoid(gate(x)))``: a gated linear unit, no biases."""

    def __init__(self, n_in: int = 3, hidden: int = 2, n_out: int = 1) -> None:
        super().__init__()
        self.value = nn.Linear(n_in, hidden, bias=False)
        self.gate = nn.Linear(n_in, hidden, bias=False)
        self.head = nn.Linear(hidden, n_out, bias=False)

    def forward(self, x):
        return self.head(self.value(x) * torch.sigmoid(self.gate(x)))


def gate_with_dead_branch() -> tuple[nn.Module, tuple[int, ...]]:
    """``(Gated model, (2, 3))`` whose value branch is all pruned; see the module docstring."""
    gen = torch.Generator().manual_seed(0)
    model = Gated(3, 2, 1)
    _prune(model.value, torch.zeros(2, 3), gen)
    _prune(model.gate, torch.ones(2, 3), gen)
    _prune(model.head, torch.ones(1, 2), gen)
    return model.eval(), (2, 3)


def tap_reads_only_padding() -> tuple[nn.Module, tuple[int, ...]]:
    """``(conv 3×3 pad 1 → flatten → linear, (1, 1, 1, 1))``; see the module docstring."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(2, 1, bias=False))
    mask = torch.zeros(2, 1, 3, 3)
    mask[0, 0, 0, 0] = 1  # a corner tap: on a 1x1 image it reads only padding
    mask[1, 0, 1, 1] = 1  # the centre tap reads the pixel
    _prune(model[0], mask, gen)
    _prune(model[2], torch.ones(1, 2), gen)
    return model.eval(), (1, 1, 1, 1)


#: attribute name → builder (``netgraph.testing`` builds one on each access).
MODEL_CASE_BUILDERS = {
    "TAP_READS_ONLY_PADDING": tap_reads_only_padding,
    "GATE_WITH_DEAD_BRANCH": gate_with_dead_branch,
}
