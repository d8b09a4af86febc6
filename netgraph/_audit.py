"""The audit: per weighted block and in total, how many kept weights are effective, dead, constant.

Contract
--------
Counts are of *weights* (each kernel tap counts), taken from the blocks' ``taps``.

* kept: mask is 1.  accessible: kept and its source unit is accessible.  coaccessible:
  kept and its destination unit is coaccessible.  effective: both.  dead = kept − effective.
* constant: dead weights whose source unit carries a constant (bias / BN shift) and whose
  destination is coaccessible — input-independent, foldable into the next bias.
* Units have one of three states (:func:`~netgraph.unit_states`): **effective**
  (accessible and coaccessible), **dead** (not effective, but a kept weight reads or
  writes it: a defect), **unused** (no kept weight reads or writes it: pruned away, not a
  defect).  dead_units_in / dead_units_out (unused_units_in / unused_units_out): dead
  (unused) units of the block's source / destination group, in the whole network.
  Summary dead_units / unused_units: dead / unused units over the groups that weighted
  blocks write into (each group counted once; inputs are counted by dead_inputs).
* topology (summary): where the graph comes from — ``"traced"`` (torch.fx),
  ``"stored"`` (a topology spec in the checkpoint), ``"inferred-chain"`` (weight shapes
  only: an assumption, stated in ``warnings``) or ``"declared"`` (built in Python).
* resolution (layer): ``"tap"`` when the counts come from per-weight states at the weight's
  full shape (``weight_states``: a traced model, where every kernel tap and position is
  known); ``"channel"`` when they come from unit pairs (a kernel tap follows its channel
  pair: an upper bound on the effective weights, exact for linear layers on vectors).
* sparsity = 1 − kept/weights; effective_sparsity = 1 − effective/weights.
* collapsed (layer): kept > 0 and effective == 0.  collapsed (summary): kept > 0 and no
  output unit is accessible — the outputs no longer depend on the inputs.  On a chain this
  is exactly "kept > 0 and effective == 0"; on a DAG a skip connection can carry the
  signal around a layer whose weights are all dead, and then the network has not collapsed.
* dead_inputs: input units that reach no output; dead_outputs: output units no input reaches.

The report is a frozen dataclass; :meth:`AuditReport.to_dict` gives the stable JSON form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np

from ._graph import LayeredGraph
from ._reach import DEAD, UNUSED, Reachability, WeightStates, reachability, unit_states

__all__ = ["LayerAudit", "AuditSummary", "AuditReport", "audit"]


@dataclass(frozen=True)
class LayerAudit:
    name: str
    shape: tuple[int, ...]
    weights: int
    kept: int
    accessible: int
    coaccessible: int
    effective: int
    dead: int
    constant: int
    dead_units_in: int
    dead_units_out: int
    sparsity: float
    effective_sparsity: float
    collapsed: bool
    unused_units_in: int = 0
    unused_units_out: int = 0
    resolution: str = "channel"


@dataclass(frozen=True)
class AuditSummary:
    weights: int
    kept: int
    effective: int
    dead: int
    constant: int
    sparsity: float
    effective_sparsity: float
    collapsed: bool
    dead_units: int
    dead_inputs: int
    dead_outputs: int
    layers_collapsed: int
    unused_units: int = 0
    topology: str = "declared"


@dataclass(frozen=True)
class AuditReport:
    source: str
    summary: AuditSummary
    layers: tuple[LayerAudit, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        """The stable JSON form (see the README): plain ints, floats, bools, lists, strings."""
        layers = []
        for layer in self.layers:
            d = asdict(layer)
            d["shape"] = list(layer.shape)
            layers.append(d)
        return {"source": self.source, "summary": asdict(self.summary), "layers": layers,
                "warnings": list(self.warnings)}

    def layer(self, name: str) -> LayerAudit:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def has_dead(self) -> bool:
        return self.summary.dead > 0

    def to_text(self) -> str:
        """A per-layer table and a summary, for terminals."""
        head = ("layer", "shape", "weights", "kept", "effective", "dead", "constant",
                "dead in", "dead out", "eff.sparsity")
        rows = [head]
        for l in self.layers:
            rows.append((l.name, "x".join(map(str, l.shape)), f"{l.weights:,}", f"{l.kept:,}",
                         f"{l.effective:,}", f"{l.dead:,}", f"{l.constant:,}", f"{l.dead_units_in:,}",
                         f"{l.dead_units_out:,}",
                         f"{100 * l.effective_sparsity:.2f}%" + (" COLLAPSED" if l.collapsed else "")))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [f"audit of {self.source} (topology: {self.summary.topology})"]
        for k, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        s = self.summary
        pct = (100.0 * s.dead / s.kept) if s.kept else 0.0
        lines += [
            "",
            f"weights {s.weights:,}  kept {s.kept:,}  effective {s.effective:,}  "
            f"dead {s.dead:,} ({pct:.1f}% of kept)  constant {s.constant:,}",
            f"sparsity {100 * s.sparsity:.2f}%  effective sparsity {100 * s.effective_sparsity:.2f}%  "
            f"dead units {s.dead_units:,}  unused units {s.unused_units:,}  "
            f"dead inputs {s.dead_inputs:,}  dead outputs {s.dead_outputs:,}",
        ]
        if s.collapsed:
            lines.append("COLLAPSED: no kept weight is effective; the outputs do not depend on the inputs")
        coarse = [l.name for l in self.layers if l.resolution == "channel" and len(l.shape) > 2]
        if coarse:
            lines.append(f"resolution: {len(coarse)} conv layer(s) audited per channel pair: their effective "
                         "counts are an upper bound (a kernel tap that reads only padding counts as effective); "
                         "trace the model (--model, --input-shape) for the exact per-tap audit")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


def _ratio(a: int, b: int) -> float:
    return float(a) / float(b) if b else 0.0


def audit(graph: LayeredGraph, reach: Reachability | None = None, *, source: str = "<graph>",
          warnings: tuple[str, ...] = (),
          weight_states: Mapping[str, WeightStates] | None = None) -> AuditReport:
    """Audit a graph: counts per weighted block, in forward order, and a summary.

    Examples
    --------
    >>> import numpy as np
    >>> from netgraph import chain
    >>> rep = audit(chain([np.array([[1, 1], [0, 0]]), np.array([[0, 1]])]))
    >>> rep.summary.kept, rep.summary.effective, rep.summary.dead
    (3, 0, 3)
    """
    r = reach if reach is not None else reachability(graph)
    counts, resolution = {}, {}
    for b in graph.weighted_blocks:
        ws = weight_states.get(b.name) if weight_states else None
        if ws is not None:  # per weight, at the weight's full shape (tap level)
            counts[b.name] = {k: int(getattr(ws, k).sum()) for k in _COUNTS}
            resolution[b.name] = "tap"
        else:  # per unit pair (channel level: an upper bound on the effective weights)
            m, taps = r.pair_masks(b), b.taps
            counts[b.name] = {"kept": int(taps.sum()), **{k: int(taps[m[k]].sum()) for k in _COUNTS[1:]}}
    return report_from_counts(graph, r, counts, unit_states(graph, r), source=source, warnings=warnings,
                              resolution=resolution)


_COUNTS = ("kept", "accessible", "coaccessible", "effective", "constant")


def report_from_counts(graph: LayeredGraph, reach: Reachability, counts: Mapping[str, Mapping[str, int]],
                       states: Mapping[str, np.ndarray], *, source: str, warnings: tuple[str, ...] = (),
                       resolution: Mapping[str, str] | None = None) -> AuditReport:
    """The report from per-block weight counts (``kept``, ``accessible``, ``coaccessible``,
    ``effective``, ``constant``) and the unit states: the one place that assembles layers
    and the summary (the in-memory audit and the streaming audit both end here)."""
    dead_in = {g: int((v == DEAD).sum()) for g, v in states.items()}
    unused_in = {g: int((v == UNUSED).sum()) for g, v in states.items()}
    layers = []
    for b in graph.weighted_blocks:
        c = counts[b.name]
        kept, effective = c["kept"], c["effective"]
        layers.append(LayerAudit(
            name=b.name, shape=b.weight_shape, weights=b.weights, kept=kept,
            accessible=c["accessible"], coaccessible=c["coaccessible"],
            effective=effective, dead=kept - effective, constant=c["constant"],
            dead_units_in=dead_in[b.src], dead_units_out=dead_in[b.dst],
            sparsity=1.0 - _ratio(kept, b.weights), effective_sparsity=1.0 - _ratio(effective, b.weights),
            collapsed=kept > 0 and effective == 0,
            unused_units_in=unused_in[b.src], unused_units_out=unused_in[b.dst],
            resolution=(resolution or {}).get(b.name, "channel"),
        ))
    written = list(dict.fromkeys(b.dst for b in graph.weighted_blocks))  # each group once
    weights = sum(l.weights for l in layers)
    kept = sum(l.kept for l in layers)
    effective = sum(l.effective for l in layers)
    r = reach
    summary = AuditSummary(
        weights=weights, kept=kept, effective=effective, dead=kept - effective,
        constant=sum(l.constant for l in layers),
        sparsity=1.0 - _ratio(kept, weights), effective_sparsity=1.0 - _ratio(effective, weights),
        collapsed=kept > 0 and not any(r.accessible[s].any() for s in graph.sinks),
        dead_units=sum(dead_in[g] for g in written),
        dead_inputs=int(sum((~r.coaccessible[s]).sum() for s in graph.sources)),
        dead_outputs=int(sum((~r.accessible[s]).sum() for s in graph.sinks)),
        layers_collapsed=sum(l.collapsed for l in layers),
        unused_units=sum(unused_in[g] for g in written),
        topology=graph.topology,
    )
    return AuditReport(source, summary, tuple(layers), tuple(graph.warnings) + tuple(warnings))
