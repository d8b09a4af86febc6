"""Test configuration: the Hypothesis profile (``ci`` by default: deterministic; the profiles
are registered by ``netgraph.testing``), the Agg backend, the ``gpu`` marker."""

import os

import matplotlib

matplotlib.use("Agg")

from netgraph.testing import load_profile  # noqa: E402  (registers ci / dev / thorough)

load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where CUDA is not available (CPU CI, this machine)."""
    import pytest

    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA (marker gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
