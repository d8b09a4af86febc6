"""One MP+TC training step vs one plain MP step (target ≤ 1.25×), and the rank-1 TC step vs the
former full-shape form, measured in one run with the sides interleaved.

    OMP_NUM_THREADS=1 python benchmarks/tc_step.py --repeats 7

A step is forward, loss (CE + the pruner's terms), backward and an Adam step, through
:class:`trainer.Pruner` (the code path of ``netgraph train``).  Each case times the three
sides round-robin (``mp``, ``mp-tc`` rank-1, ``mp-tc`` full-shape), ``--steps`` steps per
sample, ``--repeats`` samples; the ratios are of minima and of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F


def _full_shape_method():
    """MP+TC in the former form: Φ at every weight's full shape, straight-through masks for all."""
    from trainer import budget_loss, method_for, phi, straight_through, tc_factors, tc_terms

    class FullShapeTC(type(method_for("mp-tc"))):
        def relaxed(self, pr):
            psi = self.soft(pr, self.crispness(pr))
            crisp = {n: (p.detach() >= 0.5) for n, p in psi.items()}
            factors = tc_factors(pr.plan, *phi(pr.plan, {n: straight_through(crisp[n], psi[n]) for n in psi}))
            masks = {n: psi[n] * factors[n] for n in psi}
            effective, dead = tc_terms(psi, factors)
            return masks, {"budget": budget_loss(effective, pr.c, pr.lam), "eta": pr.eta * dead / max(pr.c, 1.0)}

    return FullShapeTC()


def _cases():
    from netgraph.testing.models import ResNet
    from trainer import GCN, MLP, gcn_preset, synthetic_skeletons

    def gcn(preset):
        d = synthetic_skeletons(preset)

        def make():
            cfg = gcn_preset(preset, n_nodes=d.n_nodes, in_features=d.in_features, classes=d.classes, edges=d.edges)
            return GCN(cfg, generator=torch.Generator().manual_seed(0)), None
        return make, d.x_train[:64], d.y_train[:64]

    def mlp():
        return MLP((784, 3500, 3500, 10), generator=torch.Generator().manual_seed(0)), None

    def resnet():
        torch.manual_seed(0)
        return ResNet((16, 32, 64, 128), (2, 2, 2, 2), 10, stem=3), (1, 3, 16, 16)

    g = torch.Generator().manual_seed(0)
    return {
        "GCN fpha, batch 64": gcn("fpha"),
        "GCN sbu, batch 64": gcn("sbu"),
        "MLP 784-3500-3500-10, batch 64": (mlp, torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)),
        "ResNet-18 layout ¼ width (traced), 16×16, batch 64": (resnet, torch.randn(64, 3, 16, 16, generator=g),
                                                            torch.randint(0, 10, (64,), generator=g)),
    }


def _side(make, x, method, rate):
    from trainer import Pruner

    model, shape = make()
    pr = Pruner("mp-tc" if method != "mp" else "mp", rate=rate, epochs=10)
    if method == "full":
        pr.method = _full_shape_method()
    pr.prepare(model, shape if shape is None else x[:1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, pr, opt


def _steps(side, x, y, n):
    model, pr, opt = side
    for _ in range(n):
        loss = F.cross_entropy(model(x), y) + pr.loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rate", type=float, default=0.9)
    p.add_argument("--cases", nargs="*", default=None)
    a = p.parse_args(argv)
    print(f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, "
          f"repeats {a.repeats} × {a.steps} steps, rate {a.rate}")
    print("| case | mp step ms (min / med) | mp-tc rank-1 / mp (min / med) | mp-tc full-shape / mp (min / med) |")
    print("|---|---|---|---|")
    for name, (make, x, y) in _cases().items():
        if a.cases and not any(c in name for c in a.cases):
            continue
        sides = {m: _side(make, x, m, a.rate) for m in ("mp", "rank1", "full")}
        times = {m: [] for m in sides}
        for m in sides:  # warm-up
            _steps(sides[m], x, y, 1)
        for _ in range(a.repeats):
            for m in sides:
                t0 = time.perf_counter()
                _steps(sides[m], x, y, a.steps)
                times[m].append((time.perf_counter() - t0) / a.steps)
        mn = {m: min(v) for m, v in times.items()}
        md = {m: statistics.median(v) for m, v in times.items()}
        print(f"| {name} | {1e3 * mn['mp']:.1f} / {1e3 * md['mp']:.1f} | {mn['rank1'] / mn['mp']:.2f} / "
              f"{md['rank1'] / md['mp']:.2f} | {mn['full'] / mn['mp']:.2f} / {md['full'] / md['mp']:.2f} |", flush=True)
    print(f"load after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
