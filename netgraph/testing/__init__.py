"""Testing helpers for connectivity code, shipped with the library.

Verify a differentiable connectivity term (φ_r / φ_l, the TC loss's factors Φ, your own
port to JAX) against exact reachability, with Hypothesis strategies for masked networks and
assertions in the style of ``numpy.testing``.  The data model::

    Net  (plain data: widths, inputs, ops, constants)
     ├── .masks   weight name -> bool mask, PyTorch layout (out, in/groups, *kernel)
     └── .graph   the LayeredGraph  ──reachability──>  accessible / coaccessible units

Strategies (Hypothesis; each yields a ``Net``, i.e. masks *and* graph)
=======================================  ===================================================
``layered_nets``                         layered DAGs: chains, skips, concatenation, flatten
                                         (channels first / last), grouped convs, all-to-all,
                                         one or two inputs, constant seeds (biases)
``masked_mlps``, ``masked_conv_nets``    MLPs / conv nets at a ``sparsity=(lo, hi)`` range
``chain_masks``                          a list of ``(out, in)`` masks (for ``chain``)
``model_specs``, ``pruned_models``       random torch models (``SpecNet``) and their pruning
``net_features``                         what a ``Net`` exercises (for ``event`` / coverage)
=======================================  ===================================================

Corner cases, ready for ``@example(...)``
=======================================  ===================================================
``EMPTY_LAYER``, ``WIDTH_ONE``,          graph level (``Net``); all in ``GRAPH_CORNER_CASES``
``SKIP_AROUND_DEAD``, ``CONSTANT_FED``,
``CONCAT_OF_DEAD``
``TAP_READS_ONLY_PADDING``,              model level, ``(model, input_shape)`` (torch;
``GATE_WITH_DEAD_BRANCH``                a fresh model on each access)
=======================================  ===================================================

Assertions
=======================================  ===================================================
``assert_reachability_equal``            your per-unit vectors vs exact reachability
``assert_effective_equal``               your weights / masks vs the effective weights
``assert_phi_exact``                     search for a network where your φ_r / φ_l is wrong
``assert_factors_exact``                 … where your factors Φ miss or add effective weights
``assert_model_factors_exact``           … on a torch model (gates, padding), masks drawn
``assert_function_preserved``            zeroing what is called dead leaves outputs unchanged
=======================================  ===================================================

Oracles and pictures: ``reachability_oracle``, ``weight_status_oracle``, ``unit_graph``,
``unit_edges`` (networkx), ``dense_chain_product``, ``mlp_forward``; torch, float64:
``tap_probe`` (the tap-level probe: products, gates, padding; constants apart),
``gradient_probe`` (linearised), ``influence_probe`` (random-point gradients),
``masked_copy``; pictures: ``draw_graph``, ``draw_units``, ``draw_weights``.  Settings profiles
``ci``, ``dev``, ``thorough`` are registered on import (``load_profile``).
``netgraph.testing.models`` is the shared model zoo (torchvision-style ResNet, VGG, MobileNet,
DenseNet, ``SpecNet``, …; imports torch).

Importing this package needs Hypothesis only for the strategies, assertions and profiles
(loaded on first use), and torch only for the model helpers.
"""

from __future__ import annotations

import importlib

try:  # register the profiles when Hypothesis is installed (it is a test extra)
    importlib.import_module("._profiles", __name__)
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without hypothesis
    if exc.name != "hypothesis":
        raise

_PUBLIC = {
    "._net": ["Net", "net_features", "EMPTY_LAYER", "WIDTH_ONE", "SKIP_AROUND_DEAD", "CONSTANT_FED", "CONCAT_OF_DEAD",
              "GRAPH_CORNER_CASES"],
    "._strategies": ["layered_nets", "masked_mlps", "masked_conv_nets", "chain_masks", "model_specs",
                     "pruned_models", "LAYER_KINDS"],
    "._assertions": ["assert_reachability_equal", "assert_effective_equal", "assert_phi_exact",
                     "assert_factors_exact", "assert_model_factors_exact", "assert_function_preserved",
                     "prunable_weights"],
    "._oracles": ["reachability_oracle", "weight_status_oracle", "unit_graph", "unit_edges", "sinks",
                  "dense_chain_product", "mlp_forward", "gradient_probe", "influence_probe", "masked_copy"],
    "._probe": ["tap_probe", "ProbeResult"],
    "._picture": ["draw_graph", "draw_units", "draw_weights"],
    "._profiles": ["PROFILES", "register_profiles", "load_profile"],
}
_WHERE = {name: mod for mod, names in _PUBLIC.items() for name in names}
_MODEL_CASES = ("TAP_READS_ONLY_PADDING", "GATE_WITH_DEAD_BRANCH", "MODEL_CORNER_CASES")

__all__ = sorted(_WHERE) + list(_MODEL_CASES)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    if name in _MODEL_CASES:  # built anew on each access: tests may modify them
        from ._cases import MODEL_CASE_BUILDERS

        if name == "MODEL_CORNER_CASES":
            return {"tap reading only padding": MODEL_CASE_BUILDERS["TAP_READS_ONLY_PADDING"](),
                    "gate with a dead branch": MODEL_CASE_BUILDERS["GATE_WITH_DEAD_BRANCH"]()}
        return MODEL_CASE_BUILDERS[name]()
    raise AttributeError(f"module 'netgraph.testing' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
