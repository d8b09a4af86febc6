"""Benchmark of the audit: netgraph vs a networkx implementation of the same audit, and vs
the time it takes to read the checkpoint file once (the floor for any file-based tool).

Run it with ``netgraph bench`` (or ``python benchmarks/bench_audit.py``).  Every figure is a
median over repeats, and ratios are taken within the same run.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np

__all__ = ["run_audit_benchmark", "networkx_audit"]

SIZES = {"1e6": [784, 1000, 200, 10], "1e7": [2048, 4096, 512, 10]}


def networkx_audit(masks: list[np.ndarray]) -> int:
    """The same audit written directly with networkx: number of effective weights of a chain."""
    import networkx as nx

    G = nx.DiGraph()
    n_in = masks[0].shape[1]
    G.add_nodes_from((0, i) for i in range(n_in))
    for ell, m in enumerate(masks):
        G.add_nodes_from((ell + 1, j) for j in range(m.shape[0]))
        o, i = np.nonzero(m)
        G.add_edges_from(zip(zip([ell] * len(i), i.tolist()), zip([ell + 1] * len(o), o.tolist())))
    src = "__src__"
    snk = "__snk__"
    G.add_edges_from((src, (0, i)) for i in range(n_in))
    G.add_edges_from(((len(masks), j), snk) for j in range(masks[-1].shape[0]))
    acc = nx.descendants(G, src)
    coacc = nx.ancestors(G, snk)
    return sum(1 for u, v in G.edges() if u in acc and v in coacc and u != src and v != snk)


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_audit_benchmark(sizes=("1e6", "1e7"), rate: float = 0.9, repeats: int = 3, seed: int = 0,
                        networkx: bool = True) -> list[dict]:
    """Time reading + auditing magnitude-pruned MLP checkpoints; returns one row per size."""
    import torch

    from .. import audit, graph_from_checkpoint, load_checkpoint, save_checkpoint

    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            widths = SIZES[size]
            weights = [rng.normal(size=(b, a)).astype(np.float32) / np.sqrt(a) for a, b in zip(widths[:-1], widths[1:])]
            flat = np.concatenate([np.abs(w).ravel() for w in weights])
            threshold = np.quantile(flat, rate)  # global magnitude pruning
            masks = [np.abs(w) > threshold for w in weights]
            sd = {}
            for i, (w, m) in enumerate(zip(weights, masks)):
                sd[f"fc{i}.weight_orig"] = w
                sd[f"fc{i}.weight_mask"] = m.astype(np.float32)
            n_params = sum(w.size for w in weights)
            row = {"size": size, "params": n_params, "kept": int(sum(m.sum() for m in masks))}
            for fmt, ext in (("torch", ".pt"), ("safetensors", ".safetensors")):
                path = os.path.join(tmp, f"m{size}{ext}")
                save_checkpoint(path, {k: torch.from_numpy(v) for k, v in sd.items()}, format=fmt)
                t_read, ck = _median_time(lambda: load_checkpoint(path), repeats)
                t_total, rep = _median_time(lambda: audit(graph_from_checkpoint(load_checkpoint(path))), repeats)
                row[f"read_{fmt}_s"] = t_read
                row[f"read+audit_{fmt}_s"] = t_total
            t_graph, rep = _median_time(lambda: audit(graph_from_checkpoint(ck)), repeats)
            row["audit_in_memory_s"] = t_graph
            row["effective"] = rep.summary.effective
            if networkx:
                t_nx, eff_nx = _median_time(lambda: networkx_audit(masks), 1)
                if eff_nx != rep.summary.effective:  # the baseline must compute the same audit
                    raise RuntimeError(f"networkx counts {eff_nx} effective weights, netgraph {rep.summary.effective}")
                row["networkx_s"] = t_nx
            rows.append(row)
    return rows


def format_markdown(rows: list[dict]) -> str:
    head = ("| params | kept | read .pt (s) | read+audit .pt (s) | read .safetensors (s) | read+audit .safetensors (s) "
            "| audit in memory (s) | networkx audit (s) | networkx / netgraph | audit / read (.pt) |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        nx_s = r.get("networkx_s")
        lines.append(
            f"| {r['params']:,} | {r['kept']:,} | {r['read_torch_s']:.3f} | {r['read+audit_torch_s']:.3f} | "
            f"{r['read_safetensors_s']:.3f} | {r['read+audit_safetensors_s']:.3f} | {r['audit_in_memory_s']:.3f} | "
            + (f"{nx_s:.2f} | {nx_s / r['audit_in_memory_s']:.0f}x" if nx_s else "- | -")
            + f" | {r['audit_in_memory_s'] / r['read_torch_s']:.2f} |"
        )
    return "\n".join(lines)
