"""One meaning of a dead unit (issue 8, item 5): effective / dead / unused, the same in the
audit, the figures' data and compaction.  Checked against a networkx oracle that reads the
raw network description (``Net.ops``), never netgraph's blocks."""

from __future__ import annotations

import networkx as nx
import numpy as np
import torch
import torch.nn as nn
from hypothesis import given, settings

from netgraph import (
    UNIT_DEAD,
    UNIT_EFFECTIVE,
    UNIT_UNUSED,
    GraphBuilder,
    audit,
    chain,
    compact_model,
    reachability,
    trace_model,
    unit_states,
)
from tests.oracles import reachability_oracle, unit_edges
from tests.strategies import layered_nets


def unit_state_oracle(net) -> dict[str, np.ndarray]:
    """effective = accessible and coaccessible; dead = not effective and read or written by a
    kept weight, or joined to such a unit by structural connections through units that are
    not effective either (downstream or upstream); unused = the rest."""
    acc, coacc, _ = reachability_oracle(net)
    live = acc & coacc
    structural = nx.DiGraph()
    structural.add_nodes_from((g, u) for g, w in net.widths.items() for u in range(w))
    endpoints = set()
    for a, b, w in unit_edges(net):
        if w is None:
            structural.add_edge(a, b)
        else:
            endpoints |= {a, b}
    direct = endpoints - live
    inert = structural.subgraph(n for n in structural if n not in live)
    touched = set(direct)
    for n in direct:
        touched |= nx.descendants(inert, n) | nx.ancestors(inert, n)
    out = {}
    for g, w in net.widths.items():
        out[g] = np.array([2 if ((g, u) in acc and (g, u) in coacc) else 1 if (g, u) in touched else 0
                           for u in range(w)], np.int8)
    return out


@settings(max_examples=60)
@given(layered_nets())
def test_unit_states_equal_the_oracle(net):
    graph = net.build()
    got = unit_states(graph)
    want = unit_state_oracle(net)
    assert set(got) == set(want)
    for g in want:
        np.testing.assert_array_equal(got[g], want[g], err_msg=g)


@settings(max_examples=40)
@given(layered_nets())
def test_audit_counts_are_the_unit_states(net):
    graph = net.build()
    rep = audit(graph)
    want = unit_state_oracle(net)
    written = {op[3] for op in net.ops if op[0] == "weight"}
    assert rep.summary.dead_units == sum(int((want[g] == 1).sum()) for g in written)
    assert rep.summary.unused_units == sum(int((want[g] == 0).sum()) for g in written)
    for layer in rep.layers:
        b = graph.block(layer.name)
        assert layer.dead_units_in == int((want[b.src] == 1).sum())
        assert layer.dead_units_out == int((want[b.dst] == 1).sum())
        assert layer.unused_units_in == int((want[b.src] == 0).sum())
        assert layer.unused_units_out == int((want[b.dst] == 0).sum())


def test_unused_but_no_dead_units():
    # hidden unit 2 has no kept weight at all (pruned away); everything else is effective
    m1 = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0], [1, 0, 0]])
    m2 = np.array([[1, 1, 0, 0], [0, 0, 0, 1]])
    rep = audit(chain([m1, m2]))
    assert rep.summary.dead == 0
    assert rep.summary.dead_units == 0
    assert rep.summary.unused_units == 1
    assert rep.layer("layer0").unused_units_out == 1 and rep.layer("layer1").unused_units_in == 1
    s = rep.to_dict()["summary"]
    assert s["dead_units"] == 0 and s["unused_units"] == 1


def test_two_heads_with_no_dead_weight_have_no_dead_unit():
    """The issue's example: summing per-block counts called 2 units dead here."""
    b = GraphBuilder()
    b.input("x", 2)
    b.weight("trunk.weight", "x", "h", np.array([[1, 0], [0, 1]]))
    b.weight("a.weight", "h", "a", np.array([[1, 0]]))  # head a reads unit 0 only
    b.weight("b.weight", "h", "b", np.array([[0, 1]]))  # head b reads unit 1 only
    rep = audit(b.build())
    assert rep.summary.dead == 0 and rep.summary.dead_units == 0 and rep.summary.unused_units == 0


def test_a_unit_with_dead_weights_only_is_dead():
    m1 = np.array([[1, 0], [0, 0]])  # unit 1 receives nothing ...
    m2 = np.array([[1, 1]])           # ... but a kept weight reads it: dead (a defect)
    g = chain([m1, m2])
    states = unit_states(g)
    assert states[g.order[1]].tolist() == [UNIT_EFFECTIVE, UNIT_DEAD]
    assert states[g.order[0]].tolist() == [UNIT_EFFECTIVE, UNIT_UNUSED]
    assert audit(g).summary.dead_units == 1


def test_states_look_through_a_flatten():
    """A conv channel read only through a flatten has kept weights out: dead or effective, not unused."""
    b = GraphBuilder()
    b.input("x", 1)
    b.weight("conv.weight", "x", "conv", np.array([[[[1]]], [[[0]]]]))  # channel 1 receives nothing
    b.expand("conv", "flat", 2)
    b.weight("fc.weight", "flat", "fc", np.array([[1, 0, 1, 0]]))  # reads channel 0 and channel 1
    g = b.build()
    states = unit_states(g)
    assert states["conv"].tolist() == [UNIT_EFFECTIVE, UNIT_DEAD]
    # feature 1 is a copy of the effective channel 0 that nothing reads: unused (the conv weight
    # that computes it works through feature 0); feature 2 is read by a kept weight and carries
    # nothing: dead; feature 3 (channel 1, which no kept weight writes) nothing touches: unused
    assert states["flat"].tolist() == [UNIT_EFFECTIVE, UNIT_UNUSED, UNIT_DEAD, UNIT_UNUSED]


def test_compaction_keeps_exactly_the_effective_units_of_an_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 5, bias=False), nn.ReLU(),
                          nn.Linear(5, 3, bias=False))
    with torch.no_grad():
        model[0].weight[:, 4:] = 0.0
        model[0].weight[6:] = 0.0        # hidden units 6, 7: no input -> unused or dead
        model[2].weight[:, 7] = 0.0      # unit 7: nothing reads it either -> unused
        model[2].weight[4] = 0.0         # unit 4 of layer 2 receives nothing
        model[4].weight[:, 3] = 0.0      # unit 3 of layer 2 reaches no output -> dead
    traced = trace_model(model, (2, 6))
    states = unit_states(traced.graph, traced.tap_reachability())
    result = compact_model(model, traced, repeats=0)
    for layer in ("0", "2"):
        block = traced.graph.block(f"{layer}.weight")
        assert result.widths[layer][1] == int((states[block.dst] == UNIT_EFFECTIVE).sum())
    rep = traced.audit()
    assert rep.summary.dead_units + rep.summary.unused_units == sum(
        int((states[traced.graph.block(f"{i}.weight").dst] != UNIT_EFFECTIVE).sum()) for i in (0, 2, 4))


def test_reach_weight_states_match_the_pair_level_audit():
    rng = np.random.default_rng(0)
    masks = [rng.random((5, 4)) < 0.4, rng.random((3, 5)) < 0.4, rng.random((2, 3)) < 0.6]
    g = chain(masks)
    r = reachability(g)
    rep = audit(g, r)
    for b, m in zip(g.weighted_blocks, masks):
        ws = r.weight_states(b, m)
        layer = rep.layer(b.name)
        assert int(ws.kept.sum()) == layer.kept and int(ws.effective.sum()) == layer.effective
        assert int(ws.dead.sum()) == layer.dead and int(ws.constant.sum()) == layer.constant
        assert not (ws.constant & ~ws.dead).any() and not (ws.effective & ~ws.kept).any()


def test_unread_flatten_positions_of_an_effective_channel_are_unused():
    # x(2) --conv(1x1)--> c(2) --flatten x3--> f(6) --fc--> y(1); fc reads one position of c0
    b = GraphBuilder()
    b.input("x", 2)
    b.group("c", 2)
    b.weight("conv.weight", "x", "c", np.array([[1, 0], [0, 0]]))
    b.group("f", 6)
    b.expand("c", "f", 3)
    b.group("y", 1)
    b.weight("fc.weight", "f", "y", np.array([[1, 0, 0, 0, 0, 0]]))
    graph = b.build()
    states = unit_states(graph)
    assert states["c"].tolist() == [UNIT_EFFECTIVE, UNIT_UNUSED]
    assert states["f"].tolist() == [UNIT_EFFECTIVE] + [UNIT_UNUSED] * 5
    rep = audit(graph)
    assert rep.summary.dead == 0 and rep.summary.dead_units == 0


def test_flattened_copies_of_a_dead_channel_are_dead():
    # conv writes c1 from h1, which no input reaches: c1 is written by a kept weight and is not
    # accessible -> dead, and so are its flattened copies (one of which fc reads)
    b = GraphBuilder()
    b.input("x", 1)
    b.group("h", 2)
    b.weight("w0.weight", "x", "h", np.array([[1], [0]]))
    b.group("c", 2)
    b.weight("conv.weight", "h", "c", np.array([[1, 0], [0, 1]]))
    b.group("f", 4)
    b.expand("c", "f", 2)
    b.group("y", 1)
    b.weight("fc.weight", "f", "y", np.array([[1, 0, 1, 0]]))
    graph = b.build()
    states = unit_states(graph)
    assert states["c"].tolist() == [UNIT_EFFECTIVE, UNIT_DEAD]
    assert states["f"].tolist() == [UNIT_EFFECTIVE, UNIT_UNUSED, UNIT_DEAD, UNIT_DEAD]
