"""The issue-2 figure: a 784-300-100-10 ReLU MLP magnitude-pruned at 99 % with
torch.nn.utils.prune.global_unstructured, audited per layer.

Two cases: the MLP at initialisation, and the MLP after training on scikit-learn's bundled
digits upsampled to 28x28 (real images, no download; 20 epochs of Adam).  Run:

    python benchmarks/mlp_audit.py [--rate 0.99] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune

from netgraph import audit, graph_from_checkpoint, load_checkpoint


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def digits_28(seed: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).flatten(1)
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    return x[perm], y[perm]


def train(model, x, y, epochs: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n_train = int(0.8 * len(y))
    for _ in range(epochs):
        perm = torch.randperm(n_train, generator=g)
        for i in range(0, n_train, 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((model(x[n_train:]).argmax(1) == y[n_train:]).float().mean())


def prune_and_audit(model, rate: float, label: str, x=None, y=None) -> str:
    params = [(m, "weight") for m in model if isinstance(m, nn.Linear)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=rate)
    acc = ""
    if x is not None:
        n_train = int(0.8 * len(y))
        with torch.no_grad():
            acc = f", test accuracy after pruning {float((model(x[n_train:]).argmax(1) == y[n_train:]).float().mean()):.3f}"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mlp.pt")
        torch.save(model.state_dict(), path)
        rep = audit(graph_from_checkpoint(load_checkpoint(path)), source=label)
    lines = [f"### {label} (global magnitude pruning at {100 * rate:g} %{acc})", "",
             "| layer | shape | kept | effective | dead | constant |", "|---|---|---|---|---|---|"]
    for l in rep.layers:
        lines.append(f"| {l.name} | {l.shape[0]}x{l.shape[1]} | {l.kept:,} | {l.effective:,} | {l.dead:,} | {l.constant:,} |")
    s = rep.summary
    lines.append(f"| **total** | | {s.kept:,} | {s.effective:,} | {s.dead:,} | {s.constant:,} |")
    lines.append("")
    lines.append(f"sparsity {100 * s.sparsity:.2f} %, effective sparsity {100 * s.effective_sparsity:.2f} %, "
                 f"dead = {100 * s.dead / max(s.kept, 1):.1f} % of kept, collapsed: {s.collapsed}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    print(prune_and_audit(mlp(), args.rate, "784-300-100-10 at initialisation"))
    print()
    torch.manual_seed(args.seed)
    model = mlp()
    x, y = digits_28(args.seed)
    acc = train(model, x, y, args.epochs, args.seed)
    print(f"(dense test accuracy on digits-28x28: {acc:.3f})\n")
    print(prune_and_audit(model, args.rate, "784-300-100-10 trained on digits-28x28", x, y))


if __name__ == "__main__":
    main()
