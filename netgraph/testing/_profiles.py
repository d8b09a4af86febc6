"""Hypothesis settings profiles ``ci``, ``dev`` and ``thorough``, registered on import.

==========  ============  ====================================================================
profile     max_examples  use
==========  ============  ====================================================================
``ci``      100           deterministic (``derandomize``), no example database: CI and the
                          project's own suite (``tests/conftest.py`` loads it by default)
``dev``     25            quick local runs; random, with the example database
``thorough`` 1000         before a release or after touching φ; random, with the database
==========  ============  ====================================================================

All three have no deadline (a first call into torch can take a second) and do not fail
on slow data generation.  Load one with ``settings.load_profile("ci")`` or
``netgraph.testing.load_profile("ci")``, or pass ``--hypothesis-profile=ci`` to pytest.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

__all__ = ["PROFILES", "register_profiles", "load_profile"]

#: name → keyword arguments of :class:`hypothesis.settings`.
PROFILES = {
    "ci": dict(max_examples=100, derandomize=True, database=None, print_blob=True),
    "dev": dict(max_examples=25),
    "thorough": dict(max_examples=1000),
}
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def register_profiles() -> None:
    """Register ``ci``, ``dev`` and ``thorough`` with Hypothesis (idempotent); load none."""
    for name, kwargs in PROFILES.items():
        settings.register_profile(name, **_COMMON, **kwargs)


def load_profile(name: str) -> None:
    """Load one of the profiles (``"ci"``, ``"dev"``, ``"thorough"``) or any registered one."""
    register_profiles()
    settings.load_profile(name)


register_profiles()
