"""The ablation runner: tc-pruning Table 2 and coarse-to-fine Tables 3–4, plus our rows.

Contract
--------
For each dataset: one unpruned baseline (``dense``); for each rate of ``tc_rates`` the
methods ``mp`` (MP w/o TC) and ``mp-tc`` (MP w TC) (+ ``pmp`` and ``mp+reconnect``: the MP
model whose dead weights are removed and whose freed budget is re-spent by
:func:`netgraph.reconnect_masks` on the highest ``|weight_orig|``, evaluated without
retraining), reporting kept weights, % effective (effective / kept, netgraph's audit) and
test accuracy; for each rate of ``ctf_rates`` the methods ``coarse``, ``fine`` and ``ctf``,
reporting accuracy and the *measured* inference speedup of the compacted network
(:func:`measure_speedup`).  Every run shares the config's seed and epochs.  The result is
plain data (JSON) and Markdown tables.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from netgraph import audit as _audit, reconnect_masks
from netgraph import atomic_write

from ._data import load_dataset
from ._loop import TrainConfig, Trainer, build_for, train
from ._models import GCN, MLP, GCNConfig

__all__ = ["AblationConfig", "run_ablation", "ablation_markdown", "measure_speedup", "write_ablation"]


@dataclass(frozen=True)
class AblationConfig:
    datasets: tuple[str, ...] = ("synthetic-sbu", "synthetic-fpha")
    tc_rates: tuple[float, ...] = (0.5, 0.75, 0.88, 0.95, 0.99, 0.995)
    ctf_rates: tuple[float, ...] = (0.9, 0.95, 0.98)
    epochs: int = 40
    seed: int = 0
    device: str = "auto"
    extra: bool = True  # PMP and MP + reconnect rows
    lr: float = 0.03
    batch_size: int = 64
    progress: bool = True


def _preset_for(dataset: str) -> str:
    return "fpha" if "fpha" in dataset else "sbu"


@torch.no_grad()
def _compact_gcn(model: GCN, masks: Mapping[str, torch.Tensor]):
    """A smaller GCN holding only units with kept weights on both sides, and the input slice."""
    c = model.config
    m = {n: v.bool().cpu() for n, v in masks.items()}
    heads = [k for k in range(c.heads) if m[f"heads.{k}.weight"].any()]
    into_att = torch.zeros(c.head_channels, dtype=torch.bool)
    feats = torch.zeros(c.in_features, dtype=torch.bool)
    for k in heads:
        into_att |= m[f"heads.{k}.weight"].any(1)
        feats |= m[f"heads.{k}.weight"].any(0)
    conv = m["conv.weight"]  # (C2, C1)
    att = into_att & conv.any(0)
    fc = m["fc.weight"].reshape(c.hidden, c.n_nodes, c.filters)  # node-major flatten
    filters = conv.any(1) & fc.any((0, 1))
    hidden = m["fc.weight"].any(1) & m["out.weight"].any(0)
    size = lambda v: max(1, int(v.sum()))
    small = GCNConfig(c.n_nodes, size(feats), max(1, len(heads)), size(att), size(filters), size(hidden),
                      c.classes, c.edges)
    net = GCN(small, generator=torch.Generator().manual_seed(0))
    return net, (feats if feats.any() else torch.ones_like(feats))


@torch.no_grad()
def _compact_mlp(model: MLP, masks: Mapping[str, torch.Tensor]):
    m = [masks[f"layers.{i}.weight"].bool().cpu() for i in range(len(model.layers))]
    widths = [max(1, int(m[0].any(0).sum()))]
    for i in range(len(m) - 1):
        widths.append(max(1, int((m[i].any(1) & m[i + 1].any(0)).sum())))
    widths.append(model.widths[-1])
    feats = m[0].any(0)
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


def _row(dataset: str, method: str, rate: float, res, **extra) -> dict:
    s = res.audit["summary"]
    row = {"dataset": dataset, "method": method, "target_rate": rate, "achieved_rate": res.achieved_rate,
           "kept": s["kept"], "effective": s["effective"],
           "effective_pct": 100.0 * s["effective"] / s["kept"] if s["kept"] else 0.0,
           "accuracy": 100.0 * res.accuracy, "seconds": res.seconds}
    row.update(extra)
    return row


def _reconnect_row(dataset: str, rate: float, cfg: TrainConfig, data) -> dict:
    """MP, then netgraph's post-hoc reconnect (same budget, all effective), no retraining."""
    tr = Trainer(cfg, data)
    t0 = time.perf_counter()
    while tr.epoch < cfg.epochs:
        if tr.fixed is None and tr.epoch >= tr.relax_epochs:
            tr.start_finish()
        tr.run_epoch()
    if tr.fixed is None:
        tr.start_finish()
    masks = {n: m.cpu().numpy() for n, m in tr.fixed.items()}
    scores = {n: (p.detach() * tr.model.scales[n]).abs().cpu().numpy() for n, p in tr.model.prunable().items()}
    rep = reconnect_masks(tr.model.graph(masks), masks, scores)
    new = {n: torch.from_numpy(np.asarray(v)).to(tr.device) for n, v in rep.masks.items()}
    report = _audit(tr.model.graph(rep.masks)).to_dict()
    s = report["summary"]
    return {"dataset": dataset, "method": "mp+reconnect", "target_rate": rate,
            "achieved_rate": 1.0 - s["kept"] / tr.n, "kept": s["kept"], "effective": s["effective"],
            "effective_pct": 100.0 * s["effective"] / s["kept"] if s["kept"] else 0.0,
            "accuracy": 100.0 * tr.accuracy(new), "seconds": time.perf_counter() - t0}


def run_ablation(config: AblationConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Run the grid; returns ``{"config": ..., "rows": [...]}`` (plain data)."""
    rows = []
    say = log or (lambda s: None)
    for ds in config.datasets:
        data = load_dataset(ds, seed=0)
        base = TrainConfig(model="gcn", preset=_preset_for(ds), dataset=ds, epochs=config.epochs, seed=config.seed,
                           device=config.device, lr=config.lr, batch_size=config.batch_size, progress=config.progress)
        res = train(replace(base, method="dense", rate=0.0), data=data)
        rows.append(_row(ds, "dense", 0.0, res, table="baseline", speedup=1.0))
        say(f"{ds} dense: {rows[-1]['accuracy']:.2f}%")
        for rate in config.tc_rates:
            methods = ["mp", "mp-tc"] + (["pmp"] if config.extra else [])
            for method in methods:
                res = train(replace(base, method=method, rate=rate), data=data)
                rows.append(_row(ds, method, rate, res, table="tc"))
                say(f"{ds} {method} {rate:g}: acc {rows[-1]['accuracy']:.2f}% eff {rows[-1]['effective_pct']:.1f}%")
            if config.extra:
                rows.append(dict(_reconnect_row(ds, rate, replace(base, method="mp", rate=rate), data), table="tc"))
                say(f"{ds} mp+reconnect {rate:g}: acc {rows[-1]['accuracy']:.2f}%")
        for rate in config.ctf_rates:
            for method in ("coarse", "fine", "ctf"):
                tr_res = train(replace(base, method=method, rate=rate), data=data)
                model = _rebuild(base, method, rate, data, tr_res)
                sp = measure_speedup(model, tr_res.masks, data.x_test)
                rows.append(_row(ds, method, rate, tr_res, table="ctf", speedup=sp))
                say(f"{ds} {method} {rate:g}: acc {rows[-1]['accuracy']:.2f}% speedup {sp:.2f}x")
    return {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}, "rows": rows}


def _rebuild(base: TrainConfig, method: str, rate: float, data, res):
    """The architecture of a run (weights do not matter for timing)."""
    return build_for(replace(base, method=method, rate=rate), data, torch.Generator().manual_seed(0))


def ablation_markdown(result: Mapping) -> str:
    """tc-pruning Table 2 and coarse-to-fine Tables 3–4 layouts, one block per dataset."""
    rows = result["rows"]
    out = []
    names = {"mp": "MP w/o TC", "mp-tc": "MP w TC", "pmp": "PMP (ours)", "mp+reconnect": "MP + reconnect (ours)",
             "coarse": "Coarse MP (structured)", "fine": "Fine MP (unstructured)", "ctf": "Coarse-to-Fine MP (both)",
             "dense": "Baseline GCN"}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == ds]
        out.append(f"### {ds}: topological consistency (tc-pruning Table 2)\n")
        out.append("| Pruning rate | TC | # kept | % of A-C | Accuracy (%) | Observation |")
        out.append("|---:|:---:|---:|---:|---:|:---|")
        for r in mine:
            if r["table"] in ("baseline", "tc"):
                tc = {"mp": "✗", "mp-tc": "✓", "dense": "NA"}.get(r["method"], "–")
                out.append(f"| {100 * r['achieved_rate']:.2f}% | {tc} | {r['kept']:,} | {r['effective_pct']:.2f} | "
                           f"{r['accuracy']:.2f} | {names[r['method']]} |")
        out.append("")
        out.append(f"### {ds}: coarse-to-fine (coarse-to-fine Tables 3–4)\n")
        out.append("| Pruning rate | Accuracy (%) | SpeedUp (measured) | % of A-C | Observation |")
        out.append("|---:|---:|---:|---:|:---|")
        for r in mine:
            if r["table"] in ("baseline", "ctf"):
                out.append(f"| {100 * r['achieved_rate']:.2f}% | {r['accuracy']:.2f} | {r['speedup']:.2f}× | "
                           f"{r['effective_pct']:.2f} | {names[r['method']]} |")
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
