"""netgraph.testing: the φ checker catches wrong φ's with a real, shrunk counterexample, passes the
trainer's φ; the assertions agree with the networkx oracle; the strategies cover what they claim."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import event, given, settings
from hypothesis import strategies as st

import netgraph.testing as nt
import trainer
from netgraph import GraphBuilder, chain, trace_model
from netgraph.testing import (
    CONCAT_OF_DEAD,
    GRAPH_CORNER_CASES,
    SKIP_AROUND_DEAD,
    Net,
    assert_effective_equal,
    assert_factors_exact,
    assert_function_preserved,
    assert_model_factors_exact,
    assert_phi_exact,
    assert_reachability_equal,
    layered_nets,
    masked_conv_nets,
    masked_mlps,
    net_features,
)
from netgraph.testing import reachability_oracle, unit_edges

CI = settings.get_profile("ci")


# -- φ written by hand in numpy (a user's), and its mutants ------------------------------------

def _conn(b, masks, transpose_square=False):
    """(dst, src) 0/1 matrix of a block; kernel taps summed, grouped convs expanded."""
    if not b.weighted:
        return b.matrix.T.toarray().astype(float)
    m = masks[b.name]
    m = m.reshape(m.shape[0], m.shape[1], -1).sum(axis=2)  # (out, in/groups)
    if transpose_square and m.shape[0] == m.shape[1]:
        m = m.T  # the bug: the mask read in the block's (in, out) orientation
    out_ch, in_pg = m.shape
    full = np.zeros((out_ch, in_pg * b.conv_groups))
    per = out_ch // b.conv_groups
    for o in range(out_ch):
        g = o // per
        full[o, g * in_pg:(g + 1) * in_pg] = m[o]
    return full


def numpy_phi(graph, masks, *, ignore_skips=False, transpose_square=False):
    step = lambda v: (v > 0).astype(float)  # noqa: E731
    depth = graph.depth()
    blocks = [b for b in graph.blocks if not (ignore_skips and depth[b.dst] - depth[b.src] > 1)]
    r = {s: np.ones(graph.groups[s].width) for s in graph.sources}
    pre = {}
    for b in blocks:  # forward order: every block into a group comes before any out of it
        x = r.setdefault(b.src, step(pre.get(b.src, np.zeros(graph.groups[b.src].width))))
        pre[b.dst] = pre.get(b.dst, 0) + _conn(b, masks, transpose_square) @ x
    for g in graph.order:
        r.setdefault(g, step(pre.get(g, np.zeros(graph.groups[g].width))))
    lft = {s: np.ones(graph.groups[s].width) for s in graph.sinks}
    pre = {}
    for b in reversed(blocks):
        y = lft.setdefault(b.dst, step(pre.get(b.dst, np.zeros(graph.groups[b.dst].width))))
        pre[b.src] = pre.get(b.src, 0) + _conn(b, masks, transpose_square).T @ y
    for g in graph.order:
        lft.setdefault(g, step(pre.get(g, np.zeros(graph.groups[g].width))))
    return r, lft


def _rebuild(message: str) -> Net:
    """The counterexample printed in a failure message, rebuilt from its Python source."""
    src = message.split("as an @example (netgraph.testing.Net):\n", 1)[1]
    return eval(src.strip(), {"np": np, "Net": Net})  # noqa: S307 - our own message


def _oracle_units(net):
    acc, coacc, _ = reachability_oracle(net)
    return ({g: [(g, u) in acc for u in range(w)] for g, w in net.widths.items()},
            {g: [(g, u) in coacc for u in range(w)] for g, w in net.widths.items()})


def _disagrees_with_oracle(phi, net) -> bool:
    acc, coacc = _oracle_units(net)
    r, l = phi(net.graph, {n: m.astype(float) for n, m in net.masks.items()})
    return any(list(np.asarray(r[g]) > 0) != acc[g] or list(np.asarray(l[g]) > 0) != coacc[g] for g in net.widths)


def test_a_correct_numpy_phi_passes():
    assert_phi_exact(numpy_phi, settings=CI)
    assert_phi_exact(numpy_phi, masked_conv_nets(bias=True), settings=CI)


@pytest.mark.parametrize("mutation", ["ignore_skips", "transpose_square"])
def test_a_wrong_phi_fails_with_a_real_shrunk_counterexample(mutation):
    def mutant(graph, masks):
        return numpy_phi(graph, masks, **{mutation: True})

    with pytest.raises(AssertionError) as info:
        assert_phi_exact(mutant, layered_nets(), settings=CI)  # random search only: no corner case
    msg = str(info.value)
    assert "differ from exact reachability" in msg and "<- phi_" in msg
    net = _rebuild(msg)
    assert _disagrees_with_oracle(mutant, net)  # the counterexample is real (networkx says so)
    assert not _disagrees_with_oracle(numpy_phi, net)
    assert len(net.widths) <= 4 and max(net.widths.values()) <= 3, msg  # and it was shrunk
    if mutation == "ignore_skips":
        assert "skip" in net_features(net)
    else:
        assert any(op[0] == "weight" and op[4].shape[0] == op[4].shape[1] for op in net.ops)


def test_the_corner_cases_run_first():
    """A φ that is wrong only on a concatenation with a dead part is caught by the examples."""
    def blind(graph, masks):
        r, l = numpy_phi(graph, masks)
        if any(b.kind == "sparse" for b in graph.blocks):
            r = {g: np.ones_like(v) for g, v in r.items()}
        return r, l

    with pytest.raises(AssertionError) as info:
        assert_phi_exact(blind, layered_nets(kinds=("linear",)), examples=[CONCAT_OF_DEAD], max_examples=1)
    assert "cat" in str(info.value)


def _trainer_phi(graph, masks):
    return trainer.phi(trainer.plan_of(graph), {n: torch.as_tensor(m) for n, m in masks.items()})


def _trainer_factors(graph, masks):
    plan = trainer.plan_of(graph)
    return trainer.tc_factors(plan, *trainer.phi(plan, {n: torch.as_tensor(m) for n, m in masks.items()}))


def test_the_trainers_phi_and_factors_pass():
    assert_phi_exact(_trainer_phi, settings=CI, binary=True)
    assert_factors_exact(_trainer_factors, settings=CI)
    assert_phi_exact(_trainer_phi, masked_conv_nets(bias=True), settings=CI, binary=True)


def test_factors_that_keep_dead_weights_fail():
    def all_ones(graph, masks):
        return {n: np.ones_like(m) for n, m in masks.items()}

    with pytest.raises(AssertionError, match=r"reported but dead \(x\)"):
        assert_factors_exact(all_ones, settings=CI)


# -- products: the gate, at model level -------------------------------------------------------

def _gate_factors(as_sum: bool):
    """Φ for ``head(value(x) * sigmoid(gate(x)))`` (no biases), written by hand."""
    h = lambda v: (v > 0).astype(float)  # noqa: E731

    def factors(m):
        mv, mg, mh = m["value.weight"], m["gate.weight"], m["head.weight"]
        r_v, r_g = h(mv.sum(axis=1)), h(mg.sum(axis=1))
        r_p = h(r_v + r_g) if as_sum else r_v  # sigmoid never vanishes: the product lives iff value does
        l_p = h(mh.sum(axis=0))
        l_g = l_p if as_sum else l_p * r_v  # the gate matters only where the value is non-zero
        ones = np.ones(mv.shape[1])
        return {"value.weight": np.outer(l_p, ones), "gate.weight": np.outer(l_g, ones),
                "head.weight": np.outer(np.ones(mh.shape[0]), r_p)}

    return factors


def test_a_phi_that_reads_a_product_as_a_sum_fails_on_the_gate():
    """The LayeredGraph has no product node, so the gate is checked at model level, against the
    tap-level probe (default) and, independently, the random-point influence probe."""
    model, shape = nt.GATE_WITH_DEAD_BRANCH
    assert_model_factors_exact(_gate_factors(as_sum=False), model, shape, settings=CI)
    influence = lambda m, s, masks: nt.influence_probe(m, s, masks)  # noqa: E731
    assert_model_factors_exact(_gate_factors(as_sum=False), model, shape, oracle=influence, settings=CI)
    with pytest.raises(AssertionError) as info:
        assert_model_factors_exact(_gate_factors(as_sum=True), model, shape, settings=CI)
    msg = str(info.value)
    assert "gate.weight (2, 3): 6 reported but dead" in msg  # the corner case is tried first
    assert "head.weight (1, 2): 2 reported but dead" in msg
    with pytest.raises(AssertionError, match="reported but dead"):  # and random masks find it too
        assert_model_factors_exact(_gate_factors(as_sum=True), model, shape, examples=[], settings=CI)


@pytest.mark.parametrize("case", ["GATE_WITH_DEAD_BRANCH", "TAP_READS_ONLY_PADDING"])
def test_model_corner_cases_against_the_probes_and_the_tracer(case):
    """Hand-derived truth (see netgraph/testing/_cases.py) vs the three float64 probes and the
    tap-level audit of the traced model."""
    model, shape = getattr(nt, case)
    if case == "GATE_WITH_DEAD_BRANCH":
        want = {"value.weight": np.zeros((2, 3), bool), "gate.weight": np.zeros((2, 3), bool),
                "head.weight": np.zeros((1, 2), bool)}
        probes = (nt.tap_probe, nt.influence_probe)  # the linearised probe reads sigmoid as identity
    else:
        want = {"0.weight": np.zeros((2, 1, 3, 3), bool), "2.weight": np.array([[False, True]])}
        want["0.weight"][1, 0, 1, 1] = True  # only the centre tap of channel 1 reads the pixel
        probes = (nt.tap_probe, nt.influence_probe, nt.gradient_probe)
    for probe in probes:
        got = probe(model, shape)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{probe.__name__} {name}")
    states = trace_model(model, shape).weight_states()
    for name in want:
        np.testing.assert_array_equal(states[name].effective, want[name], err_msg=f"tracer {name}")


# -- the assertions against the networkx oracle ----------------------------------------------

@settings(CI, max_examples=40)
@given(layered_nets(), st.data())
def test_assert_reachability_equal_accepts_the_oracle_and_rejects_one_flip(net, data):
    graph = net.graph
    acc, coacc = _oracle_units(net)
    assert_reachability_equal(acc, coacc, graph)
    g = data.draw(st.sampled_from(graph.order))
    u = data.draw(st.integers(0, graph.groups[g].width - 1))
    bad = {k: list(v) for k, v in acc.items()}
    bad[g][u] = not bad[g][u]
    with pytest.raises(AssertionError, match=rf"\n\s*{re.escape(g)}\s.*accessible wrong at units \[{u}\]"):
        assert_reachability_equal(bad, coacc, graph)


@settings(CI, max_examples=40)
@given(layered_nets(), st.integers(0, 2**31 - 1))
def test_assert_effective_equal_accepts_the_oracle_and_rejects_one_flip(net, seed):
    acc, coacc, _ = reachability_oracle(net)
    expected = {n: np.zeros(m.shape, bool) for n, m in net.masks.items()}
    for a, b, w in unit_edges(net):
        if w is not None and a in acc and b in coacc:
            expected[w[0]][w[1]] = True
    rng = np.random.default_rng(seed)
    weights = {n: e * (rng.random(e.shape) + 0.5) for n, e in expected.items()}
    assert_effective_equal(weights, net.graph)
    assert_effective_equal(weights, net.graph, masks=net.masks)
    if not weights:
        return
    name = sorted(weights)[seed % len(weights)]
    idx = tuple(int(rng.integers(s)) for s in weights[name].shape)
    weights[name][idx] = 0.0 if weights[name][idx] else 1.0
    with pytest.raises(AssertionError, match=re.escape(name)):
        assert_effective_equal(weights, net.graph, masks=net.masks)


def test_assert_effective_equal_without_masks_counts_conv_taps():
    b = GraphBuilder()
    b.input("x", 1)
    mask = np.zeros((1, 1, 3, 3), bool)
    mask[0, 0, :, 0] = True  # three kept taps of one pair
    b.weight("c.weight", "x", "c", mask)
    g = b.build()
    assert_effective_equal({"c.weight": mask * 2.0}, g)
    shifted = np.zeros_like(mask)
    shifted[0, 0, 0, :] = True  # also three taps: the graph cannot tell which
    assert_effective_equal({"c.weight": shifted}, g)
    two = np.zeros_like(mask)
    two[0, 0, :2, 0] = True  # one kept tap missing
    with pytest.raises(AssertionError, match="1 effective but missed"):
        assert_effective_equal({"c.weight": two}, g)
    with pytest.raises(AssertionError, match="masks"):
        assert_effective_equal({"c.weight": shifted}, g, masks={"c.weight": mask}, err_msg="masks given")


def test_assert_effective_equal_names_a_missing_weight():
    g = chain([np.ones((2, 2))], names=["fc.weight"])
    with pytest.raises(AssertionError, match="no entry for weight 'fc.weight'"):
        assert_effective_equal({}, g)


# -- the pictures -----------------------------------------------------------------------------

@settings(CI, max_examples=30)
@given(layered_nets(kinds=("linear",), max_width=5))
def test_draw_graph_grids_are_the_masks(net):
    text = nt.draw_graph(net.graph)
    lines = text.splitlines()
    for name, mask in net.masks.items():
        (k,) = [i for i, line in enumerate(lines) if f" {name} {mask.shape}" in line]
        grid = [lines[k].split()[-1]] + [lines[k + j].strip() for j in range(1, mask.shape[0])]
        assert grid == ["".join("#" if v else "." for v in row) for row in mask], (name, text)


# -- function preservation --------------------------------------------------------------------

@settings(CI, max_examples=15)
@given(nt.pruned_models(kind="mlp"))
def test_zeroing_what_netgraph_calls_dead_preserves_the_function(case):
    from netgraph import prune_model

    model, shape = case
    pruned = prune_model(model, trace_model(model, shape))
    before = nt._assertions._own_masks(model)
    after = nt._assertions._own_masks(pruned)
    dead = {n: before[n] & ~after[n] for n in before}
    event(f"dead weights: {'some' if any(d.any() for d in dead.values()) else 'none'}")
    assert_function_preserved(model, None, dead, input_shape=shape)


def test_calling_a_live_or_constant_weight_dead_fails():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.5)
        model[0].weight[1] = 0  # unit 1 of the hidden layer has only its bias: 2.weight[0, 1] is constant
    live = {"2.weight": np.array([[True, False]])}
    with pytest.raises(AssertionError, match="changes output 0"):
        assert_function_preserved(model, None, live, input_shape=(4, 3))
    constant = {"2.weight": np.array([[False, True]])}
    with pytest.raises(AssertionError, match="changes output 0"):
        assert_function_preserved(model, None, constant, input_shape=(4, 3))
    assert_function_preserved(model, None, {"0.weight": np.zeros((2, 3), bool)}, input_shape=(4, 3))


# -- the strategies cover what they claim -----------------------------------------------------

def _features_within_ci(strategy) -> set[str]:
    seen: set[str] = set()

    @settings(CI)
    @given(strategy)
    def collect(net):
        f = net_features(net)
        for name in f:
            event(name)
        seen.update(f)

    collect()
    return seen


def test_layered_nets_cover_every_claimed_case_within_the_ci_profile():
    seen = _features_within_ci(layered_nets())
    claimed = {"two inputs", "width one", "empty layer", "conv kernel", "grouped conv", "flatten channels first",
               "flatten channels last", "concatenation", "all-to-all", "constant", "identity skip",
               "weighted skip", "dead weight", "collapsed", "skip around a dead layer",
               "concatenation of a dead part"}
    assert claimed <= seen, sorted(claimed - seen)


def test_conv_nets_cover_their_claims_within_the_ci_profile():
    seen = _features_within_ci(masked_conv_nets(bias=True))
    claimed = {"conv kernel", "grouped conv", "flatten channels first", "flatten channels last",
               "concatenation", "identity skip", "constant", "empty layer", "width one"}
    assert claimed <= seen, sorted(claimed - seen)


def test_the_graph_corner_cases_are_what_they_say():
    for name, net in GRAPH_CORNER_CASES.items():
        f = net_features(net)
        expected = {"empty layer": "empty layer", "width one": "width one",
                    "skip around a dead layer": "skip around a dead layer", "constant-fed weight": "constant",
                    "concatenation of a dead branch": "concatenation of a dead part"}[name]
        assert expected in f, (name, f)
    assert "skip around a dead layer" in net_features(SKIP_AROUND_DEAD)


@pytest.mark.parametrize("sparsity", [(0.0, 0.0), (0.5, 0.7), (0.9, 0.99), (1.0, 1.0)])
def test_sparsity_ranges_hold_per_weight(sparsity):
    lo, hi = sparsity

    @settings(CI, max_examples=30)
    @given(st.one_of(masked_mlps(sparsity=sparsity), masked_conv_nets(sparsity=sparsity)))
    def check(net):
        for name, m in net.masks.items():
            s = 1.0 - m.mean()
            assert lo - 1.0 / m.size - 1e-12 <= s <= hi + 1.0 / m.size + 1e-12, (name, m.shape, s)

    check()


# -- packaging --------------------------------------------------------------------------------

def test_graph_helpers_import_without_torch():
    code = ("import sys, netgraph.testing as t\n"
            "t.layered_nets, t.masked_mlps, t.assert_phi_exact, t.reachability_oracle, t.draw_graph\n"
            "t.EMPTY_LAYER.graph\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_the_model_zoo_and_the_plain_helpers_import_without_hypothesis():
    """Hypothesis is a test extra: netgraph.testing.models (used by the benchmarks), Net, the corner
    cases and the pictures must not need it."""
    code = ("import sys\n"
            "sys.modules['hypothesis'] = None  # as if not installed\n"
            "import netgraph.testing.models, netgraph.testing as t\n"
            "t.draw_graph(t.SKIP_AROUND_DEAD.graph), t.reachability_oracle(t.CONCAT_OF_DEAD)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_profiles_are_registered():
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.deadline is None and ci.database is None
    assert settings.get_profile("dev").max_examples < ci.max_examples < settings.get_profile("thorough").max_examples


# -- the documentation example ----------------------------------------------------------------

def test_the_documentation_example_fails_then_passes_as_shown(monkeypatch):
    """docs/testing.md: the MLP φ passes on MLPs and fails on a skip; the pasted counterexample is
    real (networkx disagrees with the MLP φ on it, not with the fixed one); the fix passes."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w+)\n(.*?)```", doc, flags=re.S)
    python = [code for lang, code in blocks if lang == "python"]
    example, rerun = python[0], python[1]
    diff = next(code for lang, code in blocks if lang == "diff")
    shown = next(code for lang, code in blocks if lang == "text" and "as an @example" in code)
    monkeypatch.setattr(nt, "load_profile", lambda name: None)  # keep the session's profile
    ns: dict = {}
    with pytest.raises(AssertionError) as info:
        exec(compile(example, "docs/testing.md", "exec"), ns)  # noqa: S102 - our own documentation
    assert "phi_r wrong" in str(info.value)
    net = _rebuild(shown)
    assert _disagrees_with_oracle(ns["my_phi"], net)
    fixed = example
    for old, new in zip(re.findall(r"^-(.*)$", diff, flags=re.M), re.findall(r"^\+(.*)$", diff, flags=re.M)):
        assert old in fixed
        fixed = fixed.replace(old, new)
    fixed = fixed.split("assert_phi_exact(my_phi", 1)[0]  # the definitions only
    exec(compile(fixed, "docs/testing.md", "exec"), ns)  # noqa: S102
    assert not _disagrees_with_oracle(ns["my_phi"], net)
    exec(compile(rerun, "docs/testing.md", "exec"), ns)  # noqa: S102
