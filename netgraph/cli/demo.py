"""``netgraph demo``: the whole product in a few minutes, on built-in data, no download.

1. trains the SBU-preset skeleton GCN on the synthetic SBU stand-in at a high pruning rate,
   once with magnitude pruning (MP) and once with MP + the TC loss;
2. audits both checkpoints from their files, as a user would;
3. repairs the MP one (``prune``: same function, dead weights gone; ``reconnect``: same
   budget, all effective);
4. draws the masks (dead weights marked), the per-layer connectivity bars, and the
   comparison, and writes a report folder with ``index.html``, the PNGs, the JSON audits
   and the checkpoints.

This module is part of the CLI, the composition root: it is the one place where netgraph,
trainer and viz meet.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="train MP vs MP+TC on built-in data, audit, repair, and write an HTML report",
        description="Trains the SBU-preset GCN on synthetic skeletons with magnitude pruning and with the "
                    "topologically consistent (TC) loss, audits both, repairs the MP model, draws the "
                    "figures and writes a report folder (index.html). No download; a few minutes on 2 CPU cores.")
    p.add_argument("--out", default="netgraph-demo", help="report folder (default ./netgraph-demo)")
    p.add_argument("--rate", type=float, default=0.99, help="pruning rate (default 0.99)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per model (default 40; 8 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a short run (seconds), for smoke tests")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.set_defaults(func=run)


def _audit_file(path: str):
    from netgraph import audit, graph_from_checkpoint, load_checkpoint, reachability

    ckpt = load_checkpoint(path)
    graph = graph_from_checkpoint(ckpt)
    reach = reachability(graph)
    return ckpt, graph, reach, audit(graph, reach, source=os.path.basename(path))


def _write_json(path: str, data) -> None:
    from netgraph import atomic_write

    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2)

    atomic_write(path, write)


def _row(label: str, rep, accuracy) -> str:
    s = rep.summary
    pct = 100.0 * s.effective / s.kept if s.kept else 0.0
    acc = f"{100 * accuracy:.1f} %" if accuracy is not None else "–"
    return (f"<tr><td>{html.escape(label)}</td><td>{s.kept:,}</td><td>{s.effective:,}</td><td>{s.dead:,}</td>"
            f"<td>{s.constant:,}</td><td>{pct:.1f} %</td><td>{100 * s.sparsity:.2f} %</td>"
            f"<td>{100 * s.effective_sparsity:.2f} %</td><td>{acc}</td></tr>")


def _layer_table(rep) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(l.name)}</code></td><td>{'×'.join(map(str, l.shape))}</td><td>{l.kept:,}</td>"
        f"<td>{l.effective:,}</td><td>{l.dead:,}</td><td>{l.constant:,}</td><td>{l.dead_units_out}</td></tr>"
        for l in rep.layers)
    return ("<table><tr><th>layer</th><th>shape</th><th>kept</th><th>effective</th><th>dead</th><th>constant</th>"
            f"<th>dead units out</th></tr>{rows}</table>")


def run(args) -> int:
    from netgraph.errors import NetgraphError

    if not 0.0 < args.rate < 1.0:
        raise NetgraphError(f"--rate must be in (0, 1), got {args.rate}")
    epochs = args.epochs or (8 if args.quick else 40)
    if epochs < 2:
        raise NetgraphError(f"--epochs must be at least 2, got {epochs}")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()

    import viz
    from netgraph.io import repair_checkpoint
    from trainer import TrainConfig, train

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr)

    labels = {"mp": "MP", "mp-tc": "MP + TC"}
    sweep = sorted({args.rate} if args.quick else {0.9, 0.95, 0.98, args.rate, 0.995})
    runs = {}     # the main rate: method -> (label, checkpoint, accuracy)
    results = {}  # (method, rate) -> (checkpoint, TrainResult)
    for rate in sweep:
        for method, label in labels.items():
            main_rate = rate == args.rate
            name = f"gcn_sbu_{method}.pt" if main_rate else f"sweep/gcn_sbu_{method}_{rate:g}.pt"
            path = os.path.join(out, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            log(f"training the SBU GCN with {label} at rate {rate:g} ({epochs} epochs)")
            cfg = TrainConfig(model="gcn", preset="sbu", dataset="synthetic-sbu", method=method, rate=rate,
                              epochs=epochs, seed=args.seed, device=args.device, out=path, progress=True)
            res = train(cfg)
            results[(method, rate)] = (path, res)
            if main_rate:
                runs[method] = (label, path, res.accuracy)

    log("auditing the checkpoints")
    audited = {m: _audit_file(p) for m, (_, p, _) in runs.items()}
    log("repairing the MP checkpoint (prune, reconnect)")
    mp_path = runs["mp"][1]
    repaired = {}
    for mode in ("prune", "reconnect"):
        path = os.path.join(out, f"gcn_sbu_mp_{mode}.pt")
        repair_checkpoint(mp_path, path, mode)
        repaired[mode] = (path, _audit_file(path))

    log("drawing the figures")
    figures = []

    def save(fig, name: str, caption: str) -> None:
        viz.save_figure(fig, os.path.join(out, name))
        import matplotlib.pyplot as plt

        plt.close(fig)
        figures.append((name, caption))

    for m, (label, _, _) in runs.items():
        ckpt, graph, reach, rep = audited[m]
        views = viz.checkpoint_views(ckpt, reach)
        save(viz.plot_layer_masks(views, show_constant=True, title=f"{label}: masks (dead weights marked)"),
             f"masks_{m}.png", f"{label}: every pruned weight tensor; kept weights dark, dead ones in the warning colour")
        save(viz.plot_audit(rep, graph, reach, title=f"{label}: per-layer connectivity"),
             f"connectivity_{m}.png", f"{label}: per layer, kept weights split into effective / not accessible / "
                                      "not coaccessible / constant, and the dead units of every group")
    log("a tiny MLP on digits, drawn unit by unit")
    for method, label in labels.items():
        path = os.path.join(out, f"mlp_digits_{method}.pt")
        cfg = TrainConfig(model="mlp", dataset="digits", mlp_hidden=(12, 10), method=method, rate=0.93,
                          epochs=epochs, seed=args.seed, device=args.device, out=path, progress=False)
        res = train(cfg)
        ckpt, graph, reach, rep = _audit_file(path)
        save(viz.plot_network(graph, reach, title=f"64-12-10-10 MLP on digits, {label} at 93 % "
                                                  f"(test accuracy {100 * res.accuracy:.1f} %)"),
             f"network_{method}.png", f"{label}: a tiny MLP drawn unit by unit; effective edges dark, dead edges in "
                                      "the warning colour, constant edges dashed blue, dead units hollow")
    ckpt, graph, reach, rep = repaired["prune"][1]
    save(viz.plot_audit(rep, graph, reach, title="MP after repair --mode prune"), "connectivity_mp_prune.png",
         "MP after `netgraph repair --mode prune`: the dead weights are gone, the function is unchanged")
    rows = []
    for (m, rate), (path, res) in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        s = _audit_file(path)[3].summary
        rows.append({"method": labels[m], "rate": rate, "kept": s.kept, "dead": s.dead,
                     "effective_pct": 100.0 * s.effective / max(s.kept, 1), "accuracy": 100.0 * res.accuracy})
    _write_json(os.path.join(out, "sweep.json"), rows)
    if len(sweep) > 1:
        save(viz.plot_ablation(rows, title="MP vs MP + TC on synthetic SBU"), "sweep.png",
             "% of kept weights that are effective, and test accuracy, against the pruning rate")
        cells = {(labels[m], rate): path for (m, rate), (path, _) in results.items()}
        save(viz.plot_mask_grid(cells, layer="fc.weight", methods=list(labels.values()), rates=sweep,
                                title="fc.weight across pruning rates (as Fig. 2 of the coarse-to-fine paper)"),
             "mask_grid.png", "the dense layer's mask, methods in rows and pruning rates in columns; "
                              "dead weights in the warning colour")

    for m in runs:
        _write_json(os.path.join(out, f"audit_{m}.json"), audited[m][3].to_dict())
    for mode, (path, a) in repaired.items():
        _write_json(os.path.join(out, f"audit_mp_{mode}.json"), a[3].to_dict())

    table = "".join(_row(label, audited[m][3], acc) for m, (label, _, acc) in runs.items())
    table += _row("MP, repaired (prune)", repaired["prune"][1][3], None)
    table += _row("MP, repaired (reconnect)", repaired["reconnect"][1][3], None)
    figs = "".join(f'<figure><img src="{n}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
                   for n, c in figures)
    layers = "".join(f"<h3>{html.escape(label)}</h3>{_layer_table(audited[m][3])}" for m, (label, _, _) in runs.items())
    sweep_rows = "".join(
        f"<tr><td>{r['method']}</td><td>{100 * r['rate']:g} %</td><td>{r['kept']:,}</td><td>{r['dead']:,}</td>"
        f"<td>{r['effective_pct']:.1f} %</td><td>{r['accuracy']:.1f} %</td></tr>" for r in rows)
    sweep_table = ("<h2>Across pruning rates</h2><table><tr><th>method</th><th>rate</th><th>kept</th><th>dead</th>"
                   f"<th>effective / kept</th><th>test accuracy</th></tr>{sweep_rows}</table>")
    files = "".join(f'<li><a href="{n}">{n}</a></li>' for n in sorted(os.listdir(out))
                    if n.endswith((".pt", ".json")))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>netgraph demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%;border:1px solid #eee}}
figure{{margin:2em 0}}figcaption{{color:#444}}</style></head><body>
<h1>netgraph demo</h1>
<p>The SBU-preset skeleton GCN (1 head, 8 filters) trained on the synthetic SBU stand-in (8 classes)
for {epochs} epochs, pruned to {100 * args.rate:g} % with magnitude pruning (MP) and with MP plus the
topologically consistent (TC) loss; then the MP model repaired. Also trained at rates
{", ".join(f"{100 * r:g} %" for r in sweep)} for the curves. Seed {args.seed};
total time {time.perf_counter() - t0:.0f} s.</p>
<h2>Audit</h2>
<table><tr><th>model</th><th>kept</th><th>effective</th><th>dead</th><th>constant</th><th>effective / kept</th>
<th>sparsity</th><th>effective sparsity</th><th>test accuracy</th></tr>{table}</table>
<p><em>Dead</em>: kept weights that no input reaches or that reach no output. <em>Constant</em>: dead
weights fed only by a bias. Reproduce with <code>netgraph audit FILE</code>.</p>
{sweep_table}
<h2>Figures</h2>{figs}
<h2>Per layer</h2>{layers}
<h2>Files</h2><ul>{files}</ul>
</body></html>"""
    from netgraph import atomic_write

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(page)

    atomic_write(os.path.join(out, "index.html"), write)
    for m, (label, _, acc) in runs.items():
        s = audited[m][3].summary
        print(f"{label:8s} kept {s.kept:6,}  effective {s.effective:6,}  dead {s.dead:6,}  accuracy {100 * acc:5.1f} %")
    print(f"report: {os.path.join(out, 'index.html')}")
    return 0
