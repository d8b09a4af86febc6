"""Models: parameter counts, declared topology, compaction for the speedup measurement, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netgraph import reachability
from netgraph.errors import NetgraphError
from trainer import FPHA_EDGES, GCN, MLP, SBU_EDGES, TrainConfig, gcn_preset, resolve_device, train
from trainer._ablate import _compact_gcn, measure_speedup


def test_fpha_preset_has_the_papers_size():
    cfg = gcn_preset("fpha", n_nodes=21, in_features=96, classes=45, edges=FPHA_EDGES)
    m = GCN(cfg, generator=torch.Generator().manual_seed(0))
    # 16·32·96 + 128·32 + 700·21·128 + 45·700, against 1,967,616 in tc-pruning Table 2
    assert m.n_prunable() == 16 * 32 * 96 + 128 * 32 + 700 * 21 * 128 + 45 * 700 == 1_966_348
    assert m.n_parameters() == 1_966_348 + 16 * 21 * 21 + 32 + 128 + 700 + 45


def test_gcn_forward_matches_its_formula():
    """Σ_k softmax(A_k) X W_kᵀ, then Â·H·W_convᵀ, node-major flatten, fc, out — written out with loops."""
    cfg = gcn_preset("sbu", n_nodes=30, in_features=96, classes=8, edges=SBU_EDGES)
    m = GCN(cfg, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=p.dtype))
    x = torch.randn(2, 30, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    w = {n: m.weight(n, None) for n in m.prunable()}
    h = torch.zeros(2, 30, cfg.head_channels, dtype=torch.float64)
    for k in range(cfg.heads):
        a = torch.softmax(m.attention.logits[k], dim=-1)
        h += a @ x @ w[f"heads.{k}.weight"].t()
    h = torch.relu(h + m.attention.bias)
    h = torch.relu(m.adjacency.double() @ h @ w["conv.weight"].t() + m.conv.bias)
    flat = torch.stack([torch.cat([h[b, v] for v in range(30)]) for b in range(2)])  # node 0's channels first
    h = torch.relu(flat @ w["fc.weight"].t() + m.fc.bias)
    expect = h @ w["out.weight"].t() + m.out.bias
    torch.testing.assert_close(m(x), expect)


def test_dead_by_graph_means_dead_in_the_model():
    """Zeroing what the model's graph calls dead does not change the GCN's outputs."""
    cfg = gcn_preset("sbu", n_nodes=30, in_features=96, classes=8, edges=SBU_EDGES)
    m = GCN(cfg, generator=torch.Generator().manual_seed(0)).double()
    gen = torch.Generator().manual_seed(3)
    masks = {n: (torch.rand(p.shape, generator=gen) < 0.03) for n, p in m.prunable().items()}
    g = m.graph({n: v.numpy() for n, v in masks.items()})
    r = reachability(g)
    from netgraph import pair_selector

    live = {}
    for b in g.weighted_blocks:
        live[b.name] = masks[b.name] & torch.from_numpy(
            np.array(pair_selector(b, r.accessible[b.src], r.coaccessible[b.dst])))
    assert sum(int((masks[n] & ~live[n]).sum()) for n in masks) > 0  # something is dead
    x = torch.randn(4, 30, 96, dtype=torch.float64, generator=gen)
    with torch.no_grad():  # biases are zero, so no constant path either
        torch.testing.assert_close(m(x, {n: v.double() for n, v in masks.items()}),
                                   m(x, {n: v.double() for n, v in live.items()}), rtol=1e-9, atol=1e-12)


def test_compaction_keeps_units_with_kept_weights_on_both_sides():
    cfg = gcn_preset("fpha", n_nodes=21, in_features=96, classes=45, edges=FPHA_EDGES)
    m = GCN(cfg, generator=torch.Generator().manual_seed(0))
    masks = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in m.prunable().items()}
    masks["heads.3.weight"][:5, :7] = True        # head 3: channels 0..4 from features 0..6
    masks["conv.weight"][:10, :3] = True          # filters 0..9 from channels 0..2
    fc = masks["fc.weight"].reshape(700, 21, 128)
    fc[:50, :, :4] = True                         # hidden 0..49 from filters 0..3 (all nodes)
    masks["out.weight"][:, :20] = True            # classes from hidden 0..19
    small, feats = _compact_gcn(m, masks)
    c = small.config
    assert (c.heads, c.in_features, c.head_channels, c.filters, c.hidden) == (1, 7, 3, 4, 20)
    assert feats.sum() == 7
    assert measure_speedup(m, masks, torch.randn(8, 21, 96), repeats=3) > 0


def test_mlp_graph_and_layouts():
    m = MLP((64, 16, 10), generator=torch.Generator().manual_seed(0))
    assert [b.name for b in m.graph().weighted_blocks] == ["layers.0.weight", "layers.1.weight"]
    assert m.block_layouts()["layers.1.weight"].columns is False


def test_device_resolution():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(NetgraphError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(NetgraphError, match="unknown device"):
        resolve_device("tpu9")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda_with_device_auto():
    res = train(TrainConfig(method="mp-tc", rate=0.98, epochs=3, progress=False, device="auto"))
    assert res.audit["summary"]["dead"] == 0 and res.kept == round(0.02 * res.prunable)


def test_cli_method_names_match_the_trainer():
    from netgraph.cli import train as cmd
    from trainer import METHODS

    assert cmd.METHODS == METHODS
