"""trainer — topologically consistent pruning in PyTorch (tc-pruning, coarse-to-fine, PMP).

Data model: a model stores *latent* weights ŵ; a method (a strategy object) turns them into
soft masks ψ; the effective weights are ``scale·ŵ ⊙ ψ`` (⊙ Φ for TC, ``Φ = φ_l φ_rᵀ`` from
the accessibility networks, which walk the model's netgraph ``LayeredGraph`` — traced with
torch.fx, or declared by the built-in models)::

    latent ŵ ──ψ(ŵ; s)──> soft mask ──⊙ Φ (TC)──> effective weights ──> CE
         └── budget λ((Σ kept − c)/c)², η term, or PMP divergence ──┘

Names are imported lazily (``import trainer`` does not import torch; the CLI reads
:class:`TrainConfig` to build its options).

Public surface
--------------
==========================================  ==================================================
``Pruner``                                  prepare / loss / step / finish / squash on any
                                            traceable model, in your own loop
``TrainConfig``, ``TrainResult``, ``train``  one run: relaxed pruning, crisp finish, audit, save
``Trainer``, ``build_for``, ``fit_inputs``  the loop's parts (single process or torchrun DDP)
``METHODS``, ``method_for``, ``Method``     mp, mp-tc, ctf, coarse, fine, pmp, dense (strategies)
``choose_threads``                          torch's CPU thread count for a model size
``GCN``, ``GCNConfig``, ``gcn_preset``,     the papers' skeleton GCN (presets ``fpha``, ``sbu``)
``GCN_PRESETS``, ``MLP``, ``build_model``   and an MLP; each declares ``graph()``
``Dataset``, ``load_dataset``, ``load_fpha``,  real FPHA / SBU trees, synthetic stand-ins,
``load_sbu``, ``load_digits``,               digits, ``pkg.module:loader``; temporal chunking
``synthetic_skeletons``, ``temporal_chunks``
``band_stop``, ``ctf_mask``, ``coarse_mask``,  mask parametrizations and the budget
``BlockLayout``, ``budget_loss``
``pmp_prior_quantiles``, ``wasserstein1_sorted``  PMP's prior and divergence
``phi``, ``plan_of``, ``tc_factors``,       the accessibility / coaccessibility networks;
``tc_terms``, ``tc_step``, ``phi_st``,      ``tc_step`` is the rank-1 TC step the loop uses
``heaviside_st``, ``straight_through``
``run_ablation``, ``AblationConfig``,       tc-pruning Table 2, coarse-to-fine Tables 3–4
``ablation_markdown``, ``write_ablation``,  (JSON + Markdown)
``measure_speedup``
==========================================  ==================================================
"""

from __future__ import annotations

import importlib

_WHERE = {
    "._ablate": ("AblationConfig", "ablation_markdown", "measure_speedup", "run_ablation", "write_ablation"),
    "._data": ("CHUNKS", "SBU_TEST_SETS", "DataError", "Dataset", "load_dataset", "load_digits", "load_fpha",
               "load_sbu", "load_user_dataset", "synthetic_skeletons", "temporal_chunks"),
    "._config": ("METHODS", "TrainConfig", "config_fields"),
    "._loop": ("Trainer", "TrainResult", "resolve_device", "train", "build_for", "fit_inputs", "choose_threads"),
    "._pruner": ("Pruner", "erk_densities", "erk_allocate"),
    "._methods": ("Method", "method_for"),
    "._masks": ("BlockLayout", "band_stop", "budget_loss", "coarse_mask", "crispness_for_threshold", "ctf_mask",
                "group_gates", "pmp_prior_quantiles", "pmp_threshold", "wasserstein1_sorted"),
    "._models": ("FPHA_EDGES", "GCN", "GCN_PRESETS", "MLP", "SBU_EDGES", "GCNConfig", "build_model", "gcn_preset"),
    "._tc": ("Plan", "heaviside_st", "phi", "phi_st", "plan_of", "straight_through", "tc_factors", "tc_step",
             "tc_terms"),
}
_MODULE_OF = {name: mod for mod, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
