"""trainer — topologically consistent pruning in PyTorch (tc-pruning, coarse-to-fine, PMP).

Data model: a model stores *latent* weights ŵ; a mask parametrization turns them into soft
masks ψ; the effective weights are ``scale·ŵ ⊙ ψ`` (⊙ Φ for TC, ``Φ = φ_l φ_rᵀ`` from
the accessibility networks, which walk the model's own netgraph ``LayeredGraph``)::

    latent ŵ ──ψ(ŵ; s)──> soft mask ──⊙ Φ (TC)──> effective weights ──> CE
         └── budget λ((Σ kept − c)/c)², η term, or PMP divergence ──┘

Public surface
--------------
==========================================  ==================================================
``TrainConfig``, ``TrainResult``, ``train``  one run: relaxed pruning, crisp finish, audit, save
``METHODS``                                 mp, mp-tc, ctf, coarse, fine, pmp, dense
``GCN``, ``GCNConfig``, ``gcn_preset``,     the papers' skeleton GCN (presets ``fpha``, ``sbu``)
``GCN_PRESETS``, ``MLP``, ``build_model``   and an MLP; each declares ``graph()``
``Dataset``, ``load_dataset``, ``load_fpha``,  real FPHA / SBU trees, synthetic stand-ins,
``load_sbu``, ``load_digits``,               digits; temporal chunking (M = 32)
``synthetic_skeletons``, ``temporal_chunks``
``band_stop``, ``ctf_mask``, ``coarse_mask``,  mask parametrizations and the budget
``BlockLayout``, ``budget_loss``
``pmp_prior_quantiles``, ``wasserstein1_sorted``  PMP's prior and divergence
``phi``, ``plan_of``, ``tc_factors``,       the accessibility / coaccessibility networks
``tc_terms``, ``heaviside_st``,
``straight_through``
``run_ablation``, ``AblationConfig``,       tc-pruning Table 2, coarse-to-fine Tables 3–4
``ablation_markdown``, ``write_ablation``,  (JSON + Markdown)
``measure_speedup``
==========================================  ==================================================
"""

from ._ablate import AblationConfig, ablation_markdown, measure_speedup, run_ablation, write_ablation
from ._data import (
    CHUNKS,
    SBU_TEST_SETS,
    DataError,
    Dataset,
    load_dataset,
    load_digits,
    load_fpha,
    load_sbu,
    synthetic_skeletons,
    temporal_chunks,
)
from ._loop import METHODS, Trainer, TrainConfig, TrainResult, erk_densities, resolve_device, train
from ._masks import (
    BlockLayout,
    band_stop,
    budget_loss,
    coarse_mask,
    crispness_for_threshold,
    ctf_mask,
    group_gates,
    pmp_prior_quantiles,
    pmp_threshold,
    wasserstein1_sorted,
)
from ._models import FPHA_EDGES, GCN, GCN_PRESETS, MLP, SBU_EDGES, GCNConfig, build_model, gcn_preset
from ._tc import Plan, heaviside_st, phi, plan_of, straight_through, tc_factors, tc_terms

__all__ = [
    "AblationConfig",
    "ablation_markdown",
    "measure_speedup",
    "run_ablation",
    "write_ablation",
    "CHUNKS",
    "SBU_TEST_SETS",
    "DataError",
    "Dataset",
    "load_dataset",
    "load_digits",
    "load_fpha",
    "load_sbu",
    "synthetic_skeletons",
    "temporal_chunks",
    "METHODS",
    "Trainer",
    "TrainConfig",
    "TrainResult",
    "erk_densities",
    "resolve_device",
    "train",
    "BlockLayout",
    "band_stop",
    "budget_loss",
    "coarse_mask",
    "crispness_for_threshold",
    "ctf_mask",
    "group_gates",
    "pmp_prior_quantiles",
    "pmp_threshold",
    "wasserstein1_sorted",
    "FPHA_EDGES",
    "GCN",
    "GCN_PRESETS",
    "MLP",
    "SBU_EDGES",
    "GCNConfig",
    "build_model",
    "gcn_preset",
    "Plan",
    "heaviside_st",
    "phi",
    "plan_of",
    "straight_through",
    "tc_factors",
    "tc_terms",
]
