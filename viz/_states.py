"""Unit states as the audit names them: unused, dead, effective (netgraph's ``unit_states``).

``unit_states(graph, reach)`` gives, per group, a ``(width,) int8`` vector: ``UNUSED`` (0,
no kept weight reads or writes the unit: pruned away, not a defect), ``DEAD`` (1, kept
weights touch it but it is not both accessible and coaccessible: they do nothing),
``EFFECTIVE`` (2).  viz draws these three states differently everywhere.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from netgraph import UNIT_DEAD as DEAD_UNIT
from netgraph import UNIT_EFFECTIVE as EFFECTIVE
from netgraph import UNIT_UNUSED as UNUSED
from netgraph import LayeredGraph, Reachability, unit_states

__all__ = ["UNUSED", "DEAD_UNIT", "EFFECTIVE", "unit_states", "input_states", "count_states"]


def input_states(graph: LayeredGraph, reach: Reachability | None = None) -> np.ndarray:
    """States of the input units (the first source): 2 = reaches an output, 1 = has kept
    weights but reaches no output (a dead input), 0 = no kept weight leaves it (unused).

    An input unit is always accessible, so 2 here means coaccessible: its row of ``S_a``
    (inputs × outputs, :func:`netgraph.products`) has a non-zero entry.
    """
    return np.asarray(unit_states(graph, reach)[graph.sources[0]], dtype=np.int8)


def count_states(states: Mapping[str, np.ndarray]) -> dict[str, int]:
    """``{"unused": n, "dead": n, "effective": n}`` over all groups."""
    allv = np.concatenate([np.asarray(v).ravel() for v in states.values()]) if states else np.zeros(0)
    return {"unused": int((allv == UNUSED).sum()), "dead": int((allv == DEAD_UNIT).sum()),
            "effective": int((allv == EFFECTIVE).sum())}
