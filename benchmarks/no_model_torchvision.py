"""torchvision state_dicts audited WITHOUT their model code (issue 8, item 3: no silent chain).

Each model is pruned at random (99 %, seed 0), saved as a state_dict, and run through
``netgraph audit FILE --format json`` (no ``--model``).  Every file must be refused in one line
(exit 2) or audited soundly: no weight the traced model (``trace_model(...).weight_states()``)
keeps alive may be called dead from the file alone.  Needs torchvision (not a dependency)::

    OMP_NUM_THREADS=1 python benchmarks/no_model_torchvision.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import torch

from netgraph import graph_from_checkpoint, load_checkpoint, reachability, trace_model

MODELS = [("resnet18", (1, 3, 64, 64)), ("vgg16_bn", (1, 3, 32, 32)), ("alexnet", (1, 3, 224, 224)),
          ("mobilenet_v2", (1, 3, 64, 64)), ("densenet121", (1, 3, 64, 64)), ("efficientnet_b0", (1, 3, 64, 64)),
          ("shufflenet_v2_x0_5", (1, 3, 64, 64)), ("squeezenet1_0", (1, 3, 64, 64))]


def main(rate: float = 0.99) -> None:
    import torchvision

    warnings.filterwarnings("ignore")
    tmp = tempfile.mkdtemp()
    print("| model | exit | file-only audit | traced (channel level) | live weights called dead | s |")
    print("|---|---|---|---|---|---|")
    for name, shape in MODELS:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                    mod.weight.mul_((torch.rand(mod.weight.shape, generator=gen) >= rate).float())
        path = os.path.join(tmp, name + ".pt")
        torch.save(model.state_dict(), path)
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "netgraph", "audit", path, "--format", "json"],
                             capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if run.returncode != 0:
            line = run.stderr.strip().split(": ", 3)[-1]
            print(f"| {name} | {run.returncode} | refused: {line[:110]}… | | | {seconds:.1f} |")
            continue
        rep = json.loads(run.stdout)["summary"]
        ckpt = load_checkpoint(path)
        graph = graph_from_checkpoint(ckpt)
        reach = reachability(graph)
        traced = trace_model(model, shape)
        masks = {k: w.mask for k, w in ckpt.prunable().items()}
        missed = sum(int((s.effective & ~reach.weight_states(graph.block(n), masks[n]).effective).sum())
                     for n, s in traced.weight_states().items())
        t = traced.audit(resolution="channel").summary
        print(f"| {name} | 0 | kept {rep['kept']:,}, effective {rep['effective']:,}, dead {rep['dead']:,} | "
              f"effective {t.effective:,}, dead {t.dead:,} | {missed} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
