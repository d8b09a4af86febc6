"""Run (or collect) the ablation on the synthetic datasets and write RESULTS_ablation.md.

Usage::

    python benchmarks/ablation.py --out /tmp/abl                  # runs both grids, then writes the report
    python benchmarks/ablation.py --out /tmp/abl --collect        # only re-renders from /tmp/abl/*/ablation.json

The two grids are the ones in RESULTS_ablation.md (sized for ≤ 20 minutes on 2 CPU cores):
``synthetic-sbu``: all tc-pruning rates, coarse/fine/CTF at 90/95/98 %, our rows, 40 epochs;
``synthetic-fpha`` (2 M weights): the same grid, 120 full-batch epochs (batch 600, as in
tc-pruning §5; on CPU a full batch costs about as much as one 64-sample step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

GRIDS = {
    "sbu": ["--datasets", "synthetic-sbu", "--epochs", "40"],
    "fpha": ["--datasets", "synthetic-fpha", "--epochs", "120", "--batch-size", "600"],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the per-grid ablation.json / ablation.md")
    ap.add_argument("--collect", action="store_true", help="do not run; read existing results")
    ap.add_argument("--report", default=os.path.join(os.path.dirname(__file__), "RESULTS_ablation.md"))
    args = ap.parse_args(argv)
    from trainer._ablate import ablation_markdown

    walls = {}
    for name, grid in GRIDS.items():
        folder = os.path.join(args.out, name)
        if not args.collect:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "netgraph", "ablate", *grid, "--out", folder, "--no-progress"],
                           check=True)
            walls[name] = time.perf_counter() - t
    sections = []
    for name, grid in GRIDS.items():
        with open(os.path.join(args.out, name, "ablation.json")) as fh:
            result = json.load(fh)
        wall = walls.get(name) or sum(r["seconds"] for r in result["rows"])
        sections.append(f"## {name}\n\nCommand: `netgraph ablate {' '.join(grid)} --out DIR`  \n"
                        f"Wall time: {wall / 60:.1f} min ({platform.machine()}, {os.cpu_count()} cores, CPU)\n\n"
                        + ablation_markdown(result))
    with open(args.report, "w") as fh:
        fh.write("# Ablation results\n\n" + "\n".join(sections))
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
