"""The error viz raises for bad input: part of netgraph's one hierarchy."""

from __future__ import annotations

from netgraph.errors import NetgraphError

__all__ = ["BadPlotInput"]


class BadPlotInput(NetgraphError, ValueError):
    """Data given to a figure breaks a rule (unknown layer, crop outside the mask, bad JSON row)."""
