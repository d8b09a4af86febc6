"""The ONNX audit beside the traced audit on real torchvision architectures.

    python benchmarks/onnx_torchvision.py [--size 64] [--rate 0.9]

Needs torchvision (not a dependency: see the README for a scratch venv).  Each model is
pruned at random, its BatchNorm statistics randomised, exported with the TorchScript
exporter (constant folding on: BatchNorm fused into the convolutions), and audited from the
``.onnx`` file alone and by tracing the model; the table says whether every layer agrees.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import torch

from netgraph import trace_model
from netgraph.io import audit_onnx
from netgraph.testing.models import prune_at_random

NAMES = ("resnet18", "mobilenet_v2", "shufflenet_v2_x0_5", "efficientnet_b0", "densenet121", "vgg16_bn")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="input height and width (default 64)")
    ap.add_argument("--rate", type=float, default=0.9, help="random pruning rate (default 0.9)")
    ap.add_argument("--models", default=",".join(NAMES), help="comma-separated torchvision model names")
    args = ap.parse_args(argv)
    import torchvision

    torch.set_num_threads(1)
    shape = (1, 3, args.size, args.size)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, input {shape}, random pruning {args.rate}")
    print("| model | layers | kept | effective (ONNX) | effective (traced) | layers equal | ONNX s | traced s |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)  # the random initialisation too, so a rerun gives the same table
            model = getattr(torchvision.models, name)(weights=None).eval()
            prune_at_random(model, args.rate, 0)
            path = os.path.join(tmp, f"{name}.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (torch.randn(shape),), path, dynamo=False)
            t0 = time.perf_counter()
            a = audit_onnx(path)
            t1 = time.perf_counter()
            b = trace_model(model, shape).audit(source=path)
            t2 = time.perf_counter()
            la = {d["name"]: d for d in a.to_dict()["layers"]}
            lb = {d["name"]: d for d in b.to_dict()["layers"]}
            same = la == lb
            ok &= same
            if not same:
                diff = [k for k in lb if la.get(k) != lb[k]][:3]
                print(f"  {name}: differing layers {diff}; only in ONNX {sorted(set(la) - set(lb))[:3]}", file=sys.stderr)
            print(f"| {name} | {len(lb)} | {b.summary.kept:,} | {a.summary.effective:,} | {b.summary.effective:,} "
                  f"| {'yes' if same else 'NO'} | {t1 - t0:.1f} | {t2 - t1:.1f} |", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
