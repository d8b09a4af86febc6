"""The demo's ``index.html``: a template filled with numbers, nothing computed twice.

:func:`render` takes plain data (the sweep summaries, the audits as ``to_dict()``, the
figures with their captions) and returns the page.  Every number on the page comes from
that data; the captions are written by the caller from the data each figure draws.  The
page opens with the headline (the digits sweep and its figure, the Fig. 2 grid) and a
two-sentence summary (:func:`summary_sentences`), then the papers' setting (the GCN), then
details.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

__all__ = ["render", "summary_sentences", "cell", "pm"]

_STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;line-height:1.4}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
figure{margin:1.5em 0}figcaption{color:#333}.lead{font-size:1.12em}.muted{color:#666}"""


def pm(mean: float | None, sd: float | None, runs: int, fmt: str = ".1f", unit: str = " %") -> str:
    """``"93.6 ± 1.2 %"`` (or ``"93.6 %"`` for one run, ``"–"`` when not measured)."""
    if mean is None:
        return "–"
    return f"{mean:{fmt}} ± {sd:{fmt}}{unit}" if runs > 1 else f"{mean:{fmt}}{unit}"


def cell(summary: Sequence[Mapping[str, Any]], method: str, rate: float) -> Mapping[str, Any]:
    """The summary entry of (method, rate); ``KeyError`` when the sweep has none."""
    for e in summary:
        if e["method"] == method and abs(e["rate"] - rate) < 1e-12:
            return e
    raise KeyError((method, rate))


def summary_sentences(digits: Mapping[str, Any], gcn: Mapping[str, Any]) -> str:
    """The two sentences that open the report, every number read from the two sweeps' JSON
    (``{"summary": [...], "headline_rate": r, "dense": label, "methods": [a, b], ...}``)."""
    a, b = digits["methods"]
    r = digits["headline_rate"]
    s = digits["summary"]
    ma, mb, dense = cell(s, a, r), cell(s, b, r), cell(s, digits["dense"], 0.0)
    n = ma["runs"]
    first = (f"On scikit-learn's digits (real 8×8 images, {digits['n_test']} test images), at "
             f"{100 * r:g} % of weights pruned, plain magnitude pruning ({a}) leaves "
             f"{pm(ma['effective_mean'], ma['effective_sd'], n)} of its kept weights effective and reaches "
             f"{pm(ma['accuracy_mean'], ma['accuracy_sd'], n)} test accuracy, while {b} keeps "
             f"{pm(mb['effective_mean'], mb['effective_sd'], n)} effective and reaches "
             f"{pm(mb['accuracy_mean'], mb['accuracy_sd'], n)} (dense "
             f"{pm(dense['accuracy_mean'], dense['accuracy_sd'], dense['runs'])}, chance "
             f"{digits['chance']:.3g} %; mean ± sd over {n} seeds).")
    ga, gb = gcn["methods"]
    gr = gcn["headline_rate"]
    gs = gcn["summary"]
    ca, cb = cell(gs, ga, gr), cell(gs, gb, gr)
    k = ca["runs"]
    second = (f"In the papers' setting, the SBU-preset skeleton GCN on synthetic skeletons at {100 * gr:g} %, "
              f"{ga} leaves {pm(ca['effective_mean'], ca['effective_sd'], k)} effective at "
              f"{pm(ca['accuracy_mean'], ca['accuracy_sd'], k)} accuracy and {gb} "
              f"{pm(cb['effective_mean'], cb['effective_sd'], k)} at {pm(cb['accuracy_mean'], cb['accuracy_sd'], k)} "
              f"({gcn['n_test']} test sequences, one = {100 / gcn['n_test']:.2g} points; chance "
              f"{gcn['chance']:.3g} %; {k} seeds).")
    return first + " " + second


def _sweep_table(sweep: Mapping[str, Any]) -> str:
    rows = []
    for e in sweep["summary"]:
        n = e["runs"]
        rows.append(f"<tr><td>{html.escape(e['method'])}</td><td>{100 * e['rate']:g} %</td>"
                    f"<td>{e['kept_mean']:,.0f}</td><td>{e['effective_count_mean']:,.1f}</td>"
                    f"<td>{pm(e['effective_mean'], e['effective_sd'], n)}</td>"
                    f"<td>{pm(e['accuracy_mean'], e['accuracy_sd'], n)}</td><td>{n}</td></tr>")
    return ("<table><tr><th>method</th><th>rate</th><th>kept</th><th>effective (mean)</th>"
            "<th>effective / kept</th><th>test accuracy</th><th>seeds</th></tr>" + "".join(rows) + "</table>")


def _audit_table(audits: Sequence[tuple[str, Mapping[str, Any], float | None]]) -> str:
    rows = []
    for label, rep, acc in audits:
        s = rep["summary"]
        pct = 100.0 * s["effective"] / s["kept"] if s["kept"] else 0.0
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{s['kept']:,}</td><td>{s['effective']:,}</td>"
                    f"<td>{s['dead']:,}</td><td>{s['constant']:,}</td><td>{s['dead_units']:,}</td>"
                    f"<td>{s.get('unused_units', 0):,}</td><td>{pct:.1f} %</td>"
                    f"<td>{100 * s['sparsity']:.2f} %</td><td>{100 * s['effective_sparsity']:.2f} %</td>"
                    f"<td>{'–' if acc is None else f'{100 * acc:.1f} %'}</td></tr>")
    return ("<table><tr><th>model</th><th>kept</th><th>effective</th><th>dead</th><th>constant</th>"
            "<th>dead units</th><th>unused units</th><th>effective / kept</th><th>sparsity</th>"
            "<th>effective sparsity</th><th>test accuracy</th></tr>" + "".join(rows) + "</table>")


def _layer_table(rep: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(l['name'])}</code></td><td>{'×'.join(map(str, l['shape']))}</td>"
        f"<td>{l['kept']:,}</td><td>{l['effective']:,}</td><td>{l['dead']:,}</td><td>{l['constant']:,}</td>"
        f"<td>{l['dead_units_out']}</td><td>{l.get('unused_units_out', 0)}</td></tr>" for l in rep["layers"])
    return ("<table><tr><th>layer</th><th>shape</th><th>kept</th><th>effective</th><th>dead</th><th>constant</th>"
            f"<th>dead units out</th><th>unused units out</th></tr>{rows}</table>")


def _figure(name: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render(*, summary: str, seconds: float, machine: str, digits: Mapping[str, Any], gcn: Mapping[str, Any],
           figures: Mapping[str, tuple[str, str]], audits: Sequence[tuple[str, Mapping[str, Any], float | None]],
           layers: Sequence[tuple[str, Mapping[str, Any]]], files: Sequence[str], settings: str) -> str:
    """The page.  ``figures`` maps a slot (``headline``, ``grid``, ``gcn_*``, ``network``)
    to ``(file name, caption)``; ``audits`` are ``(label, audit dict, accuracy)`` rows."""
    fig = {k: _figure(*v) for k, v in figures.items()}
    rest = "".join(v for k, v in fig.items() if k not in ("headline", "grid", "network"))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>netgraph demo</title>
<style>{_STYLE}</style></head><body>
<h1>netgraph demo: dead weights in pruned networks, and what topological consistency buys</h1>
<p class="lead">{html.escape(summary)}</p>
<p class="muted">Whole demo: {seconds:.0f} s on {html.escape(machine)}. {html.escape(settings)}</p>
<h2>Headline: an MLP on real data (digits)</h2>
{fig.get('headline', '')}
{_sweep_table(digits)}
{fig.get('grid', '')}
<h2>The papers' setting: the skeleton GCN on synthetic SBU</h2>
<p>The SBU-preset GCN of the tc-pruning and coarse-to-fine papers, trained on the built-in synthetic
stand-in for SBU (no download); the numbers are from this stand-in, not from the real SBU.</p>
{_sweep_table(gcn)}
<h3>Audit of one seed's checkpoints, and the MP model repaired</h3>
{_audit_table(audits)}
<p><em>Effective</em>: kept weights on an input → output path. <em>Dead</em>: kept weights that no input
reaches or that reach no output. <em>Constant</em>: dead weights fed only by a bias (removing them changes
the outputs). <em>Dead unit</em>: kept weights touch it but it is on no input → output path; <em>unused
unit</em>: no kept weight touches it (pruned away, not a defect). Reproduce with
<code>netgraph audit FILE</code>.</p>
{rest}
<h2>Unit by unit: a tiny MLP, the two methods side by side</h2>
{fig.get('network', '')}
<h2>Per layer</h2>
{"".join(f"<h3>{html.escape(label)}</h3>{_layer_table(rep)}" for label, rep in layers)}
<h2>Files</h2><ul>{"".join(f'<li><a href="{html.escape(n)}">{html.escape(n)}</a></li>' for n in files)}</ul>
</body></html>"""
