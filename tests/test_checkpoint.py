"""Reading checkpoints: formats agree, chain inference, topology specs, repair files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as prune
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from netgraph import (
    ChainNotInferable,
    audit,
    checkpoint_from_state_dict,
    graph_from_checkpoint,
    graph_from_spec,
    graph_to_spec,
    load_checkpoint,
)
from netgraph.cli import main
from tests.oracles import mlp_forward


def _mlp(widths, seed, amount):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    m = nn.Sequential(*layers[:-1])
    params = [(l, "weight") for l in m if isinstance(l, nn.Linear)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    return m


def _save_three_ways(m, tmp_path):
    pruned = tmp_path / "pruned.pt"
    torch.save(m.state_dict(), pruned)
    plain_sd = {}
    for k, v in m.state_dict().items():
        if k.endswith("_orig"):
            base = k[:-5]
            plain_sd[base] = v * m.state_dict()[base + "_mask"]
        elif not k.endswith("_mask"):
            plain_sd[k] = v
    plain = tmp_path / "plain.pt"
    torch.save(plain_sd, plain)
    st_path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in plain_sd.items()}, st_path)
    return pruned, plain, st_path


def _strip(d):
    d = dict(d)
    d.pop("source")
    return d


@settings(max_examples=15)
@given(st.lists(st.integers(1, 12), min_size=3, max_size=5), st.integers(0, 1000), st.floats(0.5, 0.97))
def test_three_formats_give_the_identical_audit(tmp_path_factory, widths, seed, amount):
    tmp = tmp_path_factory.mktemp("fmt")
    m = _mlp(widths, seed, amount)
    paths = _save_three_ways(m, tmp)
    reports = [_strip(audit(graph_from_checkpoint(load_checkpoint(p))).to_dict()) for p in paths]
    assert reports[0] == reports[1] == reports[2]
    names = [l["name"] for l in reports[0]["layers"]]
    assert names == [f"{2 * i}.weight" for i in range(len(widths) - 1)]  # user names, forward order


def test_safetensors_sorted_keys_still_chain_in_forward_order(tmp_path):
    # 12 linear layers: safetensors sorts keys, so "net.10" precedes "net.2" in the file.
    widths = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 2]
    sd = {f"net.{i}.weight": torch.ones(widths[i + 1], widths[i]) for i in range(12)}
    p = tmp_path / "m.safetensors"
    save_file(sd, p)
    g = graph_from_checkpoint(load_checkpoint(p))
    assert [b.name for b in g.weighted_blocks] == [f"net.{i}.weight" for i in range(12)]


def test_shapes_decide_order_not_key_names(tmp_path):
    # keys named against forward order; shapes admit one chain only
    sd = {"a.weight": torch.ones(2, 5), "b.weight": torch.ones(5, 3), "c.weight": torch.ones(3, 4)}
    p = tmp_path / "m.pt"
    torch.save(sd, p)
    g = graph_from_checkpoint(load_checkpoint(p))
    assert [b.name for b in g.weighted_blocks] == ["c.weight", "b.weight", "a.weight"]


def test_ambiguous_chain_is_refused(tmp_path):
    # a: 4->4 and b: 4->4 and c: 4->4 in key order chain; shuffle names so natural order fails
    sd = {"x.weight": torch.ones(4, 3), "y.weight": torch.ones(4, 4), "a.weight": torch.ones(4, 4)}
    p = tmp_path / "m.pt"
    torch.save(sd, p)
    with pytest.raises(ChainNotInferable, match="ambiguous"):
        graph_from_checkpoint(load_checkpoint(p))


def test_conv_to_linear_flatten_and_bn_constants(tmp_path):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, bias=False)
    bn = nn.BatchNorm2d(3)
    fc = nn.Linear(3 * 4, 5, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # only channel 0 is fed
        fc.weight.zero_()
        fc.weight[:, 4:8] = 1.0  # only channel 1's four features are read
    sd = {"conv.weight": conv.weight, "bn.weight": bn.weight, "bn.bias": bn.bias + 0.5,
          "bn.running_mean": bn.running_mean, "bn.running_var": bn.running_var, "bn.num_batches_tracked":
          bn.num_batches_tracked, "fc.weight": fc.weight}
    p = tmp_path / "c.pt"
    torch.save(sd, p)
    rep = audit(graph_from_checkpoint(load_checkpoint(p)))
    conv_l, fc_l = rep.layer("conv.weight"), rep.layer("fc.weight")
    assert conv_l.kept == 1 and conv_l.dead == 1  # channel 0 is never read by fc
    assert fc_l.kept == 20 and fc_l.effective == 0 and fc_l.constant == 20  # channel 1: BN shift only


def test_topology_spec_round_trip_gives_identical_audit(tmp_path):
    from tests.strategies import CONSTANT_FED

    g = CONSTANT_FED.build()
    spec = graph_to_spec(g)
    masks = {op[1]: op[4] for op in CONSTANT_FED.weight_ops}
    assert audit(graph_from_spec(spec, masks)).to_dict() == audit(g).to_dict()


def test_repair_prune_file_keeps_outputs_and_format(tmp_path):
    m = _mlp([20, 16, 16, 4], seed=3, amount=0.9)
    pruned, plain, st_path = _save_three_ways(m, tmp_path)
    x = np.random.default_rng(0).normal(size=(32, 20))
    for src in (pruned, plain, st_path):
        out = tmp_path / ("rep_" + src.name)
        assert main(["repair", str(src), "-o", str(out), "--mode", "prune"]) == 0
        before, after = load_checkpoint(src), load_checkpoint(out)
        assert after.format == before.format
        assert set(after.tensors) == set(before.tensors)

        def forward(ck):
            ws, bs = [], []
            for i in (0, 2, 4):
                pw = ck.prunable()[f"{i}.weight"]
                ws.append(pw.values.astype(np.float64) * pw.mask)
                bs.append(ck.tensors[f"{i}.bias"].astype(np.float64))
            return mlp_forward(ws, bs, x)

        np.testing.assert_allclose(forward(after), forward(before), rtol=1e-9, atol=1e-12)
        rep = audit(graph_from_checkpoint(after))
        assert rep.summary.dead == rep.summary.constant


def test_repair_reconnect_preserves_budget_on_prune_format(tmp_path):
    m = _mlp([30, 20, 20, 5], seed=1, amount=0.9)
    pruned, plain, _ = _save_three_ways(m, tmp_path)
    out = tmp_path / "rec.pt"
    assert main(["repair", str(pruned), "-o", str(out), "--mode", "reconnect"]) == 0
    before = audit(graph_from_checkpoint(load_checkpoint(pruned)))
    after = audit(graph_from_checkpoint(load_checkpoint(out)))
    assert after.summary.dead == 0
    if before.summary.dead:
        assert after.summary.kept == before.summary.kept
    # plain zeros cannot be reconnected without scores
    assert main(["repair", str(plain), "-o", str(tmp_path / "x.pt"), "--mode", "reconnect"]) == 2
    assert not (tmp_path / "x.pt").exists()


def test_trainer_style_container_with_meta_is_read(tmp_path):
    sd = {"fc.weight_orig": torch.randn(3, 4), "fc.weight_mask": torch.ones(3, 4), "fc.bias": torch.zeros(3)}
    p = tmp_path / "t.pt"
    torch.save({"state_dict": sd, "netgraph": {"method": "mp", "target_rate": 0.5}}, p)
    ck = load_checkpoint(p)
    assert ck.meta["method"] == "mp" and ck.state_dict_key == "state_dict"
    assert audit(graph_from_checkpoint(ck)).summary.kept == 12


def test_in_memory_state_dict():
    ck = checkpoint_from_state_dict({"w.weight": torch.eye(3)})
    assert audit(graph_from_checkpoint(ck)).summary.effective == 3


def test_pruned_bias_in_prune_format_still_feeds_constants(tmp_path):
    """A bias stored as bias_orig + bias_mask is a bias: its kept entries are constant sources."""
    # 3 inputs, 2 hidden: no two groups of equal width, so no identity skip is plausible
    # (an inferred chain over-approximates those; see netgraph/io/_infer.py)
    w1 = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])  # unit 1 receives no input ...
    b1 = torch.tensor([0.3, 2.0])                 # ... but has a bias
    w2 = torch.tensor([[0.0, 1.5]])               # and feeds the output
    sd = {"fc1.weight": w1, "fc1.bias_orig": b1, "fc1.bias_mask": torch.tensor([0.0, 1.0]),
          "fc2.weight": w2, "fc2.bias": torch.zeros(1)}
    src, out = tmp_path / "b.pt", tmp_path / "b_fixed.pt"
    torch.save(sd, src)
    rep = audit(graph_from_checkpoint(load_checkpoint(src)))
    assert rep.layer("fc2.weight").constant == 1
    assert main(["repair", str(src), "-o", str(out)]) == 0
    fixed = load_checkpoint(out)
    assert fixed.tensors["fc2.weight"][0, 1] == 1.5  # the constant-fed weight is kept

    def forward(ck, x):
        t = ck.tensors
        h = np.maximum(x @ t["fc1.weight"].T + t["fc1.bias_orig"] * t["fc1.bias_mask"], 0)
        return h @ t["fc2.weight"].T + t["fc2.bias"]

    x = np.random.default_rng(0).normal(size=(8, 3))
    np.testing.assert_allclose(forward(fixed, x), forward(load_checkpoint(src), x), rtol=1e-12)


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_repair_keeps_each_tensors_stored_dtype(tmp_path, ext):
    w1 = torch.zeros(4, 3)
    w1[0, 0] = w1[3, 1] = 1.0  # fc1 unit 3 feeds nothing: one dead weight
    w2 = torch.zeros(2, 4)
    w2[0, 0] = 1.0
    sd = {"fc1.weight": w1.bfloat16(), "fc2.weight": w2.half(), "fc2.bias": torch.zeros(2, dtype=torch.float64)}
    src, out = tmp_path / f"m{ext}", tmp_path / f"fixed{ext}"
    if ext == ".pt":
        torch.save(sd, src)
    else:
        save_file(sd, src)
    assert main(["repair", str(src), "-o", str(out)]) == 0
    if ext == ".pt":
        got = torch.load(out, weights_only=True)
    else:
        from safetensors.torch import load_file

        got = load_file(out)
    assert {k: v.dtype for k, v in got.items()} == {k: v.dtype for k, v in sd.items()}
    assert got["fc1.weight"].float().count_nonzero() == 1


def test_repair_updates_the_stored_audit_of_a_trainer_checkpoint(tmp_path):
    mask = torch.zeros(4, 3)
    mask[0, 0] = mask[3, 1] = 1.0  # fc1 unit 3 feeds nothing
    w2 = torch.zeros(2, 4)
    w2[0, 0] = 1.0
    sd = {"fc1.weight_orig": torch.randn(4, 3), "fc1.weight_mask": mask, "fc2.weight_orig": w2 + 0.1,
          "fc2.weight_mask": (w2 != 0).float()}
    src, out = tmp_path / "t.pt", tmp_path / "t_fixed.pt"
    before = audit(graph_from_checkpoint(checkpoint_from_state_dict(sd))).to_dict()
    torch.save({"state_dict": sd, "netgraph": {"method": "mp", "achieved_rate": 1 - 3 / 20, "audit": before}}, src)
    assert main(["repair", str(src), "-o", str(out)]) == 0
    meta = load_checkpoint(out).meta
    assert meta["method"] == "mp" and meta["repair"] == "prune"
    assert meta["audit"]["summary"]["dead"] == 0 and before["summary"]["dead"] == 1
    assert meta["achieved_rate"] == pytest.approx(1 - 2 / 20)
