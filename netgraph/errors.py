"""The one exception hierarchy of the project.

Every error a user can cause is a :class:`NetgraphError`.  Subclasses read like
diagnoses; those that callers would naturally catch as ``ValueError`` also subclass
it.  Messages follow one pattern: *what* (file / tensor), *which rule*, *what was
found*, and, where there is one, *the fix*.  The CLI prints ``netgraph: error: <message>``
and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "NetgraphError",
    "InvalidGraph",
    "HasACycle",
    "BadCheckpoint",
    "UnsafeCheckpoint",
    "ChainNotInferable",
    "TraceFailed",
    "VerificationFailed",
    "TrainingDiverged",
]


class NetgraphError(Exception):
    """Base class of every error netgraph raises on purpose."""


class InvalidGraph(NetgraphError, ValueError):
    """A layered graph violates an invariant (widths chain, binary masks, known groups)."""


class HasACycle(InvalidGraph):
    """The connection blocks form a cycle; a network graph must be a DAG."""


class BadCheckpoint(NetgraphError, ValueError):
    """A checkpoint file or tensor cannot be read or breaks a rule (NaN, non-binary mask, ...)."""


class UnsafeCheckpoint(BadCheckpoint):
    """A checkpoint would need code execution or unbounded memory to load; it is refused."""


class ChainNotInferable(NetgraphError, ValueError):
    """The weights' shapes do not determine one forward order; the model code is needed."""


class TraceFailed(NetgraphError, RuntimeError):
    """torch.fx could not trace the model (data-dependent control flow, unsupported call)."""


class VerificationFailed(NetgraphError):
    """A repair changed the model's outputs beyond the tolerance."""


class TrainingDiverged(NetgraphError, FloatingPointError):
    """The training loss or the weights became NaN or infinite."""
