"""Order inference without model code scales linearly (issue 10: 40,000 small weights ran past 120 s).

For n small 2x2 weights in one run: the time to infer the graph (``graph_from_checkpoint``,
possible skips included, since every width is equal) and to audit it, for n = 4,000, 10,000
and 40,000 in one key prefix (``layers.N.weight``), and the time to refuse n weights that
each have their own prefix (equal shapes: ambiguous).  The ratio column is seconds per
1,000 weights relative to the smallest n: about 1 for linear cost, about n/4,000 for
quadratic.  Run::

    OMP_NUM_THREADS=1 python benchmarks/infer_order.py
"""

from __future__ import annotations

import itertools
import string
import time

import numpy as np

from netgraph import ChainNotInferable, audit, checkpoint_from_state_dict, graph_from_checkpoint


def _one_prefix(n: int) -> dict:
    return {f"layers.{i}.weight": np.ones((2, 2), np.float32) for i in range(n)}


def _own_prefixes(n: int) -> dict:
    letters = itertools.product(string.ascii_lowercase, repeat=4)
    return {f"{''.join(next(letters))}.weight": np.ones((2, 2), np.float32) for _ in range(n)}


def main() -> None:
    rows = []
    for n in (4_000, 10_000, 40_000):
        ck = checkpoint_from_state_dict(_one_prefix(n))
        t0 = time.perf_counter()
        g = graph_from_checkpoint(ck)
        t1 = time.perf_counter()
        audit(g)
        t2 = time.perf_counter()
        ck2 = checkpoint_from_state_dict(_own_prefixes(n))
        t3 = time.perf_counter()
        try:
            graph_from_checkpoint(ck2)
            refused = False
        except ChainNotInferable:
            refused = True
        t4 = time.perf_counter()
        rows.append((n, t1 - t0, t2 - t1, t4 - t3, refused))
    base = rows[0][1] / rows[0][0]
    print("| weights | infer (s) | audit (s) | infer s/1k, ratio to 4k | own prefixes: refused in (s) |")
    print("|---|---|---|---|---|")
    for n, ti, ta, tr, refused in rows:
        print(f"| {n:,} | {ti:.2f} | {ta:.2f} | {1000 * ti / n:.3f}, {ti / n / base:.2f} | "
              f"{tr:.2f}{'' if refused else ' (NOT refused)'} |")


if __name__ == "__main__":
    main()
