"""The training loop: exact budgets, determinism, exact resume, divergence, the saved checkpoint."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from netgraph.cli import main
from netgraph.errors import NetgraphError, TrainingDiverged
from trainer import TrainConfig, load_digits, train

DIGITS = load_digits(seed=0)


def _small(**kw) -> TrainConfig:
    base = dict(model="mlp", dataset="digits", mlp_hidden=(32, 16), epochs=4, batch_size=256, lr=0.03,
                progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", ["mp", "mp-tc", "fine", "ctf", "coarse", "pmp"])
@pytest.mark.parametrize("rate", [0.5, 0.75, 0.9, 0.99])
def test_budget_is_met_by_the_crisp_masks(method, rate):
    res = train(_small(method=method, rate=rate), data=DIGITS)
    c = round((1 - rate) * res.prunable)
    kept = sum(int(m.sum()) for m in res.masks.values())
    assert kept == res.kept
    assert abs(kept - c) <= max(1, 0.01 * c), (kept, c)
    for m in res.masks.values():
        assert m.dtype == torch.bool


@pytest.mark.parametrize("rate", [0.9, 0.99])
def test_mp_tc_is_fully_effective(rate):
    res = train(_small(method="mp-tc", rate=rate), data=DIGITS)
    s = res.audit["summary"]
    assert s["dead"] == 0 and s["effective"] == s["kept"] > 0


def _tensors(path):
    obj = torch.load(path, weights_only=True)
    return obj["state_dict"], obj["netgraph"]


def test_same_seed_gives_identical_weights(tmp_path):
    a = train(_small(method="mp-tc", rate=0.9, out=str(tmp_path / "a.pt")), data=DIGITS)
    b = train(_small(method="mp-tc", rate=0.9, out=str(tmp_path / "b.pt")), data=DIGITS)
    sa, _ = _tensors(a.checkpoint)
    sb, _ = _tensors(b.checkpoint)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    c = train(_small(method="mp-tc", rate=0.9, seed=1), data=DIGITS)
    assert any(not torch.equal(a.masks[n], c.masks[n]) for n in a.masks)


@pytest.mark.parametrize("method, stop", [("mp-tc", 3), ("ctf", 6)], ids=["killed-while-relaxed", "killed-while-finishing"])
def test_resume_equals_uninterrupted(tmp_path, method, stop):
    cfg = _small(method=method, rate=0.9, epochs=8, finetune_epochs=3, checkpoint_every=2)
    full = train(dataclasses.replace(cfg, out=str(tmp_path / "full.pt")), data=DIGITS)
    part_cfg = dataclasses.replace(cfg, out=str(tmp_path / "part.pt"))
    train(part_cfg, data=DIGITS, stop_after=stop)
    assert (tmp_path / "part.pt.state.pt").exists() and not (tmp_path / "part.pt").exists()
    resumed = train(dataclasses.replace(part_cfg, resume=True), data=DIGITS)
    sf, mf = _tensors(full.checkpoint)
    sr, mr = _tensors(resumed.checkpoint)
    for k in sf:
        assert torch.equal(sf[k], sr[k]), k
    assert [h["loss"] for h in mf["history"]] == [h["loss"] for h in mr["history"]]
    assert not (tmp_path / "part.pt.state.pt").exists()


def test_resume_refuses_other_settings(tmp_path):
    cfg = _small(method="mp", rate=0.9, epochs=4, out=str(tmp_path / "x.pt"))
    train(cfg, data=DIGITS, stop_after=2)
    with pytest.raises(NetgraphError, match="different settings.*rate"):
        train(dataclasses.replace(cfg, rate=0.8, resume=True), data=DIGITS)


def test_nan_stops_training_clearly():
    bad = dataclasses.replace(DIGITS, x_train=DIGITS.x_train.clone())
    bad.x_train[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="epoch 1: the loss became nan"):
        train(_small(method="mp", rate=0.9, batch_size=2000), data=bad)


def test_checkpoint_is_prune_format_with_meta_and_audits(tmp_path, capsys):
    res = train(_small(method="mp", rate=0.97, out=str(tmp_path / "m.pt")), data=DIGITS)
    sd, meta = _tensors(res.checkpoint)
    assert {"layers.0.weight_orig", "layers.0.weight_mask", "layers.0.bias"} <= set(sd)
    assert "layers.0.weight" not in sd
    for k in [k for k in sd if k.endswith("_mask")]:
        assert set(torch.unique(sd[k]).tolist()) <= {0.0, 1.0}
    assert meta["method"] == "mp" and meta["target_rate"] == 0.97
    assert abs(meta["achieved_rate"] - res.achieved_rate) < 1e-12
    assert meta["topology"]["version"] == 1
    assert meta["audit"]["summary"]["kept"] == res.kept
    # the audit command reads the file on its own and agrees with the stored audit
    assert main(["audit", res.checkpoint, "--format", "json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["kept"] == meta["audit"]["summary"]["kept"]
    assert report["summary"]["effective"] == meta["audit"]["summary"]["effective"]


def test_gcn_checkpoint_audits_from_its_topology(tmp_path, capsys):
    """A GCN's weights do not form a shape chain; the stored spec makes the audit exact."""
    out = tmp_path / "g.pt"
    rc = main(["train", "--model", "gcn", "--preset", "sbu", "--dataset", "synthetic-sbu", "--method", "mp-tc",
               "--rate", "0.98", "--epochs", "3", "--out", str(out), "--no-progress", "--format", "json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dead"] == 0 and summary["kept"] == round(0.02 * summary["prunable"])
    assert main(["audit", str(out), "--format", "json", "--fail-on-dead"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["dead"] == 0 and report["summary"]["kept"] == summary["kept"]


def test_cli_reports_bad_options_as_errors(tmp_path, capsys):
    rc = main(["train", "--model", "mlp", "--dataset", "digits", "--rate", "1.5", "--out", str(tmp_path / "x.pt")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("netgraph: error: rate must be in (0, 1)") and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()
    rc = main(["train", "--model", "gcn", "--dataset", "digits", "--method", "mp", "--rate", "0.5",
               "--out", str(tmp_path / "y.pt"), "--no-progress"])
    assert rc == 2 and "skeleton data" in capsys.readouterr().err


@pytest.mark.slow
def test_ablate_cli_writes_tables(tmp_path, capsys):
    rc = main(["ablate", "--datasets", "synthetic-sbu", "--tc-rates", "0.9", "--ctf-rates", "0.9", "--epochs", "3",
               "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    data = json.loads((tmp_path / "ablation.json").read_text())
    methods = {r["method"] for r in data["rows"]}
    assert methods == {"dense", "mp", "mp-tc", "pmp", "mp+reconnect", "coarse", "fine", "ctf"}
    tc = next(r for r in data["rows"] if r["method"] == "mp-tc")
    assert tc["effective_pct"] == 100.0
    recon = next(r for r in data["rows"] if r["method"] == "mp+reconnect")
    assert recon["effective_pct"] == 100.0
    assert "MP w TC" in (tmp_path / "ablation.md").read_text()
    png = (tmp_path / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
