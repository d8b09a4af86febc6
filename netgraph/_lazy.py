"""Modules imported on first use, so that ``import netgraph`` (and ``netgraph --version``,
``netgraph audit small.safetensors``) pay only for what they run.

``from ._lazy import sparse as sp`` gives an object whose first attribute access imports
``scipy.sparse``; type annotations stay strings (``from __future__ import annotations``).
"""

from __future__ import annotations

import importlib

__all__ = ["sparse"]


class _LazyModule:
    """Stands for module ``name``; imports it when an attribute is first asked for."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


sparse = _LazyModule("scipy.sparse")
