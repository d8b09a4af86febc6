"""The Pruner on traced models: exact budgets, 100 % effective MP+TC checked by netgraph's audit
of the saved checkpoint, φ over traced graphs against exact reachability, the rank-1 TC step
against the full-shape form, a hand-written loop against the CLI, and DDP (gloo) 2 vs 1 process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.nn.utils import prune

from netgraph import load_checkpoint, reachability
from netgraph.cli import main
from netgraph.testing.models import DenseNet, MobileNet, ResNet
from netgraph.torch import trace_model
from tests.strategies import layered_nets
from trainer import (
    GCN,
    MLP,
    Pruner,
    choose_threads,
    gcn_preset,
    load_digits,
    phi,
    plan_of,
    straight_through,
    synthetic_skeletons,
    tc_factors,
    tc_step,
    tc_terms,
)

DIGITS = load_digits(seed=0)


class ResCNN(nn.Module):
    """torchvision-style residual CNN with BN, a projection shortcut, a concat and a gate."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.down = nn.Sequential(nn.Conv2d(8, 12, 1, stride=2, bias=False), nn.BatchNorm2d(12))
        self.conv3 = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False)  # depthwise
        self.side = nn.Conv2d(12, 4, 1, bias=False)
        self.gate = nn.Linear(16, 16)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        h = F.relu(self.bn0(self.stem(x)))
        h = F.relu(h + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(h))))))  # residual add
        h = F.relu(self.down(h) + self.bn3(self.conv3(h)))
        h = torch.cat([self.dw(h), self.side(h)], dim=1)  # concatenation: 16 channels
        g = torch.sigmoid(self.gate(h.mean(dim=(2, 3))))  # a squeeze-excitation gate
        h = h * g[:, :, None, None]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))  # torchvision's head


def _digits_images(n: int = 256):
    x = DIGITS.x_train[:n].reshape(n, 1, 8, 8)
    return x, DIGITS.y_train[:n]


def _fit(model: nn.Module, pruner: Pruner, x, y, epochs: int, lr: float = 0.02) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for start in range(0, x.shape[0], 64):
            xb, yb = x[start:start + 64], y[start:start + 64]
            loss = F.cross_entropy(model(xb), yb) + pruner.loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        pruner.step()


@pytest.mark.parametrize("method", ["mp-tc", "mp", "coarse", "ctf", "fine", "pmp"])
def test_residual_cnn_at_99_percent_keeps_exactly_c_and_mp_tc_is_fully_effective(tmp_path, method):
    torch.manual_seed(0)
    model = ResCNN()
    x, y = _digits_images()
    pruner = Pruner(method, rate=0.99, epochs=3)
    pruner.prepare(model, x[:1])
    _fit(model, pruner, x, y, epochs=3)
    masks = pruner.finish()
    pruner.squash()
    c = round(0.01 * sum(m.numel() for m in masks.values()))
    assert sum(int(m.sum()) for m in masks.values()) == c == pruner.c
    # the model is in torch.nn.utils.prune format; netgraph's audit of the saved state_dict
    assert all(hasattr(model.get_submodule(n.rsplit(".", 1)[0]), "weight_mask") for n in masks)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    rebuilt = ResCNN()
    for n in masks:
        prune.identity(rebuilt.get_submodule(n.rsplit(".", 1)[0]), "weight")
    rebuilt.load_state_dict(torch.load(path, weights_only=True))
    report = trace_model(rebuilt, x[:1]).audit().to_dict()["summary"]
    assert report["kept"] == c
    if method in ("mp-tc", "coarse"):
        assert report["effective"] == c and report["dead"] == 0


def test_cli_audit_of_the_saved_checkpoint_says_fully_effective(tmp_path, capsys):
    out = tmp_path / "r.pt"
    rc = main(["train", "--model", "tests.test_trainer_pruner:ResCNN", "--input-shape", "1,1,8,8",
               "--dataset", "digits", "--method", "mp-tc", "--rate", "0.99", "--epochs", "2", "--batch-size", "256",
               "--out", str(out), "--no-progress", "--format", "json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"] == round(0.01 * summary["prunable"]) and summary["dead"] == 0
    rc = main(["audit", str(out), "--format", "json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["summary"]["kept"] == summary["kept"] == rep["summary"]["effective"]


@pytest.mark.parametrize("model", ["mlp", "gcn"])
def test_builtin_models_go_through_the_pruner(model):
    gen = torch.Generator().manual_seed(0)
    if model == "mlp":
        net = MLP((64, 32, 10), generator=gen)
        x, y = DIGITS.x_train[:256], DIGITS.y_train[:256]
    else:
        d = synthetic_skeletons("sbu")
        net = GCN(gcn_preset("sbu", n_nodes=d.n_nodes, in_features=d.in_features, classes=d.classes, edges=d.edges),
                  generator=gen)
        x, y = d.x_train[:128], d.y_train[:128]
    pruner = Pruner("mp-tc", rate=0.99, epochs=2)
    pruner.prepare(net)  # declared graph(): not traced
    _fit(net, pruner, x, y, epochs=2)
    masks = pruner.finish()
    pruner.squash()
    np_masks = {n: m.numpy() for n, m in masks.items()}
    from netgraph import audit

    s = audit(net.graph(np_masks)).summary
    assert s.kept == pruner.c == s.effective


def _random_prune(model: nn.Module, traced, density: float, seed: int) -> dict[str, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for b in traced.graph.weighted_blocks:
        mod, attr = traced.module(b.name)
        m = torch.rand(b.weight_shape, generator=gen) < density
        prune.custom_from_mask(mod, attr, m)
        masks[b.name] = m
    return masks


@settings(max_examples=8, deadline=None)
@given(st.sampled_from(["resnet", "densenet", "mobilenet", "rescnn"]), st.floats(0.05, 0.6), st.integers(0, 10_000))
def test_phi_over_traced_graphs_equals_exact_reachability(kind, density, seed):
    torch.manual_seed(seed)
    model, shape = {"resnet": (lambda: ResNet(stem=3), (1, 3, 8, 8)), "densenet": (lambda: DenseNet(), (1, 3, 8, 8)),
                    "mobilenet": (lambda: MobileNet(), (1, 3, 8, 8)), "rescnn": (ResCNN, (1, 1, 8, 8))}[kind]
    model = model()
    masks = _random_prune(model, trace_model(model, shape), density, seed)
    graph = trace_model(model, shape).graph  # the exact graph of the pruned model
    r = reachability(graph)
    phi_r, phi_l = phi(plan_of(graph), {n: m.to(torch.float64) for n, m in masks.items()})
    for g in graph.order:
        np.testing.assert_array_equal(phi_r[g].numpy() > 0, r.accessible[g], err_msg=f"accessible {g}")
        np.testing.assert_array_equal(phi_l[g].numpy() > 0, r.coaccessible[g], err_msg=f"coaccessible {g}")


def _old_form(plan, psi):
    crisp = {n: p.detach() >= 0.5 for n, p in psi.items()}
    factors = tc_factors(plan, *phi(plan, {n: straight_through(crisp[n], psi[n]) for n in psi}))
    masks = {n: psi[n] * factors[n] for n in psi}
    eff, dead = tc_terms(psi, factors)
    return masks, eff, dead


def _loss_and_grads(plan, latents, form, weights):
    psi = {n: 2.0 * torch.sigmoid(3.0 * w * w) - 1.0 for n, w in latents.items()}
    masks, eff, dead = form(plan, psi)
    loss = sum((masks[n] * weights[n]).sin().sum() for n in masks) + (eff - 7.0) ** 2 + 0.3 * dead
    return float(loss.detach()), torch.autograd.grad(loss, list(latents.values()))


def _compare(plan, shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    latents = {n: torch.randn(s, dtype=torch.float64, generator=gen).requires_grad_() for n, s in shapes.items()}
    weights = {n: torch.randn(s, dtype=torch.float64, generator=gen) for n, s in shapes.items()}
    a, ga = _loss_and_grads(plan, latents, _old_form, weights)
    b, gb = _loss_and_grads(plan, latents, tc_step, weights)
    assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    for x, y in zip(ga, gb):
        scale = max(1.0, float(x.abs().max()))
        assert float((x - y).abs().max()) <= 1e-12 * scale


@settings(max_examples=40, deadline=None)
@given(layered_nets(), st.integers(0, 2**31 - 1))
def test_rank1_tc_step_equals_the_full_shape_form_on_random_graphs(net, seed):
    graph = net.build()
    assume(graph.weighted_blocks)
    _compare(plan_of(graph), {b.name: b.weight_shape for b in graph.weighted_blocks}, seed)


@pytest.mark.parametrize("kind", ["resnet", "mobilenet", "densenet", "rescnn"])
def test_rank1_tc_step_equals_the_full_shape_form_on_traced_convnets(kind):
    model, shape = {"resnet": (ResNet(stem=3), (1, 3, 8, 8)), "mobilenet": (MobileNet(), (1, 3, 8, 8)),
                    "densenet": (DenseNet(), (1, 3, 8, 8)), "rescnn": (ResCNN(), (1, 1, 8, 8))}[kind]
    graph = trace_model(model, shape).graph
    _compare(plan_of(graph), {b.name: b.weight_shape for b in graph.weighted_blocks}, 0)


def _user_loop_masks(epochs: int, rate: float, batch: int, lr: float):
    """What a user writes by hand (the README's example, with the paper's lr rule)."""
    from netgraph.testing.models import mlp

    torch.manual_seed(0)
    model = mlp(widths=(64, 32, 10))
    pruner = Pruner("mp-tc", rate=rate, epochs=epochs, reinit=True)  # from scratch, as the CLI
    pruner.prepare(model, DIGITS.x_train[:1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    x, y = DIGITS.x_train, DIGITS.y_train
    for epoch in range(epochs):
        for g in opt.param_groups:
            g["lr"] = lr / 0.99 ** epoch  # the loss only fell so far: ν ← ν/0.99 each epoch
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], batch):
            idx = order[start:start + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx]) + pruner.loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        pruner.step()
    masks = pruner.finish()
    pruner.squash()
    return masks


def test_a_hand_written_loop_gives_the_same_masks_as_the_cli(tmp_path, capsys):
    masks = _user_loop_masks(epochs=2, rate=0.95, batch=512, lr=0.02)
    out = tmp_path / "cli.pt"
    rc = main(["train", "--model", "netgraph.testing.models:mlp", "--model-kwargs", '{"widths": [64, 32, 10]}',
               "--input-shape", "1,64", "--dataset", "digits", "--method", "mp-tc", "--rate", "0.95", "--epochs", "2",
               "--finetune-epochs", "0", "--batch-size", "512", "--lr", "0.02", "--out", str(out), "--no-progress"])
    assert rc == 0
    capsys.readouterr()
    ck = load_checkpoint(str(out))
    for n, m in masks.items():
        np.testing.assert_array_equal(ck.tensors[n[: -len("weight")] + "weight_mask"] != 0, m.numpy(), err_msg=n)


def _train_cmd(out, nproc: int) -> list[str]:
    args = ["train", "--model", "netgraph.testing.models:mlp", "--model-kwargs", '{"widths": [64, 32, 10]}',
            "--input-shape", "1,64", "--dataset", "digits", "--method", "mp-tc", "--rate", "0.95", "--epochs", "3",
            "--batch-size", "256", "--out", str(out), "--no-progress", "--format", "json"]
    if nproc == 1:
        return [sys.executable, "-m", "netgraph", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "netgraph", *args]


@pytest.mark.slow
def test_ddp_two_processes_give_the_masks_of_one_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outs = {}
    for nproc in (1, 2):
        out = tmp_path / f"p{nproc}.pt"
        r = subprocess.run(_train_cmd(out, nproc), capture_output=True, text=True, timeout=300, env=env, cwd=os.getcwd())
        assert r.returncode == 0, r.stderr[-2000:]
        outs[nproc] = load_checkpoint(str(out))
    a, b = outs[1].tensors, outs[2].tensors
    assert set(a) == set(b)
    for k in a:
        if k.endswith("_mask"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert not any(p.name.startswith(".netgraph-") for p in tmp_path.iterdir())  # no temporaries left


def test_thread_count_override_and_small_model_default(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert choose_threads(10, 2) == 2 and torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert choose_threads(10_000) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert choose_threads(10**9) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.gpu
def test_cuda_path_with_bf16_autocast():
    from trainer import TrainConfig, train

    res = train(TrainConfig(model="netgraph.testing.models:mlp", model_kwargs='{"widths": [64, 32, 10]}',
                            input_shape=(1, 64), dataset="digits", method="mp-tc", rate=0.95, epochs=3,
                            device="cuda", autocast="bf16", progress=False), data=DIGITS)
    assert res.kept == round(0.05 * res.prunable) and res.audit["summary"]["dead"] == 0


def digits_loader(seed: int = 0):
    """A user's loader: ``(train, test)``, the test part a dataset of ``(x, y)`` items."""
    d = load_digits(seed=seed)
    return (d.x_train[:400], d.y_train[:400]), list(zip(d.x_test[:100], d.y_test[:100].tolist()))


def test_user_dataset_loader_from_the_cli(tmp_path, capsys):
    out = tmp_path / "u.pt"
    args = ["train", "--model", "netgraph.testing.models:mlp", "--model-kwargs", '{"widths": [64, 16, 10]}',
            "--input-shape", "1,64", "--method", "mp-tc", "--rate", "0.9", "--epochs", "2", "--no-progress",
            "--format", "json", "--out", str(out)]
    assert main(args + ["--dataset", "tests.test_trainer_pruner:digits_loader"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dead"] == 0 and summary["kept"] == round(0.1 * summary["prunable"])
    for bad, words in [("tests.test_trainer_pruner:nope", "has no attribute"), ("no_such_pkg_xyz:load", "cannot import")]:
        assert main(args + ["--force", "--dataset", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("netgraph: error:") and err.count("\n") == 1 and words in err, err


def test_resume_of_a_traced_model_equals_the_uninterrupted_run(tmp_path):
    from trainer import TrainConfig, train

    cfg = TrainConfig(model="tests.test_trainer_pruner:ResCNN", input_shape=(1, 1, 8, 8), dataset="digits",
                      method="mp-tc", rate=0.95, epochs=4, batch_size=512, checkpoint_every=1, progress=False,
                      device="cpu")
    full = train(cfg.__class__(**{**cfg.__dict__, "out": str(tmp_path / "full.pt")}), data=DIGITS)
    part = cfg.__class__(**{**cfg.__dict__, "out": str(tmp_path / "part.pt")})
    train(part, data=DIGITS, stop_after=2)
    assert os.path.exists(str(tmp_path / "part.pt") + ".state.pt")
    resumed = train(part.__class__(**{**part.__dict__, "resume": True}), data=DIGITS)
    for n in full.masks:
        assert torch.equal(full.masks[n], resumed.masks[n]), n
    a, b = load_checkpoint(str(tmp_path / "full.pt")).tensors, load_checkpoint(str(tmp_path / "part.pt")).tensors
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("module", ["trainer._pruner", "trainer._masks", "trainer._models"])
def test_trainer_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_cli_options_come_from_the_config():
    """Every TrainConfig field marked for the CLI is an option of `netgraph train`, with its default."""
    from netgraph.cli import build_parser
    from trainer import TrainConfig
    from trainer._config import config_fields

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    dests = {a.dest: a for a in sub._actions}
    for f, help_, _ in config_fields():
        assert f.name in dests, f.name
        default = dests[f.name].default
        want = f.default if not isinstance(f.default, tuple) else ",".join(map(str, f.default))
        assert default == want, f.name
        assert help_ in dests[f.name].help
    assert dests["lr"].default == TrainConfig.lr
