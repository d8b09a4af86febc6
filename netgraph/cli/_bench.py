"""``netgraph bench``: every row of issue 12's table, measured the honest way.

* Sides are **interleaved** (read, before, after, read, before, after, …), each timed
  ``repeats`` (≥ 5) times; the table gives min and median and the ratio of the mins and of
  the medians.  The load average is printed with every row.
* Whole commands and "imports paid" runs are **child processes** (a fresh interpreter each
  time for commands; one interpreter per side for in-process timings, imports done first).
* "before" is the same measurement on another source tree (``--before DIR``, e.g.
  ``git archive f5ed470 | tar -x -C DIR``), put first on ``PYTHONPATH`` of the child.
* networkx uses integer node ids; its effective count must equal netgraph's.
* Peak memory is ``ru_maxrss`` of the auditing child process.
* Files are generated in a temporary folder (``--tmp``) and removed afterwards.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

__all__ = ["SIZES", "run_bench", "networkx_effective", "format_markdown"]

# MLP widths for each size (no two consecutive widths equal: a plain chain, no possible skip)
SIZES = {"1e6": [784, 1000, 200, 10], "1e7": [2048, 4096, 512, 10], "1e8": [8000, 8192, 4096, 512, 10]}


def networkx_effective(masks: list[np.ndarray]) -> int:
    """The audit's effective count by networkx, integer node ids: descendants of a super-source,
    ancestors of a super-sink, edges between the two."""
    import networkx as nx

    offs = np.cumsum([0, masks[0].shape[1]] + [m.shape[0] for m in masks]).tolist()
    G = nx.DiGraph()
    G.add_nodes_from(range(offs[-1]))
    edges = []
    for ell, m in enumerate(masks):
        o, i = np.nonzero(m)
        edges.append(((i + offs[ell]).tolist(), (o + offs[ell + 1]).tolist()))
    for u, v in edges:
        G.add_edges_from(zip(u, v))
    src, snk = -1, -2
    G.add_edges_from((src, i) for i in range(offs[1]))
    G.add_edges_from((j, snk) for j in range(offs[-2], offs[-1]))
    acc = nx.descendants(G, src)
    coacc = nx.ancestors(G, snk)
    return sum(sum(1 for a, b in zip(u, v) if a in acc and b in coacc) for u, v in edges)


def _write_mlp(folder: str, size: str, rate: float, seed: int = 0) -> tuple[dict[str, str], list[np.ndarray]]:
    """A random MLP pruned at ``rate`` in torch's prune format, as .pt and .safetensors."""
    import torch
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    widths = SIZES[size]
    sd, masks = {}, []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        m = rng.random((b, a), dtype=np.float32) >= rate
        sd[f"fc{i}.weight_orig"] = rng.standard_normal((b, a), dtype=np.float32)
        sd[f"fc{i}.weight_mask"] = m.astype(np.float32)
        sd[f"fc{i}.bias"] = rng.standard_normal(b, dtype=np.float32)
        masks.append(m)
    paths = {"safetensors": os.path.join(folder, f"mlp{size}-{rate}.safetensors"),
             "torch": os.path.join(folder, f"mlp{size}-{rate}.pt")}
    save_file(sd, paths["safetensors"])
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, paths["torch"])
    return paths, masks


def _env(tree: str | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if tree:
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _time_child(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.decode()[-500:]}")
    return dt


_READ = {
    "safetensors": "from safetensors.numpy import load_file; load_file({p!r})",
    "torch": "import torch; torch.load({p!r}, weights_only=True, map_location='cpu')",
}

# In-process timing child: imports first, then `repeats` interleaved (read, audit) pairs.
_INPROC = r'''
import json, sys, time, statistics
p, fmt, mode, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if fmt == "safetensors":
    from safetensors.numpy import load_file as read
else:
    import torch
    read = lambda q: torch.load(q, weights_only=True, map_location="cpu")
from netgraph import audit, graph_from_checkpoint, load_checkpoint
if mode == "after":
    from netgraph.io._stream import audit_path
    run = lambda: audit_path(p).report
else:
    run = lambda: audit(graph_from_checkpoint(load_checkpoint(p)), source=p)
run(); read(p)  # warm: imports and page cache
r, a = [], []
for _ in range(repeats):
    t = time.perf_counter(); read(p); r.append(time.perf_counter() - t)
    t = time.perf_counter(); rep = run(); a.append(time.perf_counter() - t)
print(json.dumps({"read": r, "audit": a, "effective": rep.summary.effective}))
'''

# networkx child: masks from the file, then interleaved netgraph / networkx
_NX = r'''
import importlib.util, json, sys, time
import numpy as np
p, mode, repeats, here = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
spec = importlib.util.spec_from_file_location("bench_networkx", here)  # this tree's networkx_effective,
bench = importlib.util.module_from_spec(spec)                          # whichever tree is under test
spec.loader.exec_module(bench)
networkx_effective = bench.networkx_effective
from netgraph import audit, graph_from_checkpoint, load_checkpoint
ck = load_checkpoint(p)
masks = [w.mask for w in ck.prunable().values()]
if mode == "after":
    from netgraph.io._stream import audit_arrays
    run = lambda: audit_arrays(ck)
else:
    run = lambda: audit(graph_from_checkpoint(ck))
ng, nxt = [], []
for _ in range(repeats):
    t = time.perf_counter(); rep = run(); ng.append(time.perf_counter() - t)
    t = time.perf_counter(); eff = networkx_effective(masks); nxt.append(time.perf_counter() - t)
    if eff != rep.summary.effective:
        raise SystemExit(f"networkx counts {eff} effective weights, netgraph {rep.summary.effective}")
print(json.dumps({"netgraph": ng, "networkx": nxt}))
'''

_PEAK_KIB = r'''
def peak_kib():  # VmHWM: ru_maxrss is carried across exec (it would include the parent's peak)
    with open("/proc/self/status") as fh:
        return int([l for l in fh if l.startswith("VmHWM:")][0].split()[1])
'''

_PEAK = _PEAK_KIB + r'''
import json, os, sys
p, out = sys.argv[1], sys.argv[2]
sys.stdout = open(os.devnull, "w")
from netgraph.cli import main
rc = main(["audit", p, "--format", "json"])
with open(out, "w") as fh:
    json.dump({"rc": rc, "peak_kib": peak_kib()}, fh)
'''


def _stats(xs: list[float]) -> tuple[float, float]:
    return min(xs), statistics.median(xs)


def _ratio(num: list[float], den: list[float]) -> str:
    (a, b), (c, d) = _stats(num), _stats(den)
    return f"{a / c:.2f} / {b / d:.2f}"


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')} load {_load()}] {msg}", file=sys.stderr, flush=True)


def _log_row(r: dict) -> None:  # the full row as it is measured (a long run leaves its partial table)
    print(f"| {r['goal']} | {r['target']} | {r.get('before', '-')} | {r.get('after', '-')} | "
          f"{r.get('detail', '')} | {r.get('load', '')} |", file=sys.stderr, flush=True)


def _bench_commands(paths, before, repeats, rows, size):
    """Row 1: the whole command vs one plain read, fresh interpreters, interleaved."""
    py = sys.executable
    for fmt, p in paths.items():
        sides = {"read": ([py, "-c", _READ[fmt].format(p=p)], _env(None)),
                 "after": ([py, "-m", "netgraph", "audit", p, "--format", "json"], _env(None))}
        if before:
            sides["before"] = ([py, "-m", "netgraph", "audit", p, "--format", "json"], _env(before))
        load0 = _load()
        times = {k: [] for k in sides}
        for _ in range(repeats):
            for k, (argv, env) in sides.items():
                times[k].append(_time_child(argv, env))
        rows.append({"goal": f"whole `netgraph audit` vs one plain read, {size} {fmt}", "target": "≤ 1.5×",
                     "before": _ratio(times["before"], times["read"]) if before else "-",
                     "after": _ratio(times["after"], times["read"]),
                     "detail": _detail(times), "load": f"{load0} → {_load()}"})
        _log(rows[-1]["goal"] + ": " + rows[-1]["after"])
        _log_row(rows[-1])


def _detail(times: dict) -> str:
    return ", ".join(f"{k} {min(v):.3f}/{statistics.median(v):.3f} s" for k, v in times.items())


def _child_json(argv, env, timeout=3600) -> dict:
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {out.stderr[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _bench_inproc(paths, before, repeats, rows, size):
    """Row 2: the audit in process (imports paid) vs one read in the same process."""
    py = sys.executable
    for fmt, p in paths.items():
        load0 = _load()
        res = {}
        for _ in range(1):  # the sides alternate inside each child; children run back to back
            res["after"] = _child_json([py, "-c", _INPROC, p, fmt, "after", str(repeats)], _env(None))
            if before:
                res["before"] = _child_json([py, "-c", _INPROC, p, fmt, "before", str(repeats)], _env(before))
        if before and res["before"]["effective"] != res["after"]["effective"]:
            raise RuntimeError("before and after disagree on the effective count")
        rows.append({"goal": f"audit in process (imports paid) vs the read, {size} {fmt}", "target": "≤ 2×",
                     "before": _ratio(res["before"]["audit"], res["before"]["read"]) if before else "-",
                     "after": _ratio(res["after"]["audit"], res["after"]["read"]),
                     "detail": "after: " + _detail({"read": res["after"]["read"], "audit": res["after"]["audit"]})
                     + ("; before: " + _detail({"read": res["before"]["read"], "audit": res["before"]["audit"]})
                        if before else ""),
                     "load": f"{load0} → {_load()}"})
        _log(rows[-1]["goal"] + ": " + rows[-1]["after"])
        _log_row(rows[-1])


def _bench_networkx(path, before, repeats, rows, size):
    py = sys.executable
    load0 = _load()
    after = _child_json([py, "-c", _NX, path, "after", str(repeats), __file__], _env(None))
    row = {"goal": f"networkx / netgraph, same reachability, integer node ids, {size}", "target": "≥ 300×",
           "after": _ratio(after["networkx"], after["netgraph"]),
           "detail": "after: " + _detail(after)}
    if before:
        b = _child_json([py, "-c", _NX, path, "before", str(repeats), __file__], _env(before))
        row["before"] = _ratio(b["networkx"], b["netgraph"])
        row["detail"] += "; before: " + _detail(b)
    else:
        row["before"] = "-"
    row["load"] = f"{load0} → {_load()}"
    rows.append(row)
    _log(row["goal"] + ": " + row["after"])
    _log_row(row)


def _write_big_safetensors(path: str, widths: list[int], rate: float, seed: int = 0) -> int:
    """A plain-format float32 chain with these widths, written chunk by chunk; returns the
    largest tensor's bytes."""
    header, off = {}, 0
    shapes = [(b, a) for a, b in zip(widths[:-1], widths[1:])]
    for i, (r, c) in enumerate(shapes):
        header[f"layer{i:02d}.weight"] = {"dtype": "F32", "shape": [r, c], "data_offsets": [off, off + r * c * 4]}
        off += r * c * 4
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for r_, c_ in shapes:
            step = max(1, (16 << 20) // (c_ * 4))
            for r in range(0, r_, step):
                w = rng.random((min(step, r_ - r), c_), dtype=np.float32)
                w[w < rate] = 0
                fh.write(w.tobytes())
    return max(r * c * 4 for r, c in shapes)


def _bench_memory(folder, before, rows, gib: float, largest_mib: int):
    """Row 4: peak RSS auditing a multi-GiB safetensors file (plain weights; one child per side)."""
    n = int(np.sqrt(largest_mib * (1 << 20) / 4)) - 8
    n_tensors = max(1, int(round(gib * 1024 / largest_mib)))
    widths = [n + i for i in range(n_tensors + 1)]  # distinct widths: a plain chain
    path = os.path.join(folder, "big.safetensors")
    _log(f"writing {n_tensors} float32 layers of about ({n}, {n})")
    largest = _write_big_safetensors(path, widths, rate=0.99)
    size = os.path.getsize(path)
    py = sys.executable
    res = {}
    for side, tree in (("after", None), ("before", before)):
        if side == "before" and not before:
            continue
        out = os.path.join(folder, f"peak-{side}.json")
        t0 = time.perf_counter()
        r = subprocess.run([py, "-c", _PEAK, path, out], env=_env(tree), capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            res[side] = f"failed ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode})"
            continue
        with open(out) as fh:
            d = json.load(fh)
        if d["rc"] not in (0, 1):  # a refusal is not a measurement
            res[side] = f"refused (exit {d['rc']}: {r.stderr.strip()[-160:]})"
            continue
        res[side] = f"{d['peak_kib'] / 2**20:.2f} GiB ({dt:.1f} s)"
    base = _child_json([py, "-c", _PEAK_KIB + "import json; import netgraph.io._stream, netgraph.cli.audit; "
                        "print(json.dumps({'peak_kib': peak_kib()}))"], _env(None))
    os.unlink(path)
    rows.append({"goal": f"peak memory auditing a {size / 2**30:.2f} GiB safetensors file, largest tensor "
                         f"{largest / 2**30:.2f} GiB", "target": f"≤ 1.2 × largest = {1.2 * largest / 2**30:.2f} GiB",
                 "before": res.get("before", "-"), "after": res["after"],
                 "detail": f"interpreter baseline (same imports) {base['peak_kib'] / 2**10:.0f} MiB; one run per side",
                 "load": _load()})
    _log(rows[-1]["goal"] + ": " + rows[-1]["after"])
    _log_row(rows[-1])


def _bench_startup(folder, before, repeats, rows):
    """Row 6a: fixed start-up: `netgraph --version` and the audit of a tiny safetensors file."""
    from safetensors.numpy import save_file

    p = os.path.join(folder, "small.safetensors")
    save_file({"fc1.weight": np.eye(4, dtype=np.float32), "fc2.weight": np.ones((2, 4), np.float32)}, p)
    py = sys.executable
    for what, argv in (("`netgraph --version`", [py, "-m", "netgraph", "--version"]),
                       ("`netgraph audit small.safetensors`", [py, "-m", "netgraph", "audit", p])):
        sides = {"after": _env(None)}
        if before:
            sides["before"] = _env(before)
        times = {k: [] for k in sides}
        load0 = _load()
        for _ in range(repeats):
            for k, env in sides.items():
                times[k].append(_time_child(argv, env))
        rows.append({"goal": f"start-up: {what}", "target": "≤ 0.5 s",
                     "before": "{:.2f} / {:.2f} s".format(*_stats(times["before"])) if before else "-",
                     "after": "{:.2f} / {:.2f} s".format(*_stats(times["after"])),
                     "detail": "min / median wall time of the whole process", "load": f"{load0} → {_load()}"})
        _log(rows[-1]["goal"] + ": " + rows[-1]["after"])
        _log_row(rows[-1])


def _bench_growth(sizes_paths, before, repeats, rows):
    """Row 6b: growth exponent of the in-process audit (log-log slope between the sizes), and
    the time at 100× fewer kept weights."""
    py = sys.executable
    for side, tree in (("after", None), ("before", before)):
        if side == "before" and not tree:
            continue
        pts = []
        for size, (paths, n_params) in sizes_paths.items():
            d = _child_json([py, "-c", _INPROC, paths["safetensors"], "safetensors", side, str(repeats)], _env(tree))
            pts.append((n_params, min(d["audit"])))
        xs, ys = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
        slope = float(np.polyfit(xs, ys, 1)[0]) if len(pts) > 1 else float("nan")
        detail = ", ".join(f"{n:.1e} params {t:.3f} s" for n, t in pts)
        rows.append({"goal": f"growth of the in-process audit with parameters ({side})", "target": "linear",
                     "before": f"exponent {slope:.2f}" if side == "before" else "",
                     "after": f"exponent {slope:.2f}" if side == "after" else "",
                     "detail": detail, "load": _load()})
        _log(rows[-1]["goal"] + ": " + detail)
        _log_row(rows[-1])


def run_bench(sizes=("1e6", "1e7"), *, repeats: int = 5, rate: float = 0.9, before: str | None = None,
              networkx_size: str | None = "1e7", memory_gib: float = 0.0, largest_mib: int = 1024,
              tmp: str | None = None, sparse_rate: float | None = 0.999) -> list[dict]:
    """Run every row; returns the rows (dicts with goal, target, before, after, detail, load)."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=tmp, prefix="netgraph-bench-") as folder:
        _bench_startup(folder, before, repeats, rows)
        sizes_paths = {}
        for size in sizes:
            _log(f"writing the {size} MLP")
            paths, masks = _write_mlp(folder, size, rate)
            n_params = sum(m.size for m in masks)
            sizes_paths[size] = (paths, n_params)
            _bench_commands(paths, before, repeats, rows, size)
            _bench_inproc(paths, before, repeats, rows, size)
            if networkx_size == size:
                _bench_networkx(paths["safetensors"], before, repeats, rows, size)
            del masks
        _bench_growth(sizes_paths, before, repeats, rows)
        if sparse_rate is not None and sizes:
            big = sizes[-1]
            paths, _ = _write_mlp(folder, big, sparse_rate)
            dense_paths = sizes_paths[big][0]
            py = sys.executable
            for side, tree in (("after", None), ("before", before)):
                if side == "before" and not tree:
                    continue
                a = _child_json([py, "-c", _INPROC, dense_paths["safetensors"], "safetensors", side, str(repeats)], _env(tree))
                b = _child_json([py, "-c", _INPROC, paths["safetensors"], "safetensors", side, str(repeats)], _env(tree))
                rows.append({"goal": f"100× fewer kept weights ({rate} → {sparse_rate}), {big}, time ratio ({side})",
                             "target": "≈ 100× less work where masks allow", side: _ratio(a["audit"], b["audit"]),
                             "before" if side == "after" else "after": "",
                             "detail": f"{rate}: {min(a['audit']):.3f} s, {sparse_rate}: {min(b['audit']):.3f} s",
                             "load": _load()})
                _log(rows[-1]["goal"] + ": " + rows[-1]["detail"])
                _log_row(rows[-1])
        if memory_gib > 0:
            _bench_memory(folder, before, rows, memory_gib, largest_mib)
    return rows


def format_markdown(rows: list[dict], trainer_rows: str | None = None) -> str:
    lines = ["| goal | target | before (min / median) | after (min / median) | times | load (1/5/15 min) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['goal']} | {r['target']} | {r.get('before', '-')} | {r.get('after', '-')} | "
                     f"{r.get('detail', '')} | {r.get('load', '')} |")
    out = "\n".join(lines)
    if trainer_rows:
        out += "\n\n" + trainer_rows
    return out
