"""Issue 3 measurements: audit, prune and compact the test architectures at 90 / 99 / 99.9 %.

For each architecture in ``tests/models.py`` (MLP, ResNet-, VGG-BN-, MobileNetV2-,
DenseNet-style, and the full-size ResNet-18 layout at 224x224), at initialisation with
randomised BatchNorm statistics (so BN shifts are non-zero, as after training), pruned with
``torch.nn.utils.prune.global_unstructured`` (random and L1 magnitude), it prints one
Markdown row: kept / effective / dead / constant weights, the trace + audit time, the
largest relative output change of ``prune_model`` and ``compact_model`` (float64), the
parameters before / after compaction and the measured CPU speedup (median of repeats).
Run from the repository root:

    python -m benchmarks.models_audit [--repeats 30] [--seed 0] [--only resnet18]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
from torch.nn.utils import prune

from netgraph import compact_model, prune_model, trace_model, verify
from netgraph.testing.models import MODELS, randomize_bn, resnet18_like

ARCHS = dict(MODELS)
ARCHS["resnet18"] = (resnet18_like, (1, 3, 224, 224))
METHODS = {"random": prune.RandomUnstructured, "magnitude": prune.L1Unstructured}


def build(name: str, method: str, rate: float, seed: int):
    factory, shape = ARCHS[name]
    torch.manual_seed(seed)
    model = randomize_bn(factory(), torch.Generator().manual_seed(seed)).eval()
    params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    prune.global_unstructured(params, pruning_method=METHODS[method], amount=rate)
    return model, shape


def row(name: str, method: str, rate: float, seed: int, repeats: int) -> str:
    model, shape = build(name, method, rate, seed)
    t0 = time.perf_counter()
    traced = trace_model(model, shape)
    rep = traced.audit(source=name)
    seconds = time.perf_counter() - t0
    s = rep.summary
    d_prune = verify(model, prune_model(model, traced), shape, trials=2)
    c = compact_model(model, traced, repeats=repeats)
    d_compact = verify(model, c.model, shape, trials=2)
    pct = 100.0 * s.dead / s.kept if s.kept else 0.0
    return (f"| {name} | {method} | {100 * rate:g} % | {s.weights:,} | {s.kept:,} | {s.effective:,} | "
            f"{s.dead:,} ({pct:.0f} %) | {s.constant:,} | {seconds:.2f} | {d_prune:.1e} | {d_compact:.1e} | "
            f"{c.params_before:,} | {c.params_after:,} | {c.speedup:.2f}x |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed forward passes per model (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="architectures to run (default: all)")
    parser.add_argument("--rates", type=float, nargs="*", default=[0.9, 0.99, 0.999])
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, seed {args.seed}, "
          f"{args.repeats} timed repeats\n")
    print("| model | pruning | rate | weights | kept | effective | dead (of kept) | constant | trace+audit s | "
          "prune Δ | compact Δ | params | compact params | speedup |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.only or list(ARCHS):
        for method in METHODS:
            for rate in args.rates:
                print(row(name, method, rate, args.seed, args.repeats), flush=True)


if __name__ == "__main__":
    main()
