"""The one exception hierarchy of the project.

Every error a user can cause is a :class:`NetgraphError`.  Subclasses read like
diagnoses; those that callers would naturally catch as ``ValueError`` also subclass
it.  Messages follow one pattern: *what* (file / tensor), *which rule*, *what was
found*, and, where there is one, *the fix*.  The CLI prints ``netgraph: error: <message>``
and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "show",
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


_SHOW_LIMIT = 120


def _escape(text: str) -> str:
    """Escape every character a terminal would act on (newlines, ANSI ``ESC``, other C0/C1
    controls, bidi overrides, lone surrogates from undecodable file-name bytes) as
    ``\\n`` / ``\\x1b`` / ``\\u202e`` / ``\\udcff``; printable text is kept as it is."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            r = repr(ch)[1:-1]  # '\n', '\x1b', '\udcff', ...
            out.append(r if r.startswith("\\") else f"\\u{ord(ch):04x}")
    return "".join(out)


def show(name: object, limit: int = _SHOW_LIMIT) -> str:
    """``name`` made safe for a one-line message: quoted, control characters escaped, and cut
    to ``limit`` characters (a hostile key can be megabytes long).

    >>> show("fc1.weight")
    "'fc1.weight'"
    >>> show("a\\nb\\x1b[2J")
    "'a\\\\nb\\\\x1b[2J'"
    """
    text = name if isinstance(name, str) else str(name)
    text = _escape(text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return "'" + text.replace("'", "\\'") + "'"


class NetgraphError(Exception):
    """Base class of every error netgraph raises on purpose.

    ``str(error)`` is always one terminal-safe line: newlines, ANSI escape sequences and other
    control characters that reach a message through a file or key name are escaped.
    """

    def __str__(self) -> str:
        return _escape(super().__str__())


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
