"""Matching a checkpoint's keys to a model's: which prefix, if any, the file's keys carry.

A state_dict saved from ``DataParallel`` / DDP has ``module.`` in front of every key, one
from ``torch.compile`` ``_orig_mod.``, Lightning's ``model.``; they can stack
(``module._orig_mod.``).  :func:`match_prefix` finds the one reading under which the file's
keys are exactly the model's (prune pairs ``X_orig`` / ``X_mask`` count as ``X``), or says in
one line which keys fit nothing.  Only the standard library is imported.
"""

from __future__ import annotations

from ..errors import BadCheckpoint

__all__ = ["KNOWN_PREFIXES", "match_prefix", "short_list"]

KNOWN_PREFIXES = ("module.", "_orig_mod.", "model.")


def short_list(items, n: int = 3) -> str:
    """``'a', 'b', 'c' (+5 more)`` with each name cut to 60 characters: one readable line."""
    items = list(items)
    shown = ", ".join(repr(s if len(s) <= 60 else s[:57] + "...") for s in items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _bases(keys) -> set[str]:
    """Key names with torch's prune suffixes folded: ``fc.weight_orig`` → ``fc.weight``."""
    out = set()
    for k in keys:
        for suffix in ("_orig", "_mask"):
            if k.endswith(suffix) and (k[: -len(suffix)] + ("_mask" if suffix == "_orig" else "_orig")) in keys:
                k = k[: -len(suffix)]
                break
        out.add(k)
    return out


def _prefix_candidates(keys, given: str | None) -> list[str]:
    if given is not None:
        return [given]
    cands, frontier = [""], [""]
    while frontier:
        nxt = []
        for p in frontier:
            for tok in KNOWN_PREFIXES:
                q = p + tok
                if keys and all(k.startswith(q) for k in keys):
                    cands.append(q)
                    nxt.append(q)
        frontier = nxt[:8]
    return cands


def match_prefix(path: str, spec: str, keys: list[str], model_keys: set[str], given: str | None) -> str:
    """The prefix whose removal makes the checkpoint's keys the model's (one line if none)."""
    best = None
    fits = []
    for p in _prefix_candidates(keys, given):
        stripped = _bases({k[len(p):] if k.startswith(p) else k for k in keys})
        extra, missing = sorted(stripped - model_keys), sorted(model_keys - stripped)
        if not extra and not missing:
            fits.append(p)
        score = len(extra) + len(missing)
        if best is None or score < best[0]:
            best = (score, p, extra, missing)
    if len(fits) == 1 or (fits and fits[0] == ""):
        return fits[0]
    if len(fits) > 1:
        raise BadCheckpoint(f"{path}: the keys fit the model from {spec} after removing any of the prefixes "
                            f"{short_list(fits)}; choose one with --key-prefix")
    _, p, extra, missing = best
    parts = []
    if extra:
        parts.append(f"{len(extra)} key(s) match nothing in the model (first {short_list(extra)})")
    if missing:
        parts.append(f"{len(missing)} model entr{'y has' if len(missing) == 1 else 'ies have'} no key "
                     f"(first {short_list(missing)})")
    how = f" after removing the prefix {p!r}" if p else ""
    raise BadCheckpoint(f"{path}: does not fit the model from {spec}{how}: {'; '.join(parts)}; "
                        "if the keys carry another prefix, give --key-prefix")
