"""Exact reachability and the audit against networkx / dense oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from netgraph import HasACycle, GraphBuilder, InvalidGraph, audit, chain, products, reachability, to_networkx
from tests.oracles import dense_chain_product, mlp_forward, reachability_oracle, weight_status_oracle
from tests.strategies import CONSTANT_FED, EMPTY_LAYER, SKIP_AROUND_DEAD, WIDTH_ONE, chain_masks, layered_nets


def _units(vecs):
    return {(g, int(u)) for g, v in vecs.items() for u in np.flatnonzero(v)}


@given(layered_nets())
@example(EMPTY_LAYER)
@example(WIDTH_ONE)
@example(SKIP_AROUND_DEAD)
@example(CONSTANT_FED)
def test_reachability_equals_networkx(net):
    g = net.build()
    r = reachability(g)
    acc, coacc, const = reachability_oracle(net)
    assert _units(r.accessible) == acc
    assert _units(r.coaccessible) == coacc
    assert _units(r.constant) == const


@given(layered_nets())
@example(EMPTY_LAYER)
@example(SKIP_AROUND_DEAD)
@example(CONSTANT_FED)
def test_audit_counts_equal_oracle(net):
    report = audit(net.build())
    expected = weight_status_oracle(net)
    assert {l.name for l in report.layers} == set(expected)
    for layer in report.layers:
        e = expected[layer.name]
        got = dict(kept=layer.kept, accessible=layer.accessible, coaccessible=layer.coaccessible,
                   effective=layer.effective, constant=layer.constant)
        assert got == e, layer.name
        assert layer.dead == e["kept"] - e["effective"]
    assert report.summary.effective == sum(e["effective"] for e in expected.values())


def test_skip_edge_keeps_units_alive():
    r = audit(SKIP_AROUND_DEAD.build())
    # g0.weight's only kept weight reaches g0 unit 0, which feeds nothing: dead.
    assert r.layer("g0.weight").dead == 1
    assert r.summary.effective == 0
    assert not r.summary.collapsed  # the identity skip still carries the input to the output
    assert r.summary.dead_outputs == 0


def test_constant_fed_weight_is_reported_constant():
    r = audit(CONSTANT_FED.build())
    assert r.layer("g1.weight").constant == 1  # g0 unit 1 has only a bias, feeds g1
    assert r.layer("g1.weight").effective == 0


@given(chain_masks(min_layers=1, max_layers=5))
def test_sa_columns_and_sc_rows_equal_vector_propagation(masks):
    g = chain(masks)
    r = reachability(g)
    sa = products(g, "accessibility")
    sc = products(g, "coaccessibility")
    for name in g.order:
        assert np.array_equal(np.asarray(sa[name].matrix.sum(axis=0)).ravel() > 0, r.accessible[name])
        assert np.array_equal(np.asarray(sc[name].matrix.sum(axis=1)).ravel() > 0, r.coaccessible[name])


@given(chain_masks(min_layers=1, max_layers=4))
def test_sa_path_counts_equal_dense_product(masks):
    g = chain(masks)
    sa = products(g, "accessibility", counts=True)
    for ell, name in enumerate(g.order):
        expected = dense_chain_product(masks, ell).astype(float)
        got = sa[name].matrix.toarray() * 2.0 ** sa[name].log2_scale
        assert np.array_equal(got, expected)


def test_path_counts_do_not_overflow():
    # 300 all-ones layers of width 16: each of the 299 hidden layers multiplies the number of
    # input→output paths by 16, so 16**299 = 2**1196 per pair, far past float64's range.
    masks = [np.ones((16, 16), bool)] * 300
    g = chain(masks)
    last = products(g, "accessibility", counts=True)[g.order[-1]]
    assert np.isfinite(last.matrix.data).all()
    np.testing.assert_allclose(last.log2().toarray(), 1196.0, rtol=0, atol=1e-9)


@given(chain_masks(min_layers=1, max_layers=5))
def test_coaccessible_is_accessible_of_the_reversed_chain(masks):
    g = chain(masks)
    rev = chain([m.T for m in masks[::-1]])
    r, rr = reachability(g), reachability(rev)
    for fwd_name, rev_name in zip(g.order, rev.order[::-1]):
        assert np.array_equal(r.coaccessible[fwd_name], rr.accessible[rev_name])


@given(chain_masks(min_layers=2, max_layers=5), st.integers(0, 2**32 - 1))
def test_permuting_hidden_units_permutes_results(masks, seed):
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(m.shape[0]) for m in masks[:-1]]
    permuted = []
    for i, m in enumerate(masks):
        p_out = perms[i] if i < len(perms) else np.arange(m.shape[0])
        p_in = perms[i - 1] if i > 0 else np.arange(m.shape[1])
        permuted.append(m[p_out][:, p_in])
    r, rp = reachability(chain(masks)), reachability(chain(permuted))
    g = chain(masks)
    for k, name in enumerate(g.order[1:-1]):
        assert np.array_equal(r.accessible[name][perms[k]], rp.accessible[name])
        assert np.array_equal(r.coaccessible[name][perms[k]], rp.coaccessible[name])
    assert audit(chain(masks)).summary == audit(chain(permuted)).summary


@given(layered_nets(constants=False), st.data())
def test_removing_a_kept_weight_never_grows_accessible(net, data):
    weights = [op for op in net.weight_ops if op[4].any()]
    if not weights:
        return
    op = data.draw(st.sampled_from(weights))
    idx = data.draw(st.sampled_from([tuple(i) for i in np.argwhere(op[4])]))
    r0 = reachability(net.build())
    new_mask = op[4].copy()
    new_mask[idx] = False
    net.ops[net.ops.index(op)] = op[:4] + (new_mask,) + op[5:]
    r1 = reachability(net.build())
    for g in r0.accessible:
        assert not (r1.accessible[g] & ~r0.accessible[g]).any()
        assert not (r1.coaccessible[g] & ~r0.coaccessible[g]).any()


@settings(max_examples=60)
@given(chain_masks(min_layers=1, max_layers=5, max_width=8), st.integers(0, 2**32 - 1), st.booleans())
def test_zeroing_dead_weights_leaves_relu_mlp_outputs_unchanged(masks, seed, with_bias):
    """Soundness: the audit never calls a live weight dead (float64, random inputs)."""
    from netgraph import prune_masks

    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=m.shape) * m for m in masks]
    biases = [rng.normal(size=m.shape[0]) * (rng.random(m.shape[0]) < 0.5) if with_bias else None for m in masks]
    g = chain(masks)
    if with_bias:  # rebuild with constant seeds where biases are non-zero
        b = GraphBuilder()
        b.input("input", masks[0].shape[1])
        src = "input"
        for i, m in enumerate(masks):
            b.weight(f"layer{i}", src, f"h{i}", m)
            b.constant(f"h{i}", biases[i] != 0)
            src = f"h{i}"
        g = b.build()
    names = [blk.name for blk in g.weighted_blocks]
    new = prune_masks(g, dict(zip(names, masks))).masks
    repaired = [w * new[n] for w, n in zip(weights, names)]
    x = rng.normal(size=(16, masks[0].shape[1])) * 10
    before, after = mlp_forward(weights, biases, x), mlp_forward(repaired, biases, x)
    np.testing.assert_allclose(after, before, rtol=1e-9, atol=1e-12)


@given(layered_nets())
def test_prune_is_idempotent_and_never_adds(net):
    from netgraph import prune_masks

    g = net.build()
    masks = {op[1]: op[4] for op in net.weight_ops}
    once = prune_masks(g, masks).masks
    for n in masks:
        assert not (once[n] & ~masks[n]).any()
    net2 = type(net)(net.widths, net.inputs,
                     [op[:4] + (once[op[1]],) + op[5:] if op[0] == "weight" else op for op in net.ops], net.constants)
    twice = prune_masks(net2.build(), once).masks
    for n in masks:
        assert np.array_equal(once[n], twice[n])
    after = audit(net2.build())
    assert after.summary.dead == after.summary.constant  # only constant-fed weights remain dead


@given(layered_nets(constants=False), st.integers(0, 2**32 - 1))
def test_reconnect_keeps_budget_when_possible_and_is_fully_effective(net, seed):
    from netgraph import reconnect_masks

    g = net.build()
    masks = {op[1]: op[4] for op in net.weight_ops}
    rng = np.random.default_rng(seed)
    scores = {n: rng.normal(size=m.shape) for n, m in masks.items()}
    res = reconnect_masks(g, masks, scores)
    net2 = type(net)(net.widths, net.inputs,
                     [op[:4] + (res.masks[op[1]],) + op[5:] if op[0] == "weight" else op for op in net.ops])
    after = audit(net2.build())
    assert after.summary.dead == 0
    assert after.summary.kept == res.kept_after <= res.kept_before
    before = audit(g)
    assert res.kept_after >= before.summary.effective
    if res.added < res.removed:  # the budget could not be spent: no candidate was left out
        from netgraph import pair_selector

        r = reachability(net2.build())
        for blk in net2.build().weighted_blocks:
            cand = ~res.masks[blk.name] & pair_selector(blk, r.accessible[blk.src], r.coaccessible[blk.dst])
            assert not cand.any()


def test_to_networkx_marks_effective_edges():
    G = to_networkx(SKIP_AROUND_DEAD.build())
    eff = {(u, v) for u, v, d in G.edges(data=True) if d["effective"] and d["kind"] == "weighted"}
    assert eff == set()  # the only kept weight is dead
    assert G.nodes[("g1", 0)]["accessible"]  # via the identity skip


@pytest.mark.parametrize("build, match", [
    (lambda b: (b.input("x", 2), b.weight("w", "x", "h", np.ones((3, 4)))), "widths must chain"),
    (lambda b: (b.input("x", 2), b.weight("w", "x", "h", np.full((3, 2), 0.5))), "must be binary"),
    (lambda b: (b.input("x", 2), b.weight("w", "x", "h", np.ones((0, 2)))), "empty"),
    (lambda b: (b.input("x", 0),), "at least one unit"),
    (lambda b: (b.input("x", 2), b.weight("w", "y", "h", np.ones((3, 2)))), "unknown group"),
], ids=["widths", "binary", "empty", "zero-width", "unknown-group"])
def test_builder_rejects_invalid(build, match):
    b = GraphBuilder()
    with pytest.raises(InvalidGraph, match=match):
        build(b)
        b.build()


def test_builder_rejects_cycles():
    b = GraphBuilder()
    b.input("x", 2)
    b.weight("a", "x", "h1", np.ones((2, 2)))
    b.weight("b", "h1", "h2", np.ones((2, 2)))
    b.weight("c", "h2", "h1", np.ones((2, 2)))
    with pytest.raises(HasACycle, match="cycle"):
        b.build()
