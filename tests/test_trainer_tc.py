"""The accessibility networks against netgraph's exact reachability, and the losses' gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from netgraph import pair_selector, reachability
from tests.strategies import EMPTY_LAYER, SKIP_AROUND_DEAD, WIDTH_ONE, layered_nets
from trainer import (
    BlockLayout,
    band_stop,
    budget_loss,
    coarse_mask,
    ctf_mask,
    heaviside_st,
    phi,
    plan_of,
    pmp_prior_quantiles,
    straight_through,
    tc_factors,
    tc_terms,
    wasserstein1_sorted,
)


def _torch_masks(net, dtype=torch.float64):
    return {op[1]: torch.tensor(op[4], dtype=dtype) for op in net.weight_ops}


@given(layered_nets())
@example(EMPTY_LAYER)
@example(WIDTH_ONE)
@example(SKIP_AROUND_DEAD)
def test_phi_equals_exact_reachability(net):
    graph = net.build()
    r = reachability(graph)
    phi_r, phi_l = phi(plan_of(graph), _torch_masks(net))
    for g in graph.order:
        np.testing.assert_array_equal(phi_r[g].numpy() > 0, r.accessible[g], err_msg=f"accessible {g}")
        np.testing.assert_array_equal(phi_l[g].numpy() > 0, r.coaccessible[g], err_msg=f"coaccessible {g}")
        assert set(np.unique(phi_r[g].numpy())) <= {0.0, 1.0}


@given(layered_nets(), st.integers(0, 2**31 - 1))
@example(SKIP_AROUND_DEAD, 0)
def test_tc_weights_vanish_exactly_on_dead(net, seed):
    """ŵ ⊙ ψ ⊙ Φ is zero exactly where netgraph says pruned or dead (kept and effective elsewhere)."""
    graph = net.build()
    r = reachability(graph)
    masks = _torch_masks(net)
    factors = tc_factors(plan_of(graph), *phi(plan_of(graph), masks))
    gen = torch.Generator().manual_seed(seed)
    for op in net.weight_ops:
        name, mask = op[1], op[4]
        block = graph.block(name)
        effective = mask & pair_selector(block, r.accessible[block.src], r.coaccessible[block.dst])
        w = torch.randn(mask.shape, generator=gen, dtype=torch.float64) + 3.0  # no exact zeros
        eff_w = w * masks[name] * factors[name]
        np.testing.assert_array_equal(eff_w.numpy() != 0, effective, err_msg=name)


def test_phi_follows_a_channels_last_flatten():
    """Channel 1 of a 2-channel, 3-node map feeds flat units 1, 3, 5 (node-major), not 3, 4, 5."""
    from netgraph import GraphBuilder

    b = GraphBuilder()
    b.input("x", 2)
    b.weight("a.weight", "x", "c", np.array([[0, 0], [1, 0]]))  # only channel 1 is accessible
    b.expand("c", "flat", 3, channels_last=True)
    b.weight("fc.weight", "flat", "out", np.eye(6, dtype=bool))
    g = b.build()
    masks = {"a.weight": torch.tensor([[0.0, 0], [1, 0]]), "fc.weight": torch.eye(6)}
    phi_r, _ = phi(plan_of(g), masks)
    assert phi_r["flat"].tolist() == [0, 1, 0, 1, 0, 1]
    assert phi_r["out"].tolist() == [0, 1, 0, 1, 0, 1]


@given(layered_nets(constants=False), st.integers(0, 2**31 - 1))
@settings(max_examples=25)
def test_gradients_are_finite_through_phi(net, seed):
    assume(net.weight_ops)
    graph = net.build()
    plan = plan_of(graph)
    gen = torch.Generator().manual_seed(seed)
    lat = {op[1]: torch.randn(op[4].shape, generator=gen, dtype=torch.float64, requires_grad=True)
           for op in net.weight_ops}
    psi = {n: band_stop(w, 2.0) for n, w in lat.items()}
    crisp = {n: p.detach() >= 0.5 for n, p in psi.items()}
    factors = tc_factors(plan, *phi(plan, {n: straight_through(crisp[n], psi[n]) for n in psi}))
    eff, dead = tc_terms(psi, factors)
    loss = budget_loss(eff, 3.0, 1.0) + dead + sum((lat[n] * psi[n] * factors[n]).pow(2).sum() for n in lat)
    loss.backward()
    for n, w in lat.items():
        assert w.grad is not None and torch.isfinite(w.grad).all(), n


def test_heaviside_st_is_a_step_forward_and_sigmoid_backward():
    x = torch.tensor([-1.0, 0.0, 0.5, 3.0], dtype=torch.float64, requires_grad=True)
    y = heaviside_st(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0]
    y.sum().backward()
    s = torch.sigmoid(x.detach() - 0.5)
    torch.testing.assert_close(x.grad, s * (1 - s))


def test_gradcheck_smooth_parts():
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(4, 6, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: band_stop(t, 1.7), (w,))
    layout = BlockLayout(in_blocks=2, channels_last=True)
    assert torch.autograd.gradcheck(lambda t: ctf_mask(band_stop(t, 1.7), layout, 0.3), (w,))
    assert torch.autograd.gradcheck(lambda t: coarse_mask(band_stop(t, 1.7), BlockLayout(whole=True), 0.3), (w,))
    assert torch.autograd.gradcheck(lambda t: budget_loss(band_stop(t, 1.7).sum(), 5.0, 2.0), (w,))
    phi_fixed = (torch.rand(4, 6, generator=gen, dtype=torch.float64) > 0.5).double()
    assert torch.autograd.gradcheck(
        lambda t: torch.stack(tc_terms({"w": band_stop(t, 1.7)}, {"w": phi_fixed})), (w,))
    # W1 by sorting is smooth where the sorted values differ from the quantiles and from each other
    v = torch.tensor([0.1, 2.5, 1.2, 3.9], dtype=torch.float64, requires_grad=True)
    q = pmp_prior_quantiles(4, 0.5, 0.2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: wasserstein1_sorted(t, q), (v,))


def test_ctf_priority_and_gates():
    """A block whose mass is far below θ is switched off whole; a dense block is kept."""
    fine = torch.ones(4, 6, dtype=torch.float64)
    fine[:, 0::2] = 0.01  # block 0 of a channels-last split into 2 blocks: columns 0, 2, 4
    psi = ctf_mask(fine, BlockLayout(in_blocks=2, channels_last=True), theta=0.2)
    assert psi[:, 0::2].max() < 1e-3
    # by hand, γ(f) = f²/(f² + θ²), block then column (output unit) then row (input unit):
    gamma = lambda f: f * f / (f * f + 0.04)
    g_block = gamma(1.0)
    g_col = gamma((3 * g_block + 3 * 0.01 * gamma(0.01)) / 6)
    g_row = gamma(g_block * g_col)
    torch.testing.assert_close(psi[:, 1::2], torch.full((4, 3), g_block * g_col * g_row, dtype=torch.float64))


def test_eta_step_lowers_psi_on_dead_connections():
    """One SGD step on η·Σψ(1 − Φ) alone: ψ falls on every dead kept connection."""
    from netgraph import GraphBuilder

    m1 = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 1]], bool)  # unit 1 of h1 has no input
    m2 = np.array([[0, 1, 1], [1, 0, 0]], bool)             # h1 unit 1 -> out 0 is dead (not accessible)
    m3 = np.array([[1, 0]], bool)                            # out unit 1 reaches nothing
    b = GraphBuilder()
    b.input("x", 3)
    b.weight("l1", "x", "h1", m1)
    b.weight("l2", "h1", "h2", m2)
    b.weight("l3", "h2", "out", m3)
    g = b.build()
    plan = plan_of(g)
    r = reachability(g)
    lat = {n: torch.where(torch.tensor(m), 1.0, 0.05).double().requires_grad_()
           for n, m in (("l1", m1), ("l2", m2), ("l3", m3))}
    s = 1.0
    psi = {n: band_stop(w, s) for n, w in lat.items()}
    crisp = {n: torch.tensor(m) for n, m in (("l1", m1), ("l2", m2), ("l3", m3))}
    factors = tc_factors(plan, *phi(plan, {n: straight_through(crisp[n], psi[n]) for n in psi}))
    _, dead_mass = tc_terms(psi, factors)
    dead_mass.backward()
    before = {n: p.detach().clone() for n, p in psi.items()}
    with torch.no_grad():
        for w in lat.values():
            w -= 0.1 * w.grad
    after = {n: band_stop(w.detach(), s) for n, w in lat.items()}
    n_dead = 0
    for n, m in (("l1", m1), ("l2", m2), ("l3", m3)):
        blk = g.block(n)
        dead = m & ~pair_selector(blk, r.accessible[blk.src], r.coaccessible[blk.dst])
        n_dead += int(dead.sum())
        assert (after[n][torch.tensor(dead)] < before[n][torch.tensor(dead)]).all(), n
    assert n_dead >= 3


def test_model_graph_is_the_topology_phi_walks():
    """The GCN's φ (via its own graph) equals netgraph's reachability for random crisp masks."""
    from trainer import GCN, SBU_EDGES, gcn_preset

    cfg = gcn_preset("sbu", n_nodes=30, in_features=96, classes=8, edges=SBU_EDGES)
    model = GCN(cfg, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.02 for n, p in model.prunable().items()}
    graph = model.graph({n: m.numpy() for n, m in masks.items()})
    r = reachability(graph)
    phi_r, phi_l = phi(plan_of(model.graph()), {n: m.double() for n, m in masks.items()})
    for grp in graph.order:
        np.testing.assert_array_equal(phi_r[grp].numpy() > 0, r.accessible[grp])
        np.testing.assert_array_equal(phi_l[grp].numpy() > 0, r.coaccessible[grp])
