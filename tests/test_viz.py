"""viz draws the data it is given: checked on the rendered pixels and the drawn artists.

The references are the independent oracles of ``tests/oracles.py`` (networkx reachability
on the raw network description) and the audit's counts, never viz's own helpers.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import matplotlib.image as mpimg
from matplotlib.colors import to_rgb
import numpy as np
import pytest
from hypothesis import example, given, settings

import viz
from netgraph import GraphBuilder, audit, chain, reachability
from netgraph import unit_states as netgraph_unit_states
from tests.oracles import reachability_oracle, unit_edges, unit_graph
from tests.strategies import CONSTANT_FED, EMPTY_LAYER, SKIP_AROUND_DEAD, WIDTH_ONE, chain_masks, layered_nets
from viz._style import CONSTANT, DEAD, KEPT, NOT_A_WEIGHT, NOT_COACCESSIBLE, PRUNED, rgb8

# "dead" = dead because not accessible (vermillion); "no_output" = dead, accessible but not coaccessible
COLOURS = {"kept": rgb8(KEPT), "pruned": rgb8(PRUNED), "dead": rgb8(DEAD), "constant": rgb8(CONSTANT),
           "none": rgb8(NOT_A_WEIGHT), "no_output": rgb8(NOT_COACCESSIBLE)}


def canvas(fig) -> np.ndarray:
    """The rendered RGB pixels of a figure, ``(H, W, 3) uint8``."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def classify(img: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean image per palette colour; every pixel must be exactly one of them."""
    out = {k: (img == c).all(axis=-1) for k, c in COLOURS.items()}
    assert sum(v.astype(int) for v in out.values()).max() == 1
    assert sum(v.astype(int) for v in out.values()).min() == 1, "a pixel has a colour outside the palette"
    return out


def oracle_dead_weights(net) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per weight: (dead, constant, not coaccessible) bool arrays of the mask's shape, from
    networkx reachability; "not coaccessible" = dead with an accessible source."""
    acc, coacc, const = reachability_oracle(net)
    out = {op[1]: tuple(np.zeros(op[4].shape, bool) for _ in range(3)) for op in net.weight_ops}
    for a, b, w in unit_edges(net):
        if w is None:
            continue
        name, idx = w
        if not (a in acc and b in coacc):
            out[name][0][idx] = True
            out[name][1][idx] = (a not in acc) and (a in const) and (b in coacc)
            out[name][2][idx] = a in acc
    return out


def unfolded(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1)


# -- masks ------------------------------------------------------------------------------------

@settings(max_examples=20)
@given(layered_nets())
@example(EMPTY_LAYER).via("corner case")
@example(WIDTH_ONE).via("corner case")
@example(SKIP_AROUND_DEAD).via("corner case")
@example(CONSTANT_FED).via("corner case")
def test_exact_mask_pixels_are_the_mask_and_the_audits_dead_set(net):
    graph = net.build()
    reach = reachability(graph)
    report = audit(graph, reach)
    expected = oracle_dead_weights(net)
    for op in net.weight_ops:
        name, mask = op[1], op[4]
        view = viz.mask_view(mask, graph, name, reach=reach)
        img = canvas(viz.plot_mask(view, exact=True))
        assert img.shape[:2] == unfolded(mask).shape  # one pixel per entry
        px = classify(img)
        assert not px["constant"].any()  # constant weights are dead: warning colour by default
        np.testing.assert_array_equal(px["kept"] | px["dead"] | px["no_output"], unfolded(mask))
        dead, _, no_output = (unfolded(a) for a in expected[name])
        np.testing.assert_array_equal(px["no_output"], no_output)  # the two kinds of dead in two hues
        np.testing.assert_array_equal(px["dead"], dead & ~no_output)
        assert int(px["dead"].sum() + px["no_output"].sum()) == report.layer(name).dead


@settings(max_examples=15)
@given(layered_nets())
@example(CONSTANT_FED).via("constant edge")
def test_exact_mask_with_constant_colour(net):
    graph = net.build()
    expected = oracle_dead_weights(net)
    report = audit(graph)
    for op in net.weight_ops:
        name, mask = op[1], op[4]
        px = classify(canvas(viz.plot_mask(viz.mask_view(mask, graph, name), exact=True, show_constant=True)))
        np.testing.assert_array_equal(px["constant"], unfolded(expected[name][1]))
        np.testing.assert_array_equal(px["dead"] | px["constant"] | px["no_output"], unfolded(expected[name][0]))
        assert int(px["constant"].sum()) == report.layer(name).constant


def test_exact_png_file_is_the_mask(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.random((37, 101)) < 0.3  # odd sizes: w/100 inches at dpi 100 would lose a column
    path = viz.save_figure(viz.plot_mask(mask, exact=True), tmp_path / "m.png")
    img = (mpimg.imread(path)[..., :3] * 255).round().astype(np.uint8)
    px = classify(img)
    np.testing.assert_array_equal(px["kept"], mask)
    np.testing.assert_array_equal(px["pruned"], ~mask)


def test_crop_draws_exactly_the_window():
    rng = np.random.default_rng(1)
    mask = rng.random((20, 30)) < 0.5
    px = classify(canvas(viz.plot_mask(mask, crop=(3, 11, 5, 29), exact=True)))
    np.testing.assert_array_equal(px["kept"], mask[3:11, 5:29])


def test_conv_mask_unfolds_one_block_of_taps_per_input_channel():
    mask = np.zeros((2, 3, 2, 2), bool)  # (out, in, kh, kw)
    mask[1, 2, 0, 1] = True  # output 1, input channel 2, tap (0, 1)
    px = classify(canvas(viz.plot_mask(mask, exact=True)))
    assert px["kept"].shape == (2, 12)
    assert list(zip(*np.nonzero(px["kept"]))) == [(1, 2 * 4 + 1)]
    fig = viz.plot_mask(mask)
    ax = fig.axes[0]
    vlines = sorted(line.get_xdata()[0] for line in ax.lines)
    assert vlines == [3.5, 7.5]  # grid every kh*kw = 4 columns: one block per input channel


def test_block_grid_and_image_extent_keep_tensor_indices():
    mask = np.kron(np.eye(4), np.ones((5, 5))).astype(bool)  # 4 heads of 5x5
    fig = viz.plot_mask(viz.MaskView(mask, block=(5, 5)), crop=(2, 17, 0, 20))
    ax = fig.axes[0]
    im = ax.images[0]
    np.testing.assert_array_equal(im.get_array()[..., 0] == rgb8(KEPT)[0], mask[2:17, 0:20])
    assert im.get_extent() == [-0.5, 19.5, 16.5, 1.5]
    hlines = sorted(l.get_ydata()[0] for l in ax.lines if l.get_ydata()[0] == l.get_ydata()[1]
                    and l.get_xdata()[0] == 0)
    assert hlines == [4.5, 9.5, 14.5]


def test_block_diagonal_places_each_heads_pixels_on_the_diagonal():
    net = CONSTANT_FED
    graph = net.build()
    masks = {op[1]: op[4] for op in net.weight_ops}
    views = {n: viz.mask_view(m, graph, n) for n, m in masks.items()}
    expected = oracle_dead_weights(net)
    both = viz.select_views(views, "g*.weight", "net")  # a glob: every weight, stacked
    assert both.mask.shape == (3, 4)
    px = classify(canvas(viz.plot_mask(both, exact=True, show_constant=True)))
    (a_out, a_in), (b_out, b_in) = masks["g0.weight"].shape, masks["g1.weight"].shape
    np.testing.assert_array_equal(px["kept"] | px["dead"] | px["constant"] | px["no_output"],
                                  np.block([[masks["g0.weight"], np.zeros((a_out, b_in), bool)],
                                            [np.zeros((b_out, a_in), bool), masks["g1.weight"]]]))
    np.testing.assert_array_equal(px["constant"][a_out:, a_in:], expected["g1.weight"][1])
    assert px["constant"].sum() == 1
    np.testing.assert_array_equal(px["none"][:a_out, a_in:], True)  # between the heads: no weight
    np.testing.assert_array_equal(px["none"][a_out:, :a_in], True)
    assert not px["none"][:a_out, :a_in].any() and not px["none"][a_out:, a_in:].any()
    assert both.total == masks["g0.weight"].size + masks["g1.weight"].size
    assert viz.select_views(views, "g1.weight", "net") is views["g1.weight"]
    heads = viz.block_diagonal([np.ones((2, 2), bool)] * 3)
    assert heads.block == (2, 2) and heads.mask.sum() == 12
    with pytest.raises(viz.BadPlotInput, match="no prunable weight named 'h.*'"):
        viz.select_views(views, "h.*", "net")


def test_mask_grid_is_methods_by_rates_with_each_cell_drawn():
    rng = np.random.default_rng(2)
    original = np.ones((8, 12), bool)
    cells = {("original", None): original}
    for method in ("coarse", "fine", "CTF"):
        for rate in (0.9, 0.5):
            cells[(method, rate)] = rng.random((8, 12)) > rate
    fig = viz.plot_mask_grid(cells, crop=(0, 8, 2, 12))
    axes = np.array(fig.axes).reshape(4, 2)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["original", "coarse", "fine", "CTF"]
    assert [ax.get_title() for ax in axes[0]] == ["rate 50%", "rate 90%"]  # ascending
    for i, method in enumerate(("original", "coarse", "fine", "CTF")):
        for j, rate in enumerate((0.5, 0.9)):
            mask = cells.get((method, rate), original)
            drawn = axes[i, j].images[0].get_array()
            np.testing.assert_array_equal(classify(np.asarray(drawn))["kept"], mask[:, 2:12])


def test_mask_grid_reads_checkpoints_and_marks_their_dead(tmp_path):
    torch = pytest.importorskip("torch")
    m1 = np.array([[1, 1, 0], [0, 0, 0]], bool)  # unit 1 of fc1 has no input
    m2 = np.array([[1, 1]], bool)                # so fc2's edge from it is dead
    path = tmp_path / "net.pt"
    torch.save({"fc1.weight": torch.tensor(m1 * 0.5, dtype=torch.float32),
                "fc2.weight": torch.tensor(m2 * 0.5, dtype=torch.float32)}, path)
    fig = viz.plot_mask_grid(viz.grid_views({("MP", 0.5): str(path)}, "fc2.weight"))
    px = classify(np.asarray(fig.axes[0].images[0].get_array()))
    assert px["dead"].tolist() == [[False, True]]
    assert px["kept"].tolist() == [[True, False]]
    with pytest.raises(viz.BadPlotInput, match="fc9.weight"):
        viz.grid_views({("MP", 0.5): str(path)}, "fc9.weight")
    with pytest.raises(viz.BadPlotInput, match="grid_views"):  # drawing functions never read files
        viz.plot_mask_grid({("MP", 0.5): str(path)})


def test_layer_masks_one_panel_per_weight_in_forward_order():
    rng = np.random.default_rng(3)
    masks = [rng.random((4, 6)) < 0.5, rng.random((3, 4)) < 0.5]
    g = chain(masks, ["a.weight", "b.weight"])
    views = {n: viz.mask_view(m, g, n) for n, m in zip(["a.weight", "b.weight"], masks)}
    fig = viz.plot_layer_masks(views)
    assert [ax.get_title(loc="left").split(" ")[0] for ax in fig.axes] == ["a.weight", "b.weight"]
    for ax, m in zip(fig.axes, masks):
        px = classify(np.asarray(ax.images[0].get_array()))
        np.testing.assert_array_equal(px["kept"] | px["dead"] | px["no_output"], m)


# -- connectivity ------------------------------------------------------------------------------

def _segments(fig, cls: str) -> list[np.ndarray]:
    (col,) = [c for c in fig.axes[0].collections if c.get_gid() == f"edges:{cls}"]
    return [np.asarray(s) for s in col.get_segments()]


def _offsets(fig, gid: str) -> np.ndarray:
    (col,) = [c for c in fig.axes[0].collections if c.get_gid() == gid]
    return np.asarray(col.get_offsets()).reshape(-1, 2)


@settings(max_examples=25)
@given(chain_masks())
def test_drawn_dead_edges_of_an_mlp_equal_the_audits_dead_count(masks):
    graph = chain(masks)
    report = audit(graph)
    fig = viz.plot_network(graph)
    drawn_dead = sum(len(_segments(fig, c)) for c in ("not_accessible", "not_coaccessible", "constant"))
    assert drawn_dead == report.summary.dead  # linear layers: one weight per unit pair
    assert len(_segments(fig, "effective")) == report.summary.effective


@settings(max_examples=20)
@given(layered_nets())
@example(SKIP_AROUND_DEAD).via("skip around a dead layer")
@example(CONSTANT_FED).via("constant edge")
def test_layered_drawing_draws_the_oracles_pairs_and_dead_units(net):
    """Unit-pair level: each dead (i, j) pair of a weight is one dead (or constant) edge."""
    graph = net.build()
    acc, coacc, const = reachability_oracle(net)
    weighted = {(a, b) for a, b, w in unit_edges(net) if w is not None}
    dead = {(a, b) for a, b in weighted if not (a in acc and b in coacc)}
    constant = {(a, b) for a, b in dead if a not in acc and a in const and b in coacc}
    no_output = {(a, b) for a, b in dead if a in acc}
    pos = viz.network_layout(graph)
    where = {tuple(np.round(p, 9)): unit for unit, p in pos.items()}
    assert len(where) == len(pos)  # every unit has its own place

    fig = viz.plot_network(graph)

    def pairs(cls):
        return {(where[tuple(np.round(s[0], 9))], where[tuple(np.round(s[-1], 9))]) for s in _segments(fig, cls)}

    assert pairs("not_accessible") == dead - constant - no_output
    assert pairs("not_coaccessible") == no_output
    assert pairs("constant") == constant
    assert pairs("effective") == weighted - dead
    assert sum(len(_segments(fig, c)) for c in ("not_accessible", "not_coaccessible", "constant")) == len(dead)
    drawn = {k: {where[tuple(np.round(p, 9))] for p in _offsets(fig, f"units:{k}")}
             for k in ("effective", "dead", "unused")}
    assert drawn["effective"] == {u for u in pos if u in acc and u in coacc}
    # dead vs unused: a unit that no kept weight touches is unused, never dead
    # (a kept weight touches a dead unit directly, or through structural blocks)
    assert drawn["dead"] <= {u for a, b, _ in unit_edges(net) for u in (a, b)}
    assert not (drawn["unused"] & {u for e in weighted for u in e})
    assert drawn["dead"] | drawn["unused"] == set(pos) - drawn["effective"]
    assert not (drawn["dead"] & drawn["unused"])


def test_layout_puts_units_in_columns_by_depth_with_unit_zero_on_top():
    b = GraphBuilder()
    b.input("x", 6)
    b.weight("a.weight", "x", "a", np.ones((5, 6)))
    b.weight("b.weight", "a", "b", np.ones((5, 5)))
    b.identity("x", "y")  # a second group at depth 1
    pos = viz.network_layout(b.build())
    for group, width in (("x", 6), ("a", 5), ("b", 5)):
        ys = [pos[(group, u)][1] for u in range(width)]
        assert ys == sorted(ys, reverse=True)  # unit 0 at the top
        assert len({pos[(group, u)][0] for u in range(width)}) == 1  # one column
    assert pos[("x", 0)][0] < pos[("a", 0)][0] < pos[("b", 0)][0]
    assert pos[("y", 0)][0] == pos[("a", 0)][0]


def _bar_heights(fig) -> dict[str, list[float]]:
    return {c.get_label(): [p.get_height() for p in c] for c in fig.axes[0].containers}


@settings(max_examples=25)
@given(layered_nets())
@example(CONSTANT_FED).via("constant")
@example(EMPTY_LAYER).via("empty layer")
def test_bar_heights_are_the_audits_counts(net):
    graph = net.build()
    report = audit(graph)
    h = _bar_heights(viz.plot_layer_bars(report))
    layers = report.layers
    assert h["effective"] == [l.effective for l in layers]
    assert h["constant (dead, fed by a bias)"] == [l.constant for l in layers]
    assert h["dead: not accessible"] == [l.kept - l.accessible - l.constant for l in layers]
    assert h["dead: not coaccessible"] == [l.accessible - l.effective for l in layers]
    np.testing.assert_array_equal(np.sum(list(h.values()), axis=0), [l.kept for l in layers])
    assert all(x >= 0 for v in h.values() for x in v)
    # and the audit agrees with the oracle, so the bars show the truth
    from tests.oracles import weight_status_oracle

    oracle = weight_status_oracle(net)
    assert h["effective"] == [oracle[l.name]["effective"] for l in layers]
    pct = _bar_heights(viz.plot_layer_bars(report.to_dict(), normalize=True))
    for k, l in enumerate(layers):
        total = sum(v[k] for v in pct.values())
        assert total == pytest.approx(100.0 if l.kept else 0.0)
        assert pct["effective"][k] == pytest.approx(100.0 * l.effective / l.kept if l.kept else 0.0)


def test_dead_units_strip_and_audit_figure():
    net = SKIP_AROUND_DEAD
    graph = net.build()
    acc, coacc, _ = reachability_oracle(net)
    weighted = {u for a, b, w in unit_edges(net) if w is not None for u in (a, b)}
    states = netgraph_unit_states(graph)
    for fig in (viz.plot_dead_units(graph), viz.plot_audit(audit(graph), graph)):
        ax = fig.axes[-1]
        for im in ax.images:
            group = im.get_gid().split(":", 1)[1]
            arr = np.asarray(im.get_array())[0]
            drawn = {k: (arr == np.array(to_rgb(c))).all(axis=-1) for k, c in
                     (("dead", DEAD), ("effective", KEPT), ("unused", PRUNED))}
            units = range(graph.groups[group].width)
            effective = [(group, u) in acc and (group, u) in coacc for u in units]
            assert drawn["effective"].tolist() == effective
            # dead = not effective but touched by a kept weight; on these nets no structural
            # block feeds a weight, so "touched" is the oracle's weighted unit edges
            assert drawn["dead"].tolist() == [not e and (group, u) in weighted for u, e in zip(units, effective)]
            assert drawn["dead"].tolist() == (states[group] == 1).tolist()
            assert drawn["unused"].tolist() == (states[group] == 0).tolist()
        assert len(ax.images) == len(graph.order)


def test_connectivity_picks_the_drawing_by_size():
    small = chain([np.ones((3, 4)), np.ones((2, 3))])
    assert any(c.get_gid() == "edges:effective" for c in viz.plot_connectivity(small).axes[0].collections)
    big = chain([np.ones((200, 300)), np.ones((10, 200))])
    fig = viz.plot_connectivity(big)
    assert len(fig.axes) == 2 and fig.axes[0].containers  # bars + strip


@settings(max_examples=20)
@given(layered_nets())
def test_receptive_set_image_is_s_a(net):
    graph = net.build()
    sink = graph.sinks[0]
    fig = viz.plot_receptive_sets(graph)
    (im,) = [i for i in fig.axes[0].images if i.get_gid() == "receptive"]
    drawn = np.asarray(im.get_array()) > 0.5  # (units of sink, inputs)
    G = unit_graph(net)
    inputs = [(s, u) for s in graph.sources for u in range(graph.groups[s].width)]
    expected = np.array([[(sink, j) in G.nodes and ((sink, j) == i or (sink, j) in _desc(G, i)) for i in inputs]
                         for j in range(graph.groups[sink].width)])
    np.testing.assert_array_equal(drawn, expected)


def _desc(G, node):
    import networkx as nx

    return nx.descendants(G, node)


def test_receptive_panels_reshape_each_units_set():
    masks = [np.eye(4, dtype=bool), np.array([[1, 1, 0, 0], [0, 0, 0, 1]], bool)]
    fig = viz.plot_receptive_sets(chain(masks), input_shape=(2, 2))
    images = {im.get_gid(): np.asarray(im.get_array()) for ax in fig.axes for im in ax.images}
    np.testing.assert_array_equal(images["receptive:0"], [[1, 1], [0, 0]])
    np.testing.assert_array_equal(images["receptive:1"], [[0, 0], [0, 1]])
    with pytest.raises(viz.BadPlotInput, match="input_shape"):
        viz.plot_receptive_sets(chain(masks), input_shape=(3, 3))


# -- ablation ----------------------------------------------------------------------------------

ROWS = [
    {"method": "MP w/o TC", "rate": 0.5, "kept": 500, "effective_pct": 98.7, "accuracy": 85.0, "seed": 0},
    {"method": "MP w/o TC", "rate": 0.95, "kept": 50, "effective_pct": 64.0, "accuracy": 83.0, "seed": 0},
    {"method": "MP w/o TC", "rate": 0.95, "kept": 50, "effective_pct": 66.0, "accuracy": 81.0, "seed": 1},
    {"method": "MP w TC", "rate": 0.95, "kept": 50, "effective": 50, "accuracy": None},
    {"method": "MP w TC", "rate": 0.5, "kept": 500, "effective_pct": 100.0, "accuracy": 84.3, "speedup": 1.0},
    {"method": "baseline", "rate": 0.0, "kept": 1000, "effective_pct": 100.0, "accuracy": 86.1},
]


def _lines(fig) -> dict[str, tuple[list[float], list[float]]]:
    return {l.get_gid(): (list(l.get_xdata()), list(l.get_ydata())) for ax in fig.axes for l in ax.lines
            if l.get_gid()}


def test_ablation_lines_are_the_rows(tmp_path):
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({"rows": ROWS, "config": {"epochs": 3}}))
    fig = viz.plot_ablation(viz.load_ablation(path))
    lines = _lines(fig)
    assert lines["effective:MP w/o TC"] == ([0.5, 0.95], [98.7, 65.0])  # seeds averaged
    assert lines["accuracy:MP w/o TC"] == ([0.5, 0.95], [85.0, 82.0])
    assert lines["effective:MP w TC"] == ([0.5, 0.95], [100.0, 100.0])  # 50 of 50 effective
    assert lines["accuracy:MP w TC"] == ([0.5], [84.3])  # accuracy null: not a point
    assert lines["baseline-accuracy:baseline"][1] == [86.1, 86.1]  # rate 0: a reference line
    assert fig.axes[0].get_xscale() == "function"  # -log10(1 - rate): 90 %, 99 %, 99.9 % equally spaced
    assert viz.plot_ablation(ROWS).axes[0].get_xscale() == "function"  # dicts accepted too


def _trainer_row(ds, method, rate, eff, acc, table):
    """The keys trainer._ablate writes (no "rate": target_rate / achieved_rate)."""
    return {"dataset": ds, "method": method, "target_rate": rate, "achieved_rate": rate + 1e-4 if rate else 0.0,
            "kept": 100, "effective": int(eff), "effective_pct": eff, "accuracy": acc, "seconds": 1.0,
            "table": table, "speedup": 1.0}


def test_ablation_reads_the_trainers_json_one_panel_row_per_dataset(tmp_path):
    rows = [_trainer_row("synthetic-sbu", "dense", 0.0, 100.0, 90.0, "baseline"),
            _trainer_row("synthetic-sbu", "mp", 0.5, 95.0, 88.0, "tc"),
            _trainer_row("synthetic-sbu", "mp", 0.9, 70.0, 80.0, "tc"),
            _trainer_row("synthetic-sbu", "mp-tc", 0.5, 100.0, 89.0, "tc"),
            _trainer_row("synthetic-sbu", "mp-tc", 0.9, 100.0, 85.0, "tc"),
            _trainer_row("synthetic-fpha", "mp", 0.5, 90.0, 60.0, "tc"),
            _trainer_row("synthetic-fpha", "mp", 0.9, 50.0, 40.0, "tc")]
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({"config": {"epochs": 2}, "rows": rows}))
    loaded = viz.load_ablation(path)
    assert [r.rate for r in loaded] == [0.0, 0.5, 0.9, 0.5, 0.9, 0.5, 0.9]  # the target rate
    fig = viz.plot_ablation(loaded)
    assert len(fig.axes) == 4
    sbu = {l.get_gid(): list(l.get_ydata()) for ax in fig.axes[:2] for l in ax.lines if l.get_gid()}
    fpha = {l.get_gid(): list(l.get_ydata()) for ax in fig.axes[2:] for l in ax.lines if l.get_gid()}
    assert sbu["effective:mp"] == [95.0, 70.0] and sbu["accuracy:mp-tc"] == [89.0, 85.0]
    assert sbu["baseline-accuracy:dense"] == [90.0, 90.0]
    assert fpha == {"effective:mp": [90.0, 50.0], "accuracy:mp": [60.0, 40.0]}
    only = viz.plot_ablation(loaded, dataset="synthetic-fpha")
    assert len(only.axes) == 2
    with pytest.raises(viz.BadPlotInput, match="no rows for dataset 'x'"):
        viz.plot_ablation(loaded, dataset="x")


@pytest.mark.parametrize("rows, message", [
    pytest.param({"results": []}, "expected a list", id="not-a-list"),
    pytest.param([], "no rows", id="empty"),
    pytest.param([{"rate": 0.5, "effective_pct": 9}], "method", id="no-method"),
    pytest.param([{"method": "a", "effective_pct": 9}], "rate", id="no-rate"),
    pytest.param([{"method": "a", "rate": 95, "effective_pct": 9}], "fractions", id="rate-in-percent"),
    pytest.param([{"method": "a", "rate": 0.5}], "effective_pct", id="no-effective"),
    pytest.param([{"method": "a", "rate": 0.5, "effective_pct": 120}], "outside", id="pct-above-100"),
    pytest.param([{"method": "a", "rate": "0.5", "effective_pct": 9}], "finite number", id="rate-string"),
    pytest.param([{"method": "a", "rate": 0.5, "effective_pct": float("nan")}], "finite", id="nan"),
    pytest.param([{"method": "a", "rate": 0.5, "effective_pct": 9, "kept": -1}], "kept", id="negative-kept"),
    pytest.param(["row"], "expected an object", id="row-not-object"),
])
def test_bad_ablation_rows(rows, message):
    with pytest.raises(viz.BadPlotInput, match=message):
        viz.ablation_rows(rows)


def test_bad_ablation_files(tmp_path):
    with pytest.raises(viz.BadPlotInput, match="no such file"):
        viz.load_ablation(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(viz.BadPlotInput, match="not valid JSON"):
        viz.load_ablation(bad)


# -- bad input and files ------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    pytest.param(lambda: viz.plot_mask(np.array([[0, 2]])), "binary", id="non-binary"),
    pytest.param(lambda: viz.plot_mask(np.ones(3)), "shape", id="1-d"),
    pytest.param(lambda: viz.plot_mask(np.ones((0, 3))), "empty", id="empty"),
    pytest.param(lambda: viz.plot_mask(np.ones((4, 5)), crop=(0, 5, 0, 5)), "does not fit", id="crop-rows"),
    pytest.param(lambda: viz.plot_mask(np.ones((4, 5)), crop=(2, 2, 0, 5)), "does not fit", id="crop-empty"),
    pytest.param(lambda: viz.plot_mask(np.ones((4, 5)), crop=(0, 1, 2)), "four integers", id="crop-3"),
    pytest.param(lambda: viz.MaskView(np.ones((2, 2)), dead=np.ones((2, 3))), "shape", id="dead-shape"),
    pytest.param(lambda: viz.MaskView(np.eye(2), dead=np.ones((2, 2))), "pruned", id="dead-not-kept"),
    pytest.param(lambda: viz.mask_view(np.ones((2, 3)), chain([np.ones((2, 3))]), "nope"), "no weight named",
                 id="unknown-layer"),
    pytest.param(lambda: viz.mask_view(np.ones((3, 3)), chain([np.ones((2, 3))]), "layer0"), "shape",
                 id="mask-shape"),
    pytest.param(lambda: viz.plot_mask_grid({}), "at least one", id="empty-grid"),
    pytest.param(lambda: viz.plot_mask_grid({"fine": np.ones((2, 2))}), "pairs", id="grid-key"),
    pytest.param(lambda: viz.figure_format("out.jpg"), "unknown image extension", id="jpg"),
    pytest.param(lambda: viz.figure_format("out"), "unknown image extension", id="no-extension"),
    pytest.param(lambda: viz.plot_receptive_sets(chain([np.ones((2, 3))]), "nope"), "no group", id="group"),
])
def test_bad_input_is_a_netgraph_error(call, message):
    from netgraph import NetgraphError

    with pytest.raises(viz.BadPlotInput, match=message) as info:
        call()
    assert isinstance(info.value, NetgraphError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
def test_save_figure_writes_valid_files_atomically(tmp_path, ext):
    fig = viz.plot_network(chain([np.array([[1, 0], [0, 0]]), np.array([[1, 1]])]))
    out = viz.save_figure(fig, tmp_path / f"net.{ext}")
    with open(out, "rb") as fh:
        data = fh.read()
    assert len(data) > 100
    if ext == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    elif ext == "pdf":
        assert data[:5] == b"%PDF-"
    else:
        assert ET.fromstring(data).tag.endswith("svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"net.{ext}"]  # no temp file left


def test_save_figure_failure_leaves_no_file(tmp_path):
    with pytest.raises(viz.BadPlotInput, match="does not exist"):
        viz.save_figure(viz.plot_mask(np.eye(3)), tmp_path / "missing" / "m.png")

    class Boom(Exception):
        pass

    fig = viz.plot_mask(np.eye(3))

    def explode(*args, **kwargs):
        raise Boom

    fig.savefig = explode
    with pytest.raises(Boom):
        viz.save_figure(fig, tmp_path / "m.png")
    assert list(tmp_path.iterdir()) == []


def test_public_surface_is_explicit():
    assert set(viz.__all__) <= set(dir(viz))
    for name in ("plot_mask", "plot_mask_grid", "plot_network", "plot_layer_bars", "plot_ablation"):
        assert callable(getattr(viz, name))


# -- seeds and spread, dead vs unused, readable figures (issue 14) --------------------------------

def seeded_rows(rng, seeds=3) -> list[dict]:
    """Rows in the shape `netgraph ablate` writes: several seeds per cell, a dense baseline."""
    rows = []
    for seed in range(seeds):
        rows.append({"dataset": "d", "method": "dense", "target_rate": 0.0, "achieved_rate": 0.0, "seed": seed,
                     "kept": 1000, "effective_pct": 100.0, "accuracy": float(90 + rng.normal()), "n_test": 57,
                     "classes": 8, "table": "baseline"})
        for method in ("mp", "mp-tc"):
            for rate in (0.5, 0.88, 0.9, 0.95, 0.99, 0.995):
                rows.append({"dataset": "d", "method": method, "target_rate": rate, "achieved_rate": rate,
                             "seed": seed, "kept": int(1000 * (1 - rate)),
                             "effective_pct": float(np.clip(80 + 10 * rng.normal(), 0, 100)),
                             "accuracy": float(np.clip(60 + 15 * rng.normal(), 0, 100)), "n_test": 57, "classes": 8,
                             "table": "tc"})
    return rows


def _errorbars(ax, gid: str) -> list[tuple[float, float]]:
    (col,) = [c for c in ax.collections if c.get_gid() == gid]
    return [(float(s[0][1]), float(s[1][1])) for s in col.get_segments()]


def test_ablation_with_seeds_draws_the_jsons_means_and_sds(tmp_path):
    rows = seeded_rows(np.random.default_rng(4))
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({"config": {"seeds": 3}, "rows": rows}))
    fig = viz.plot_ablation(viz.load_ablation(path))
    ax_eff, ax_acc = fig.axes[:2]
    for ax, key, short in ((ax_eff, "effective_pct", "effective"), (ax_acc, "accuracy", "accuracy")):
        for method in ("mp", "mp-tc"):
            rates = sorted({r["target_rate"] for r in rows if r["method"] == method})
            runs = [[r[key] for r in rows if r["method"] == method and r["target_rate"] == x] for x in rates]
            mean = [float(np.mean(v)) for v in runs]     # the oracle: numpy on the JSON's runs
            sd = [float(np.std(v, ddof=1)) for v in runs]
            (line,) = [l for l in ax.lines if l.get_gid() == f"{short}:{method}"]
            np.testing.assert_allclose(line.get_xdata(), rates)
            np.testing.assert_allclose(line.get_ydata(), mean)
            bars = _errorbars(ax, f"sd-{short}:{method}")
            np.testing.assert_allclose([lo for lo, _ in bars], np.subtract(mean, sd))
            np.testing.assert_allclose([hi for _, hi in bars], np.add(mean, sd))
        assert ax.get_ylim()[0] <= 0 and ax.get_ylim()[1] >= 100  # the full 0-100 % axis
    dense = [r["accuracy"] for r in rows if r["method"] == "dense"]
    (base,) = [l for l in ax_acc.lines if l.get_gid() == "baseline-accuracy:dense"]
    assert base.get_ydata()[0] == pytest.approx(np.mean(dense))
    (chance,) = [l for l in ax_acc.lines if l.get_gid() == "chance"]
    assert chance.get_ydata()[0] == pytest.approx(100 / 8)
    assert "test set 57 samples" in ax_acc.get_title() and "3 seeds" in ax_acc.get_title()
    summary = viz.ablation_summary(viz.load_ablation(path))
    assert {(e["method"], e["runs"]) for e in summary} == {("dense", 3), ("mp", 3), ("mp-tc", 3)}
    assert text_overlaps(fig) == []  # 88 % and 90 % ticks: one label is dropped, nothing collides


def text_overlaps(fig, *, slack: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts whose rendered bounding boxes overlap (by more than
    ``slack`` pixels each way), and texts that stick out of the figure (paired with "<edge>")."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    undrawn = set()  # tick labels outside the view interval exist as artists but are not drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for ticks in (axis.get_major_ticks(), axis.get_minor_ticks()):
                for tick in ticks:
                    loc = tick.get_loc()
                    inside = loc is not None and axis.get_transform().transform([loc])[0] is not None and \
                        lo - 1e-9 * max(1.0, abs(hi - lo)) <= loc <= hi + 1e-9 * max(1.0, abs(hi - lo))
                    if not inside or not ax.axison:
                        undrawn.update({id(tick.label1), id(tick.label2)})
    boxes = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip() or id(t) in undrawn:
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        boxes.append((t.get_text(), t.get_window_extent(renderer)))
    bad = []
    for k, (a, ba) in enumerate(boxes):
        if ba.x0 < page.x0 - slack or ba.x1 > page.x1 + slack or ba.y0 < page.y0 - slack or ba.y1 > page.y1 + slack:
            bad.append((a, "<edge>"))
        for b, bb in boxes[k + 1:]:
            w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if w > slack and h > slack:
                bad.append((a, b))
    return bad


def _hide_legends(fig) -> None:
    for leg in list(fig.legends) + [ax.get_legend() for ax in fig.axes]:
        if leg is not None:
            leg.set_visible(False)


def test_unused_units_are_not_drawn_as_dead():
    """A network with unused units (no kept weight) but no dead one: no pixel in the dead colour."""
    m1 = np.zeros((6, 5), bool)
    m1[[0, 2], 0] = m1[[0, 2], 3] = True         # hidden units 1, 3, 4, 5 keep nothing: unused
    m2 = np.zeros((3, 6), bool)
    m2[0, 0] = m2[1, 2] = m2[2, 2] = True
    graph = chain([m1, m2])
    report = audit(graph)
    assert report.summary.dead == 0 and report.summary.dead_units == 0 and report.summary.unused_units > 0
    figures = [viz.plot_network(graph), viz.plot_dead_units(graph), viz.plot_audit(report, graph),
               viz.plot_network_pair(graph, graph, labels=("a", "b")),
               viz.plot_input_states({"a": viz.input_states(graph)}, (5,))]
    for fig in figures:
        _hide_legends(fig)
        assert not (canvas(fig) == rgb8(DEAD)).all(axis=-1).any()


@settings(max_examples=15)
@given(chain_masks())
def test_input_image_is_s_a_row_criterion(masks):
    """The image of inputs that reach an output equals S_a (inputs × outputs) != 0 by row, and
    networkx's reachability of the unit graph."""
    import networkx as nx

    from netgraph import products

    graph = chain(masks)
    n_in = graph.groups[graph.sources[0]].width
    fig = viz.plot_input_states({"m": viz.input_states(graph)}, (n_in,))
    (im,) = [i for ax in fig.axes for i in ax.images if i.get_gid() == "inputs:m"]
    drawn = np.asarray(im.get_array()).ravel()
    sa = products(graph, "accessibility")[graph.sinks[0]].matrix.toarray() != 0   # (inputs, outputs)
    np.testing.assert_array_equal(drawn == 2, sa.any(axis=1))
    G = nx.DiGraph()
    for k, m in enumerate(masks):
        for j, i in zip(*np.nonzero(np.asarray(m))):
            G.add_edge((k, int(i)), (k + 1, int(j)))
    last = len(masks)
    reaches = [any(G.has_node((0, i)) and G.has_node((last, o)) and nx.has_path(G, (0, i), (last, o))
                   for o in range(np.asarray(masks[-1]).shape[0])) for i in range(n_in)]
    np.testing.assert_array_equal(drawn == 2, reaches)
    has_weight = np.asarray(masks[0]).any(axis=0)
    np.testing.assert_array_equal(drawn == 0, ~has_weight)  # unused: no kept weight leaves the input


def test_network_pair_highlights_what_differs():
    a = [np.ones((3, 4), bool), np.ones((2, 3), bool)]
    b = [a[0].copy(), a[1].copy()]
    b[0][1] = False                                   # unit 1 of the hidden layer keeps no input
    ga, gb = chain(a), chain(b)
    fig = viz.plot_network_pair(ga, gb, labels=("A", "B"))
    left, right = fig.axes

    def count(ax, gid):
        return sum(len(c.get_segments()) if hasattr(c, "get_segments") else len(c.get_offsets())
                   for c in ax.collections if c.get_gid() == gid)

    # A's effective pairs that B lacks: the 4 inputs of hidden unit 1 and its 2 outputs
    assert count(left, "edges:effective-only") == 6
    assert count(right, "edges:effective-only") == 0
    assert count(right, "edges:not_accessible") == 2      # in B, unit 1's kept outputs are dead
    assert count(left, "units:changed") == 1 and count(right, "units:changed") == 1
    with pytest.raises(viz.BadPlotInput, match="one architecture"):
        viz.plot_network_pair(ga, chain([np.ones((3, 5), bool), np.ones((2, 3), bool)]))


def test_layered_drawing_refuses_a_hairball():
    big = chain([np.ones((200, 300)), np.ones((10, 200))])
    with pytest.raises(viz.BadPlotInput, match="readable up to 160 units"):
        viz.plot_network(big)
    assert viz.plot_network(big, max_units=1000, max_edges=10**6) is not None


def test_big_sparse_mask_keeps_every_kept_weight_visible():
    """A 99.9 %-pruned mask larger than the panel: pooled cells, every kept weight in a dark cell."""
    rng = np.random.default_rng(5)
    mask = np.zeros((300, 3000), bool)
    kept = rng.choice(mask.size, 900, replace=False)
    mask.flat[kept] = True
    fig = viz.plot_mask(mask)
    im = fig.axes[0].images[0]
    img = np.asarray(im.get_array())
    h, w = img.shape[:2]
    assert w < 3000  # pooled
    fr, fc = -(-300 // h), -(-3000 // w)
    dark = (img == rgb8(KEPT)).all(axis=-1)
    rows, cols = np.nonzero(mask)
    assert dark[rows // fr, cols // fc].all()           # each kept weight's cell is dark
    assert dark.sum() <= len(rows)                      # and no cell is dark without one
    # a cell is at least MIN_CELL_PX pixels wide at the saving dpi
    from viz._style import MIN_CELL_PX, SAVE_DPI

    fig.canvas.draw()
    width_px = fig.axes[0].get_window_extent().width * SAVE_DPI / fig.dpi
    assert width_px / w >= MIN_CELL_PX - 0.5
    assert "1 cell = " in fig.axes[0].get_title()


def test_no_text_overlaps_in_the_library_figures():
    rng = np.random.default_rng(6)
    masks = [rng.random((12, 20)) < 0.2, rng.random((10, 12)) < 0.3, rng.random((4, 10)) < 0.4]
    graph = chain(masks)
    report = audit(graph)
    views = {b.name: viz.mask_view(m, graph, b.name) for b, m in zip(graph.weighted_blocks, masks)}
    figures = {"mask": viz.plot_mask(views[graph.weighted_blocks[0].name], show_constant=True),
               "layers": viz.plot_layer_masks(views, show_constant=True, title="masks"),
               "network": viz.plot_network(graph), "audit": viz.plot_audit(report, graph),
               "bars": viz.plot_layer_bars(report), "units": viz.plot_dead_units(graph),
               "receptive": viz.plot_receptive_sets(graph),
               "grid": viz.plot_mask_grid({("MP", r): views[graph.weighted_blocks[1].name] for r in (0.9, 0.99)})}
    for name, fig in figures.items():
        assert text_overlaps(fig) == [], name


def test_possible_skips_of_an_inferred_chain_are_their_own_faint_class():
    b = GraphBuilder()
    b.input("x", 3)
    b.weight("a.weight", "x", "a", np.eye(3, dtype=bool))
    b.weight("b.weight", "a", "b", np.eye(3, dtype=bool))
    b.identity("a", "b", name="a->b:possible-skip")
    b.weight("c.weight", "b", "c", np.ones((2, 3), bool))
    graph = b.build()
    classes = viz.edge_classes(graph)
    assert len(classes["possible_skip"]) == 3 and classes["structural"] == []
    fig = viz.plot_network(graph)
    assert len(_segments(fig, "possible_skip")) == 3
    assert any("possible skip" in t.get_text() for t in fig.legends[0].get_texts())
    small = [chain([np.ones((1, 1))]), chain([np.ones((3, 2)), np.ones((2, 3))])]
    for g in small:  # corner sizes: nothing overlaps, nothing sticks out of the figure
        assert text_overlaps(viz.plot_network(g)) == [] and text_overlaps(viz.plot_network_pair(g, g)) == []
