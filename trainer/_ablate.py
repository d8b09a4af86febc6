"""The ablation runner: tc-pruning Table 2 and coarse-to-fine Tables 3–4, plus our rows.

Contract
--------
For each dataset and each of ``seeds`` seeds (``seed``, ``seed + 1``, ...): one unpruned
baseline (``dense``); for each rate of ``tc_rates`` the methods ``mp`` (MP w/o TC) and
``mp-tc`` (MP w TC) (+ ``pmp`` and ``mp+reconnect``: that seed's MP checkpoint repaired by
netgraph's own front end, :func:`netgraph.io.repair_checkpoint` in ``reconnect`` mode — dead
weights removed, the freed budget re-spent on the highest ``|weight_orig|`` — and evaluated
without retraining), reporting kept weights, % effective (effective / kept, netgraph's audit)
and test accuracy; for each rate of ``ctf_rates`` the methods ``coarse``, ``fine`` and
``ctf``, reporting accuracy and the *measured* inference speedup of the compacted network
(:func:`measure_speedup`).  Every run is :func:`trainer.train`; runs differ only in method,
rate and seed.  Each row carries its ``seed``, the test-set size ``n_test`` and ``classes``
(chance = 1 / classes).  The result is plain data (JSON: every run, plus ``summary``: mean and
sample sd per cell) and Markdown tables of mean ± sd.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Mapping

import numpy as np
import torch

from netgraph import atomic_write, load_checkpoint, reachability
from netgraph.io import repair_checkpoint

from ._data import load_dataset
from ._loop import TrainConfig, build_for, train
from ._models import GCN, MLP, GCNConfig

__all__ = ["AblationConfig", "run_ablation", "ablation_markdown", "measure_speedup", "write_ablation", "summarize",
           "checkpoint_accuracy"]


@dataclass(frozen=True)
class AblationConfig:
    """The grid: datasets × (rates × methods) × seeds ``seed .. seed + seeds - 1``."""

    datasets: tuple[str, ...] = ("synthetic-sbu", "synthetic-fpha")
    tc_rates: tuple[float, ...] = (0.5, 0.75, 0.88, 0.95, 0.99, 0.995)
    ctf_rates: tuple[float, ...] = (0.9, 0.95, 0.98)
    epochs: int = 40
    seed: int = 0
    seeds: int = 3
    device: str = "auto"
    extra: bool = True  # PMP and MP + reconnect rows
    lr: float = 0.03
    batch_size: int = 64
    progress: bool = True


def _preset_for(dataset: str) -> str:
    return "fpha" if "fpha" in dataset else "sbu"


def _kept_units(model, masks: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Units that stay after compaction, by netgraph's rule (as :func:`netgraph.compact_model`):
    a unit goes when it is not coaccessible, or neither accessible nor carrying a constant."""
    graph = model.graph({n: v.bool().cpu().numpy() for n, v in masks.items()})
    r = reachability(graph)
    return {g: r.coaccessible[g] & (r.accessible[g] | r.constant[g]) for g in graph.order}


def _size(keep: np.ndarray) -> int:
    return max(1, int(keep.sum()))  # a layer keeps at least one unit


@torch.no_grad()
def _compact_gcn(model: GCN, masks: Mapping[str, torch.Tensor]):
    """A GCN of the compacted widths (netgraph's keep rule) and the kept input features."""
    c = model.config
    keep = _kept_units(model, masks)
    heads = [k for k in range(c.heads) if (masks[f"heads.{k}.weight"].bool().cpu()
                                           & torch.from_numpy(keep["attention"])[:, None]).any()]
    small = GCNConfig(c.n_nodes, _size(keep["input"]), max(1, len(heads)), _size(keep["attention"]),
                      _size(keep["conv"]), _size(keep["fc"]), c.classes, c.edges)
    feats = torch.from_numpy(keep["input"])
    return GCN(small, generator=torch.Generator().manual_seed(0)), (feats if feats.any() else torch.ones_like(feats))


@torch.no_grad()
def _compact_mlp(model: MLP, masks: Mapping[str, torch.Tensor]):
    """An MLP of the compacted widths (netgraph's keep rule) and the kept input features."""
    keep = _kept_units(model, masks)
    widths = [_size(keep["input"])] + [_size(keep[f"layers.{i}"]) for i in range(len(model.layers) - 1)]
    widths.append(model.widths[-1])
    feats = torch.from_numpy(keep["input"])
    return MLP(widths, generator=torch.Generator().manual_seed(0)), (feats if feats.any() else torch.ones_like(feats))


def _median_time(fn: Callable[[], object], repeats: int = 15) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


@torch.no_grad()
def measure_speedup(model, masks: Mapping[str, torch.Tensor], x: torch.Tensor, *, repeats: int = 15) -> float:
    """Measured inference speedup: the dense model's median forward time over the compacted
    one's (units with no kept weight on either side removed; dense layers, same batch ``x``).
    Unstructured masks remove almost no unit and give ≈ 1×."""
    model = model.cpu().eval()
    x = x.cpu()
    small, feats = (_compact_gcn if isinstance(model, GCN) else _compact_mlp)(model, masks)
    small.eval()
    xs = x[..., feats].contiguous()
    t_dense = _median_time(lambda: model(x), repeats)
    t_small = _median_time(lambda: small(xs), repeats)
    return t_dense / t_small


def _row(dataset: str, method: str, rate: float, seed: int, data, res, **extra) -> dict:
    s = res.audit["summary"]
    row = {"dataset": dataset, "method": method, "seed": seed, "target_rate": rate,
           "achieved_rate": res.achieved_rate, "kept": s["kept"], "effective": s["effective"],
           "effective_pct": 100.0 * s["effective"] / s["kept"] if s["kept"] else 0.0,
           "accuracy": 100.0 * res.accuracy, "n_test": int(data.y_test.shape[0]), "classes": int(data.classes),
           "seconds": res.seconds}
    row.update(extra)
    return row


@torch.no_grad()
def checkpoint_accuracy(path: str, config: TrainConfig, data) -> float:
    """Test accuracy of a checkpoint in the trainer's prune format (``X_orig`` = scale·ŵ,
    ``X_mask``), evaluated with the architecture ``config`` builds for ``data``."""
    ckpt = load_checkpoint(path)
    model = build_for(config, data, torch.Generator().manual_seed(0)).cpu().eval()
    prunable = {n: w for n, w in ckpt.prunable().items() if n in model.scales}  # the model's pruned weights
    state = {}
    for key, value in model.state_dict().items():
        if key in prunable:
            state[key] = torch.as_tensor(np.asarray(prunable[key].values) / model.scales[key], dtype=value.dtype)
        else:
            state[key] = torch.as_tensor(np.asarray(ckpt.tensors[key]), dtype=value.dtype)
    model.load_state_dict(state)
    masks = {n: torch.as_tensor(np.asarray(w.mask), dtype=torch.float32) for n, w in prunable.items()}
    x, y = data.x_test.cpu(), data.y_test.cpu()
    correct = sum(int((model(x[k:k + 1024], masks).argmax(1) == y[k:k + 1024]).sum())
                  for k in range(0, x.shape[0], 1024))
    return correct / max(1, x.shape[0])


def _reconnect_row(dataset: str, rate: float, seed: int, cfg: TrainConfig, data, mp_path: str, tmp: str,
                   prunable: int) -> dict:
    """The seed's MP checkpoint, repaired by netgraph (reconnect: same budget, all effective),
    evaluated without retraining."""
    t0 = time.perf_counter()
    out = os.path.join(tmp, f"reconnect-{seed}-{rate:g}.pt")
    rep = repair_checkpoint(mp_path, out, "reconnect")
    s = rep.after.summary
    return {"dataset": dataset, "method": "mp+reconnect", "seed": seed, "target_rate": rate,
            "achieved_rate": 1.0 - s.kept / prunable, "kept": s.kept, "effective": s.effective,
            "effective_pct": 100.0 * s.effective / s.kept if s.kept else 0.0,
            "accuracy": 100.0 * checkpoint_accuracy(out, cfg, data), "n_test": int(data.y_test.shape[0]),
            "classes": int(data.classes), "seconds": time.perf_counter() - t0}


def run_ablation(config: AblationConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Run the grid; returns ``{"config": ..., "rows": [...], "summary": [...]}`` (plain data).

    ``rows`` holds every run; ``summary`` one entry per (dataset, method, rate) with the mean
    and the sample standard deviation (``ddof=1``; 0 for one seed) of achieved rate, kept,
    % effective, accuracy and speedup (:func:`summarize`).
    """
    if config.seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {config.seeds}")
    rows = []
    say = log or (lambda s: None)
    with tempfile.TemporaryDirectory(prefix="netgraph-ablate-") as tmp:
        for ds in config.datasets:
            data = load_dataset(ds, seed=0)
            for seed in range(config.seed, config.seed + config.seeds):
                base = TrainConfig(model="gcn", preset=_preset_for(ds), dataset=ds, epochs=config.epochs, seed=seed,
                                   device=config.device, lr=config.lr, batch_size=config.batch_size,
                                   progress=config.progress)
                res = train(replace(base, method="dense", rate=0.0), data=data)
                rows.append(_row(ds, "dense", 0.0, seed, data, res, table="baseline", speedup=1.0))
                say(f"{ds} seed {seed} dense: {rows[-1]['accuracy']:.2f}%")
                for rate in config.tc_rates:
                    methods = ["mp", "mp-tc"] + (["pmp"] if config.extra else [])
                    for method in methods:
                        cfg = replace(base, method=method, rate=rate)
                        if method == "mp" and config.extra:  # its checkpoint feeds the reconnect row
                            cfg = replace(cfg, out=os.path.join(tmp, f"mp-{seed}-{rate:g}.pt"))
                        res = train(cfg, data=data)
                        prunable = res.prunable
                        rows.append(_row(ds, method, rate, seed, data, res, table="tc"))
                        say(f"{ds} seed {seed} {method} {rate:g}: acc {rows[-1]['accuracy']:.2f}% "
                            f"eff {rows[-1]['effective_pct']:.1f}%")
                    if config.extra:
                        mp_path = os.path.join(tmp, f"mp-{seed}-{rate:g}.pt")
                        rows.append(dict(_reconnect_row(ds, rate, seed, replace(base, method="mp", rate=rate), data,
                                                        mp_path, tmp, prunable), table="tc"))
                        say(f"{ds} seed {seed} mp+reconnect {rate:g}: acc {rows[-1]['accuracy']:.2f}%")
                for rate in config.ctf_rates:
                    for method in ("coarse", "fine", "ctf"):
                        tr_res = train(replace(base, method=method, rate=rate), data=data)
                        model = _rebuild(base, method, rate, data, tr_res)
                        sp = measure_speedup(model, tr_res.masks, data.x_test)
                        rows.append(_row(ds, method, rate, seed, data, tr_res, table="ctf", speedup=sp))
                        say(f"{ds} seed {seed} {method} {rate:g}: acc {rows[-1]['accuracy']:.2f}% speedup {sp:.2f}x")
    return {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}, "rows": rows,
            "summary": summarize(rows)}


_SUMMARY_KEYS = ("achieved_rate", "kept", "effective_pct", "accuracy", "speedup")


def summarize(rows) -> list[dict]:
    """Per (dataset, method, target rate), in order of first appearance: ``runs``, ``seeds``,
    ``table``, and ``<key>_mean`` / ``<key>_sd`` for achieved rate, kept, % effective,
    accuracy and speedup (sample sd, ``ddof=1``; 0.0 for one run; keys a row lacks are left out)."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["dataset"], r["method"], r["target_rate"]), []).append(r)
    out = []
    for (ds, method, rate), mine in cells.items():
        entry = {"dataset": ds, "method": method, "target_rate": rate, "table": mine[0].get("table"),
                 "runs": len(mine), "seeds": [r.get("seed") for r in mine]}
        for key in _SUMMARY_KEYS:
            vals = [r[key] for r in mine if r.get(key) is not None]
            if vals:
                a = np.asarray(vals, dtype=float)
                entry[f"{key}_mean"] = float(a.mean())
                entry[f"{key}_sd"] = float(a.std(ddof=1)) if len(a) > 1 else 0.0
        out.append(entry)
    return out


def _rebuild(base: TrainConfig, method: str, rate: float, data, res):
    """The architecture of a run (weights do not matter for timing)."""
    return build_for(replace(base, method=method, rate=rate), data, torch.Generator().manual_seed(0))


def _pm(entry: Mapping, key: str, fmt: str = ".2f") -> str:
    m, sd = entry.get(f"{key}_mean"), entry.get(f"{key}_sd")
    if m is None:
        return "–"
    return f"{m:{fmt}} ± {sd:{fmt}}" if entry["runs"] > 1 else f"{m:{fmt}}"


def ablation_markdown(result: Mapping) -> str:
    """tc-pruning Table 2 and coarse-to-fine Tables 3–4 layouts, one block per dataset; each
    cell the mean ± sample sd over the seeds (the ``summary`` of :func:`run_ablation`)."""
    rows = result["rows"]
    summary = result.get("summary") or summarize(rows)
    out = []
    names = {"mp": "MP w/o TC", "mp-tc": "MP w TC", "pmp": "PMP (ours)", "mp+reconnect": "MP + reconnect (ours)",
             "coarse": "Coarse MP (structured)", "fine": "Fine MP (unstructured)", "ctf": "Coarse-to-Fine MP (both)",
             "dense": "Baseline GCN"}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        mine = [e for e in summary if e["dataset"] == ds]
        first = next(r for r in rows if r["dataset"] == ds)
        runs = sorted({e["runs"] for e in mine})
        n_test = first.get("n_test")
        note = (f"mean ± sd over {runs[0] if len(runs) == 1 else f'{runs[0]}-{runs[-1]}'} seed(s)"
                + (f"; test set {n_test} samples (1 sample = {100.0 / n_test:.2g} points)" if n_test else "")
                + (f"; chance {100.0 / first['classes']:.3g} %" if first.get("classes") else ""))
        out.append(f"### {ds}: topological consistency (tc-pruning Table 2)\n")
        out.append(f"{note}\n")
        out.append("| Pruning rate | TC | # kept | % of A-C | Accuracy (%) | Observation |")
        out.append("|---:|:---:|---:|---:|---:|:---|")
        for e in mine:
            if e["table"] in ("baseline", "tc"):
                tc = {"mp": "✗", "mp-tc": "✓", "dense": "NA"}.get(e["method"], "–")
                out.append(f"| {100 * e['achieved_rate_mean']:.2f}% | {tc} | {e['kept_mean']:,.0f} | "
                           f"{_pm(e, 'effective_pct')} | {_pm(e, 'accuracy')} | {names[e['method']]} |")
        out.append("")
        out.append(f"### {ds}: coarse-to-fine (coarse-to-fine Tables 3–4)\n")
        out.append(f"{note}\n")
        out.append("| Pruning rate | Accuracy (%) | SpeedUp (measured) | % of A-C | Observation |")
        out.append("|---:|---:|---:|---:|:---|")
        for e in mine:
            if e["table"] in ("baseline", "ctf"):
                out.append(f"| {100 * e['achieved_rate_mean']:.2f}% | {_pm(e, 'accuracy')} | "
                           f"{_pm(e, 'speedup')}× | {_pm(e, 'effective_pct')} | {names[e['method']]} |")
        out.append("")
    return "\n".join(out)


def _write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)

    atomic_write(path, write)


def write_ablation(result: Mapping, out_dir: str) -> tuple[str, str]:
    """``ablation.json`` and ``ablation.md`` in ``out_dir`` (atomic writes)."""
    os.makedirs(out_dir, exist_ok=True)
    jp, mp = os.path.join(out_dir, "ablation.json"), os.path.join(out_dir, "ablation.md")
    _write_text(jp, json.dumps(result, indent=2))
    _write_text(mp, ablation_markdown(result))
    return jp, mp
