"""The ONNX audit (from the .onnx file alone) side by side with the traced audit of the model.

    python benchmarks/onnx_vs_traced.py            # prints a markdown table

Each model from ``netgraph.testing.models`` is pruned at random (rate 0.9, seed 0), BatchNorm
statistics randomised, exported with ``torch.onnx.export`` (TorchScript exporter, constant
folding on: BatchNorm is fused into the convolutions), then audited both ways.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

import torch

from netgraph import trace_model
from netgraph.io import audit_onnx
from netgraph.testing.models import MODELS, prune_at_random


def main() -> int:
    torch.set_num_threads(1)
    rows = ["| model | layers | kept | effective (ONNX) | effective (traced) | dead (ONNX) | dead (traced) "
            "| layers equal | ONNX audit s | traced audit s |", "|---|---|---|---|---|---|---|---|---|---|"]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, (factory, shape) in MODELS.items():
            torch.manual_seed(0)  # the random initialisation too, so a rerun gives the same table
            model = prune_at_random(factory(), 0.9, 0)
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
            rows.append(f"| {name} | {len(lb)} | {b.summary.kept:,} | {a.summary.effective:,} | {b.summary.effective:,} "
                        f"| {a.summary.dead:,} | {b.summary.dead:,} | {'yes' if same else 'NO'} "
                        f"| {t1 - t0:.2f} | {t2 - t1:.2f} |")
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
