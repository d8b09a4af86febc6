"""`netgraph demo --quick`: the main job, end to end, on built-in data.

The report's numbers are checked against independent re-computations: the audit of every
checkpoint the demo wrote (read back from its file by ``netgraph audit``), numpy's mean and
sample sd of the per-seed rows, and ``S_a`` from :func:`netgraph.products` for the 8×8 image.
"""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest

from netgraph.cli import main
from tests.test_viz import text_overlaps

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Run the quick demo once; keep every figure it saved (drawn data, not only PNGs)."""
    import viz

    out = tmp_path_factory.mktemp("demo") / "report"
    figures = {}
    original = viz.save_figure
    mp = pytest.MonkeyPatch()

    def keep(fig, path, **kw):
        figures[str(path).rsplit("/", 1)[-1]] = fig
        return original(fig, path, **kw)

    mp.setattr(viz, "save_figure", keep)
    try:
        code = main(["demo", "--quick", "--out", str(out), "--seed", "1", "--jobs", "1", "--epochs", "4"])
    finally:
        mp.undo()
    assert code == 0
    return out, figures


def _audit_json(path, capsys) -> dict:
    capsys.readouterr()
    assert main(["audit", str(path), "--format", "json"]) in (0, 1)
    return json.loads(capsys.readouterr().out)


def test_report_opens_with_the_headline_and_every_image_is_there(demo):
    out, _ = demo
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert images[:2] == ["headline.png", "mask_grid.png"]  # the headline first, then the Fig. 2 grid
    assert len(images) >= 7
    for name in images:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert page.index("Headline") < page.index("papers' setting") < page.index("Per layer")
    assert not list(out.parent.glob(".netgraph-*"))  # built in a temporary folder, renamed on success
    timing = json.loads((out / "timing.json").read_text())
    assert f"Whole demo: {timing['seconds']:.0f} s" in page or "Whole demo:" in page


def test_sweep_numbers_are_the_audits_of_the_checkpoints_it_wrote(demo, capsys):
    out, _ = demo
    for sweep in ("digits", "gcn"):
        data = json.loads((out / f"sweep_{sweep}.json").read_text())
        assert len({r["seed"] for r in data["rows"]}) == 2
        for row in data["rows"]:
            s = _audit_json(out / row["checkpoint"], capsys)["summary"]
            assert (row["kept"], row["effective"], row["dead"]) == (s["kept"], s["effective"], s["dead"])
            assert row["effective_pct"] == pytest.approx(100.0 * s["effective"] / s["kept"])
        # the summary is numpy's mean and sample sd of the rows
        for e in data["summary"]:
            runs = [r for r in data["rows"] if r["method"] == e["method"] and r["rate"] == e["rate"]]
            for key, field in (("effective", "effective_pct"), ("accuracy", "accuracy")):
                vals = [r[field] for r in runs]
                assert e[f"{key}_mean"] == pytest.approx(np.mean(vals))
                assert e[f"{key}_sd"] == pytest.approx(np.std(vals, ddof=1))


def test_headline_sentences_and_tables_carry_the_jsons_numbers(demo):
    out, _ = demo
    page = html.unescape((out / "index.html").read_text())
    d = json.loads((out / "sweep_digits.json").read_text())
    rate = d["headline_rate"]
    for method in d["methods"]:
        runs = [r for r in d["rows"] if r["method"] == method and r["rate"] == rate]
        acc = [r["accuracy"] for r in runs]
        eff = [r["effective_pct"] for r in runs]
        assert f"{np.mean(acc):.1f} ± {np.std(acc, ddof=1):.1f} %" in page
        assert f"{np.mean(eff):.1f} ± {np.std(eff, ddof=1):.1f} %" in page
    lead = re.search(r'<p class="lead">(.*?)</p>', page, re.S).group(1)
    assert lead.count(". ") >= 1 and f"{100 * rate:g} %" in lead and "digits" in lead and "GCN" in lead
    for e in d["summary"]:
        assert f"{e['kept_mean']:,.0f}" in page


def test_the_8x8_image_is_s_a_of_the_checkpoint(demo):
    from netgraph import graph_from_checkpoint, load_checkpoint, products

    out, figures = demo
    d = json.loads((out / "sweep_digits.json").read_text())
    fig = figures["headline.png"]
    images = {im.get_gid(): np.asarray(im.get_array()) for ax in fig.axes for im in ax.images}
    seed = min(r["seed"] for r in d["rows"])
    for method in d["methods"]:
        (row,) = [r for r in d["rows"] if r["method"] == method and r["rate"] == d["headline_rate"]
                  and r["seed"] == seed]
        ckpt = load_checkpoint(str(out / row["checkpoint"]))
        graph = graph_from_checkpoint(ckpt)
        sa = products(graph, "accessibility")[graph.sinks[0]].matrix.toarray() != 0  # (64 inputs, 10 outputs)
        drawn = images[f"inputs:{method}"]
        assert drawn.shape == (8, 8)
        np.testing.assert_array_equal(drawn.ravel() == 2, sa.any(axis=1))
        first = ckpt.prunable()["layers.0.weight"].mask  # (128, 64)
        np.testing.assert_array_equal(drawn.ravel() == 0, ~first.any(axis=0))  # unused: no kept weight out


def test_no_text_overlaps_in_the_demos_figures(demo):
    _, figures = demo
    assert len(figures) >= 7
    for name, fig in figures.items():
        assert text_overlaps(fig) == [], name


def test_gcn_audits_and_repairs(demo):
    out, _ = demo
    audits = {p.stem: json.loads(p.read_text()) for p in out.glob("audit_*.json")}
    assert set(audits) == {"audit_gcn_mp", "audit_gcn_mp-tc", "audit_gcn_mp_prune", "audit_gcn_mp_reconnect"}
    mp, tc = audits["audit_gcn_mp"]["summary"], audits["audit_gcn_mp-tc"]["summary"]
    assert tc["dead"] == 0 and tc["kept"] > 0          # TC training: consistent by construction
    assert mp["kept"] == tc["kept"]                    # same budget for both methods
    pruned = audits["audit_gcn_mp_prune"]["summary"]
    assert pruned["dead"] == pruned["constant"]        # only constant-fed weights remain dead
    assert pruned["effective"] == mp["effective"]
    recon = audits["audit_gcn_mp_reconnect"]["summary"]
    assert recon["dead"] == 0 and recon["kept"] <= mp["kept"]
    page = (out / "index.html").read_text()
    assert f"{mp['kept']:,}" in page and f"{mp['dead']:,}" in page
    # the prune caption states what its figure shows, computed from the audit
    if pruned["dead"]:
        assert f"{pruned['dead']:,} dead weights remain, {pruned['constant']:,} of them constant" in page


def test_existing_report_folder_is_refused_without_force(demo, capsys):
    out, _ = demo
    before = sorted(p.name for p in out.iterdir())
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_captions_state_what_their_figures_draw(demo):
    """The network caption's unit counts are the drawn dead / unused units of each panel."""
    out, figures = demo
    page = html.unescape((out / "index.html").read_text())
    fig = figures["network_pair.png"]
    counts = []
    for ax in fig.axes:
        n = {gid: sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == gid)
             for gid in ("units:dead", "units:unused")}
        counts.append((n["units:dead"], n["units:unused"]))
    (mp_dead, mp_unused), (tc_dead, tc_unused) = counts
    assert f"{mp_dead} dead and {mp_unused} unused units; MP + TC" in page
    assert f"{tc_dead} dead and {tc_unused} unused units (inputs included)" in page
    images = {im.get_gid(): np.asarray(im.get_array()) for ax in figures["headline.png"].axes for im in ax.images}
    for method in ("MP", "MP + TC"):
        assert f"{method}: {int((images[f'inputs:{method}'] == 2).sum())} of 64 still reach an output" in page
