"""``netgraph demo``: the whole product in about a minute, on built-in data, no download.

1. **Headline, real data**: an MLP (64-128-64-10) on scikit-learn's digits, pruned at
   90 / 95 / 98 / 99 / 99.5 / 99.8 % with magnitude pruning (MP) and with MP + the
   topologically consistent (TC) loss, ``--seeds`` seeds each, plus the dense baseline;
2. **the papers' setting**: the SBU-preset skeleton GCN on the synthetic SBU stand-in at
   ``--rate``, MP vs MP + TC, the same seeds; one seed's MP checkpoint is repaired
   (``prune``: same function, removable dead weights gone; ``reconnect``: same budget, all
   effective);
3. a tiny 64-12-10-10 MLP, both methods drawn unit by unit on one layout;
4. every checkpoint is audited from its file, as a user would; the figures and
   ``index.html`` (:mod:`netgraph.cli._report`) are written with the JSON and checkpoints
   into ``--out`` (built in a temporary folder, renamed on success).

Training runs go to ``--jobs`` worker processes, one torch thread each (small models gain
nothing from more).  This module is part of the CLI, the composition root: the one place
where netgraph, trainer and viz meet.
"""

from __future__ import annotations

import json
import os
import sys
import time

from ._options import option

DIGITS_RATES = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998)
QUICK_RATES = (0.95, 0.995)
HEADLINE_RATE = 0.995  # where the 8x8 input images are drawn and the summary reads its numbers
LABELS = {"mp": "MP", "mp-tc": "MP + TC", "dense": "dense"}
DIGITS_HIDDEN = (128, 64)
TINY_HIDDEN = (12, 10)
TINY_RATE = 0.93


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="MP vs MP+TC on real digits and on the papers' GCN: audit, repair, figures, HTML report",
        description="Trains an MLP on scikit-learn's digits (real data) across pruning rates with magnitude "
                    "pruning and with the topologically consistent (TC) loss, several seeds each; then the "
                    "papers' skeleton GCN on synthetic SBU; audits every checkpoint, repairs one, draws the "
                    "figures and writes a report folder (index.html). No download; about a minute on 2 CPU "
                    "cores.")
    option(p, "--out", default="netgraph-demo", metavar="DIR",
           help="report folder; must be new or empty (--force replaces it after success)")
    option(p, "--force", action="store_true", help="replace a non-empty --out folder")
    option(p, "--rate", type=float, default=0.99, metavar="R", help="the GCN's pruning rate (fraction)")
    option(p, "--epochs", type=int, default=None, metavar="N",
           help="training epochs per run; omitted: 40 (8 with --quick)")
    option(p, "--seed", type=int, default=0, metavar="S", help="first seed")
    option(p, "--seeds", type=int, default=None, metavar="N",
           help="seeds per cell (S .. S+N-1), mean ± sd in tables and figures; omitted: 3 (2 with --quick)")
    option(p, "--jobs", type=int, default=2, metavar="N", help="training processes (one torch thread each)")
    option(p, "--quick", action="store_true",
           help=f"a short run (seconds): rates {', '.join(f'{100 * r:g}%%' for r in QUICK_RATES)}, for smoke tests")
    option(p, "--device", default="cpu", metavar="DEV", help="cpu, cuda[:N] or auto (CUDA when present)")
    p.set_defaults(func=run)


# -- training, possibly in worker processes ---------------------------------------------------

_DATA: dict = {}


def _train_job(job: dict) -> dict:
    """Train one run (``job``: TrainConfig fields); returns its accuracy and time.  Runs in a
    worker process (one torch thread) or in this one."""
    import torch

    torch.set_num_threads(1)
    from trainer import TrainConfig, load_dataset, train

    cfg = TrainConfig(**job)
    if cfg.dataset not in _DATA:
        _DATA[cfg.dataset] = load_dataset(cfg.dataset, seed=cfg.data_seed)
    res = train(cfg, data=_DATA[cfg.dataset])
    return {"out": cfg.out, "accuracy": res.accuracy, "seconds": res.seconds}


def _run_jobs(jobs: list[dict], n_procs: int, log) -> dict[str, dict]:
    """Every job, on ``n_procs`` spawned processes (1: here); ``{out path: result}``."""
    results = {}
    if n_procs <= 1:
        for k, job in enumerate(jobs):
            results[job["out"]] = _train_job(job)
            if (k + 1) % 10 == 0:
                log(f"{k + 1}/{len(jobs)} runs done")
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # inherited by the workers
    try:
        with ProcessPoolExecutor(max_workers=n_procs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_train_job, job) for job in jobs]
            for k, fut in enumerate(as_completed(futures)):
                r = fut.result()
                results[r["out"]] = r
                if (k + 1) % 10 == 0:
                    log(f"{k + 1}/{len(jobs)} runs done")
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results


# -- auditing -----------------------------------------------------------------------------------

def _audit_file(path: str):
    from netgraph import audit, graph_from_checkpoint, load_checkpoint, reachability

    ckpt = load_checkpoint(path)
    graph = graph_from_checkpoint(ckpt)
    reach = reachability(graph)
    return ckpt, graph, reach, audit(graph, reach, source=os.path.basename(path))


def _write_json(path: str, data) -> None:
    from netgraph.io import atomic_write

    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2)

    atomic_write(path, write)


def _summary(rows: list[dict]) -> list[dict]:
    """viz's per-cell mean ± sd, plus the mean effective count (for the tables)."""
    import viz

    out = viz.ablation_summary(rows)
    for e in out:
        mine = [r for r in rows if r["method"] == e["method"] and r["rate"] == e["rate"]]
        e["effective_count_mean"] = sum(r["effective"] for r in mine) / len(mine)
    return out


def _unit_counts(viz, graph, reach) -> tuple[int, int]:
    """(dead, unused) units over every group a figure draws (viz.unit_states)."""
    states = viz.unit_states(graph, reach)
    return (sum(int((v == 1).sum()) for v in states.values()), sum(int((v == 0).sum()) for v in states.values()))


def _machine() -> str:
    import platform

    return f"{os.cpu_count()} CPU cores ({platform.machine()}), load average {os.getloadavg()[0]:.1f} at the end"


# -- the command --------------------------------------------------------------------------------

def run(args) -> int:
    from netgraph.errors import NetgraphError
    from netgraph.io import atomic_dir, output_dir

    if not 0.0 < args.rate < 1.0:
        raise NetgraphError(f"--rate must be in (0, 1), got {args.rate}")
    epochs = args.epochs or (8 if args.quick else 40)
    if epochs < 2:
        raise NetgraphError(f"--epochs must be at least 2, got {epochs}")
    seeds = args.seeds or (2 if args.quick else 3)
    if seeds < 1 or args.jobs < 1:
        raise NetgraphError(f"--seeds and --jobs must be at least 1, got {seeds} and {args.jobs}")
    out = output_dir(args.out, force=args.force)  # refused before any training
    t0 = time.perf_counter()

    def log(msg: str) -> None:  # wall time, and CPU time of this process and its finished workers
        cpu = sum(os.times()[:4])
        print(f"[{time.perf_counter() - t0:6.1f}s wall, {cpu:6.1f}s cpu] {msg}", file=sys.stderr, flush=True)

    state: dict = {}
    atomic_dir(out, lambda tmp: _build(tmp, args, epochs, seeds, t0, log, state), force=args.force)
    for line in state["printed"]:
        print(line)
    print(f"report: {os.path.join(out, 'index.html')} ({state['seconds']:.0f} s)")
    return 0


def _build(tmp: str, args, epochs: int, seeds: int, t0: float, log, state: dict) -> None:
    import viz
    from netgraph.io import repair_checkpoint

    rates = QUICK_RATES if args.quick else DIGITS_RATES
    seed_list = list(range(args.seed, args.seed + seeds))
    for sub in ("digits", "gcn"):
        os.makedirs(os.path.join(tmp, sub))
    common = dict(epochs=epochs, device=args.device, progress=False)
    jobs, cells = [], []  # cells: (sweep, method, rate, seed, relative path)
    for seed in seed_list:
        for method, rate in [("dense", 0.0)] + [(m, r) for r in rates for m in ("mp", "mp-tc")]:
            rel = f"digits/mlp_{method}_{rate:g}_s{seed}.pt"
            jobs.append(dict(model="mlp", dataset="digits", mlp_hidden=DIGITS_HIDDEN, method=method, rate=rate,
                             seed=seed, out=os.path.join(tmp, rel), **common))
            cells.append(("digits", method, rate, seed, rel))
        for method, rate in (("dense", 0.0), ("mp", args.rate), ("mp-tc", args.rate)):
            rel = f"gcn/gcn_sbu_{method}_s{seed}.pt"
            jobs.append(dict(model="gcn", preset="sbu", dataset="synthetic-sbu", method=method, rate=rate, seed=seed,
                             out=os.path.join(tmp, rel), **common))
            cells.append(("gcn", method, rate, seed, rel))
    for method in ("mp", "mp-tc"):
        rel = f"mlp_tiny_{method}.pt"
        jobs.append(dict(model="mlp", dataset="digits", mlp_hidden=TINY_HIDDEN, method=method, rate=TINY_RATE,
                         seed=args.seed, out=os.path.join(tmp, rel), **common))
    log(f"training {len(jobs)} models ({epochs} epochs each) on {args.jobs} process(es)")
    results = _run_jobs(jobs, args.jobs, log)

    log("auditing every checkpoint from its file")
    from trainer import load_dataset

    sizes = {}
    for ds in ("digits", "synthetic-sbu"):
        d = load_dataset(ds)
        sizes[ds] = (int(d.y_test.shape[0]), int(d.classes))
    sweeps: dict[str, list[dict]] = {"digits": [], "gcn": []}
    audited = {}
    for sweep, method, rate, seed, rel in cells:
        path = os.path.join(tmp, rel)
        ckpt, graph, reach, rep = _audit_file(path)
        audited[rel] = (ckpt, graph, reach, rep)
        s = rep.summary
        ds = "digits" if sweep == "digits" else "synthetic-sbu"
        n_test, classes = sizes[ds]
        sweeps[sweep].append({"dataset": ds, "method": LABELS[method], "rate": rate, "seed": seed,
                              "kept": s.kept, "effective": s.effective, "dead": s.dead,
                              "effective_pct": 100.0 * s.effective / s.kept if s.kept else 0.0,
                              "accuracy": 100.0 * results[path]["accuracy"], "n_test": n_test, "classes": classes,
                              "checkpoint": rel})
    headline_rate = HEADLINE_RATE if HEADLINE_RATE in rates else max(rates)
    info = {}
    for sweep, ds, hr in (("digits", "digits", headline_rate), ("gcn", "synthetic-sbu", args.rate)):
        n_test, classes = sizes[ds]
        info[sweep] = {"dataset": ds, "rows": sweeps[sweep], "summary": _summary(sweeps[sweep]),
                       "methods": [LABELS["mp"], LABELS["mp-tc"]], "dense": LABELS["dense"], "headline_rate": hr,
                       "n_test": n_test, "chance": 100.0 / classes, "seeds": seed_list, "epochs": epochs}
        _write_json(os.path.join(tmp, f"sweep_{sweep}.json"), info[sweep])

    log("repairing one MP checkpoint of the GCN (prune, reconnect)")
    s0 = args.seed
    main = {m: f"gcn/gcn_sbu_{m}_s{s0}.pt" for m in ("mp", "mp-tc")}
    repaired = {}
    for mode in ("prune", "reconnect"):
        rel = f"gcn/gcn_sbu_mp_s{s0}_{mode}.pt"
        repair_checkpoint(os.path.join(tmp, main["mp"]), os.path.join(tmp, rel), mode)
        repaired[mode] = (rel, _audit_file(os.path.join(tmp, rel)))
    for m, rel in main.items():
        _write_json(os.path.join(tmp, f"audit_gcn_{m}.json"), audited[rel][3].to_dict())
    for mode, (rel, a) in repaired.items():
        _write_json(os.path.join(tmp, f"audit_gcn_mp_{mode}.json"), a[3].to_dict())

    log("drawing the figures")
    figures: dict[str, tuple[str, str]] = {}

    def save(fig, slot: str, name: str, caption: str) -> None:
        viz.save_figure(fig, os.path.join(tmp, name))
        figures[slot] = (name, caption)

    # the headline: the sweep and, at the headline rate, which inputs still reach an output
    inputs, input_counts = {}, {}
    for m in ("mp", "mp-tc"):
        _, graph, reach, _ = audited[f"digits/mlp_{m}_{headline_rate:g}_s{s0}.pt"]
        st = viz.input_states(graph, reach)
        inputs[LABELS[m]] = st
        input_counts[LABELS[m]] = int((st == 2).sum())
    d = info["digits"]
    save(viz.plot_headline(d["rows"], inputs, shape=(8, 8), methods=[LABELS[k] for k in ("mp", "mp-tc", "dense")],
                           inputs_title=f"the 64 input pixels at {100 * headline_rate:g} %, seed {s0}",
                           title=f"MLP on digits: MP vs MP + TC ({len(seed_list)} seeds)"),
         "headline", "headline.png",
         f"Left: % of kept weights that are effective, and test accuracy, against the pruning rate "
         f"(digits, real data; mean ± sd over {len(seed_list)} seeds, dots = single runs; dashed: the dense MLP, "
         f"dotted: chance {d['chance']:.3g} %; test set {d['n_test']} images, one image = "
         f"{100 / d['n_test']:.2g} points). Right: the 64 input pixels at {100 * headline_rate:g} % (seed {s0}); "
         + ", ".join(f"{k}: {v} of 64 still reach an output" for k, v in input_counts.items())
         + " (dark: reaches an output; vermillion: dead input; grey: unused).")
    grid_cells = {(LABELS[m], r): audited[f"digits/mlp_{m}_{r:g}_s{s0}.pt"][0]
                  for m in ("mp", "mp-tc") for r in rates}
    views = viz.grid_views(grid_cells, "layers.0.weight")
    dead_by_cell = {k: int(v.dead.sum()) for k, v in views.items()}
    worst = max(dead_by_cell.items(), key=lambda kv: kv[1])
    tc_dead = sum(v for (m, _), v in dead_by_cell.items() if m == LABELS["mp-tc"])
    save(viz.plot_mask_grid(views, methods=[LABELS["mp"], LABELS["mp-tc"]], rates=list(rates),
                            title=f"layers.0.weight (64 inputs -> 128 units), seed {s0}\n"
                                  "across pruning rates, as Fig. 2 of the coarse-to-fine paper"),
         "grid", "mask_grid.png",
         f"The first layer's mask, methods in rows and rates in columns (seed {s0}). Dead weights in this layer: "
         f"at most {worst[1]} ({worst[0][0]} at {100 * worst[0][1]:g} %); {tc_dead} in all MP + TC cells together.")
    for m in ("mp", "mp-tc"):
        ckpt, graph, reach, rep = audited[main[m]]
        s = rep.summary
        save(viz.plot_layer_masks(viz.checkpoint_views(ckpt, reach), show_constant=True,
                                  title=f"GCN, {LABELS[m]} at {100 * args.rate:g} % (seed {s0}): masks"),
             f"gcn_masks_{m}", f"gcn_masks_{m}.png",
             f"GCN, {LABELS[m]}: every pruned weight tensor; {s.kept:,} kept, {s.dead:,} dead "
             f"({s.constant:,} constant).")
        dead_u, unused_u = _unit_counts(viz, graph, reach)
        save(viz.plot_audit(rep, graph, reach, title=f"GCN, {LABELS[m]}: per-layer connectivity"),
             f"gcn_connectivity_{m}", f"gcn_connectivity_{m}.png",
             f"GCN, {LABELS[m]}: kept weights per layer split into effective / not accessible / not "
             f"coaccessible / constant; over all groups drawn (input and flatten included), {dead_u} dead and "
             f"{unused_u} unused units.")
    ckpt, graph, reach, rep = repaired["prune"][1]
    s = rep.summary
    before = audited[main["mp"]][3].summary
    claim = ("no dead weight remains" if s.dead == 0 else
             f"{s.dead:,} dead weights remain, {s.constant:,} of them constant (fed by a bias: removing them "
             "would change the outputs)")
    save(viz.plot_audit(rep, graph, reach, title="GCN, MP after `netgraph repair --mode prune`"),
         "gcn_prune", "gcn_connectivity_mp_prune.png",
         f"MP after repair --mode prune: {before.dead - s.dead:,} of {before.dead:,} dead weights removed; {claim}.")
    tiny = {m: _audit_file(os.path.join(tmp, f"mlp_tiny_{m}.pt")) for m in ("mp", "mp-tc")}
    (_, ga, ra, rep_a), (_, gb, rb, rep_b) = tiny["mp"], tiny["mp-tc"]
    acc = {m: 100 * results[os.path.join(tmp, f"mlp_tiny_{m}.pt")]["accuracy"] for m in ("mp", "mp-tc")}
    save(viz.plot_network_pair(ga, gb, labels=(LABELS["mp"], LABELS["mp-tc"]),
                               notes=(f"({acc['mp']:.1f} % test accuracy)", f"({acc['mp-tc']:.1f} % test accuracy)"),
                               reach_a=ra, reach_b=rb,
                               title=f"64-12-10-10 MLP on digits at {100 * TINY_RATE:g} %, seed {s0}"),
         "network", "network_pair.png",
         f"A tiny MLP drawn unit by unit, both methods on one layout. MP: {rep_a.summary.dead} dead weights, "
         "{} dead and {} unused units; ".format(*_unit_counts(viz, ga, ra))
         + f"MP + TC: {rep_b.summary.dead} dead weights, "
         "{} dead and {} unused units (inputs included). ".format(*_unit_counts(viz, gb, rb))
         + "Bold: effective connections the other model lacks; green rings: units in another state.")

    from ._report import render, summary_sentences

    summary = summary_sentences(info["digits"], info["gcn"])
    gacc = {r["checkpoint"]: r["accuracy"] / 100 for r in info["gcn"]["rows"]}
    audits = [(f"{LABELS[m]} (seed {s0})", audited[main[m]][3].to_dict(), gacc[main[m]]) for m in ("mp", "mp-tc")]
    audits += [(f"MP, repaired ({mode})", a[3].to_dict(), None) for mode, (_, a) in repaired.items()]
    layers = [(f"GCN, {LABELS[m]}", audited[main[m]][3].to_dict()) for m in ("mp", "mp-tc")]
    files = sorted(os.path.relpath(os.path.join(dp, f), tmp) for dp, _, fs in os.walk(tmp) for f in fs
                   if f.endswith((".pt", ".json")))
    seconds = time.perf_counter() - t0
    settings = (f"Settings: seeds {', '.join(map(str, seed_list))}; {epochs} epochs per run; digits MLP "
                f"64-{'-'.join(map(str, DIGITS_HIDDEN))}-10; GCN rate {100 * args.rate:g} %; "
                f"{args.jobs} training process(es), one torch thread each.")
    page = render(summary=summary, seconds=seconds, machine=_machine(), digits=info["digits"], gcn=info["gcn"],
                  figures=figures, audits=audits, layers=layers, files=files, settings=settings)
    from netgraph.io import atomic_write

    def write(t):
        with open(t, "w", encoding="utf-8") as fh:
            fh.write(page)

    atomic_write(os.path.join(tmp, "index.html"), write)
    _write_json(os.path.join(tmp, "timing.json"), {"seconds": seconds, "cpu_seconds": sum(os.times()[:4]),
                                                   "jobs": args.jobs, "runs": len(jobs), "machine": _machine()})
    printed = []
    for sweep in ("digits", "gcn"):
        inf = info[sweep]
        for e in inf["summary"]:
            if e["rate"] == inf["headline_rate"] or e["rate"] == 0:
                printed.append(f"{inf['dataset']:14s} {e['method']:8s} {100 * e['rate']:5g} %  effective "
                               f"{e['effective_mean']:5.1f} ± {e['effective_sd']:4.1f} %  accuracy "
                               f"{e['accuracy_mean']:5.1f} ± {e['accuracy_sd']:4.1f} %  ({e['runs']} seeds)")
    state["printed"] = printed
    state["seconds"] = seconds
    log("done")
