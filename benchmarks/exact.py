"""Issue 8: channel-level vs tap-level audit vs the independent pixel-level probe, and the cost.

For VGG-16-BN (32x32) at 99.7 / 99.9 % random and resnet18, mobilenet_v2,
shufflenet_v2_x0_5, efficientnet_b0, densenet121 (torchvision's when it imports, else the
local copies in ``netgraph.testing.models``), initialised with seed 0 and randomised
BatchNorm statistics (non-zero shifts, as after training), it prints one Markdown row per
model: kept weights, effective weights at channel level, at tap level and by the probe
(``netgraph.testing.tap_probe``), the layers where tap level and probe differ (must be
0) and where channel and tap level differ, and the time of each.  Then the cost of the
tap-level pass on resnet18 at 1x3x224x224 against one float32 forward + backward of the same
model on the same input, measured in the same process (median of ``--repeats``).

Run from the repository root (torchvision optional):

    OMP_NUM_THREADS=1 python -m benchmarks.exact [--repeats 3] [--only NAME] [--local]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import prune

from netgraph import trace_model
from netgraph.testing import tap_probe
from netgraph.testing.models import TORCHVISION_LIKE, randomize_bn, resnet18_like

# name, input shape, pruning method, rate
CASES = [
    ("vgg16_bn_cifar", (1, 3, 32, 32), "random", 0.997),
    ("vgg16_bn_cifar", (1, 3, 32, 32), "random", 0.999),
    ("resnet18", (1, 3, 64, 64), "random", 0.995),
    ("mobilenet_v2", (1, 3, 64, 64), "layerwise-magnitude", 0.9),
    ("shufflenet_v2_x0_5", (1, 3, 64, 64), "layerwise-magnitude", 0.9),
    ("efficientnet_b0", (1, 3, 64, 64), "layerwise-magnitude", 0.9),
    ("efficientnet_b0", (1, 3, 64, 64), "random", 0.99),
    ("densenet121", (1, 3, 64, 64), "random", 0.99),
]


def factory(name: str, local: bool):
    """torchvision's model when importable (and not ``local``), else the local copy."""
    if not local and name != "vgg16_bn_cifar":
        try:
            import torchvision

            return getattr(torchvision.models, name), "torchvision " + torchvision.__version__
        except ImportError:
            pass
    return TORCHVISION_LIKE[name][0], "local copy"


def prunable(model):
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def build(name: str, method: str, rate: float, local: bool, seed: int = 0):
    make, origin = factory(name, local)
    torch.manual_seed(seed)
    model = make().eval() if origin == "local copy" else make(weights=None).eval()
    randomize_bn(model, torch.Generator().manual_seed(seed))
    if method == "random":
        prune.global_unstructured(prunable(model), pruning_method=prune.RandomUnstructured, amount=rate)
    else:  # layerwise magnitude: every layer keeps its own largest (1 - rate)
        for m, p in prunable(model):
            prune.l1_unstructured(m, p, amount=rate)
    return model, origin


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def row(name, shape, method, rate, local) -> str:
    model, origin = build(name, method, rate, local)
    traced, t_trace = timed(lambda: trace_model(model, shape))
    channel, t_channel = timed(lambda: traced.audit(resolution="channel"))
    tap, t_tap = timed(lambda: traced.audit())
    probe, t_probe = timed(lambda: tap_probe(model, shape))
    states = traced.weight_states()
    probe_eff = sum(int(v.sum()) for v in probe.values())
    differ = [k for k in probe if not np.array_equal(states[k].effective, probe[k])]
    differ_cst = [k for k in probe if not np.array_equal(states[k].constant, probe.constant[k])]
    ch = {layer.name: layer.effective for layer in channel.layers}
    tp = {layer.name: layer.effective for layer in tap.layers}
    coarse = sum(ch[k] != tp[k] for k in tp)
    layers = len(tap.layers)
    s = tap.summary
    return (f"| {name} ({origin}) | {'x'.join(map(str, shape[1:]))} | {method} {100 * rate:g} % | "
            f"{layers} | {s.kept:,} | {channel.summary.effective:,} | {s.effective:,} | {probe_eff:,} | "
            f"{len(differ)} / {len(differ_cst)} | {coarse} / {layers} | "
            f"{t_trace + t_channel:.2f} | {t_trace + t_tap:.2f} | {t_probe:.2f} |")


def speed(repeats: int, local: bool) -> tuple[str, list[str]]:
    """Tap-level pass vs one float32 forward + backward, resnet18 at 1x3x224x224, one process
    (torchvision's resnet18 when it imports and not ``local``, else the local copy)."""
    lines = []
    x = torch.randn(1, 3, 224, 224)
    make, origin = factory("resnet18", local)
    trace_model(resnet18_like(), (1, 3, 64, 64)).audit()  # warm up (imports, allocator)
    for rate in (0.0, 0.9, 0.99, 0.999):
        torch.manual_seed(0)
        model = make() if origin == "local copy" else make(weights=None)
        if rate:
            prune.global_unstructured(prunable(model), pruning_method=prune.RandomUnstructured, amount=rate)
        fb, trace, taps, audit = [], [], [], []
        for _ in range(repeats):
            model.train()
            t0 = time.perf_counter()
            model(x).sum().backward()
            fb.append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
            traced, t = timed(lambda: trace_model(model, x.shape))
            trace.append(t)
            _, t = timed(traced.taps)
            taps.append(t)
            _, t = timed(traced.audit)
            audit.append(t)
        f, tr, tp, au = (statistics.median(v) for v in (fb, trace, taps, audit))
        each = [t / b for t, b in zip(taps, fb)]  # per repeat: the two measured back to back
        lines.append(f"| {100 * rate:g} % | {f:.3f} | {tr:.3f} | {tp:.3f} | {au:.3f} | "
                     f"**{tp / f:.2f}** ({min(each):.2f}–{max(each):.2f}) | {(tr + tp + au) / f:.2f} |")
    return origin, lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the speed comparison (median)")
    parser.add_argument("--only", default=None, help="one model name, or 'speed'")
    parser.add_argument("--local", action="store_true", help="use the local copies even if torchvision imports")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    warm, _ = build("vgg16_bn_cifar", "random", 0.999, True)  # imports and allocator, untimed
    trace_model(warm, (1, 3, 32, 32)).audit()
    tap_probe(warm, (1, 3, 32, 32))
    if args.only != "speed":
        print("| model | input | pruning | layers | kept | effective, channel level | effective, tap level | "
              "effective, probe | layers tap ≠ probe (effective / constant) | layers channel ≠ tap | "
              "s channel (trace + audit) | s tap (trace + audit) | s probe |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, shape, method, rate in CASES:
            if args.only in (None, name):
                print(row(name, shape, method, rate, args.local), flush=True)
    if args.only in (None, "speed"):
        origin, lines = speed(args.repeats, args.local)
        print(f"\nresnet18 ({origin}), 1x3x224x224, random global pruning; seconds (median of "
              f"{args.repeats}):\n")
        print("| pruning | float32 forward + backward | trace | tap-level pass | audit report | "
              "tap pass / (forward + backward): median (per repeat min–max) | "
              "trace + tap + report / (forward + backward) |")
        print("|---|---|---|---|---|---|---|")
        for line in lines:
            print(line, flush=True)


if __name__ == "__main__":
    main()
