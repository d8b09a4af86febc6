"""`netgraph demo --quick`: the main job, end to end, on built-in data."""

from __future__ import annotations

import json
import re

from netgraph.cli import main


def test_demo_quick_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--quick", "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'index.html'}" in printed
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 5
    for name in images:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    audits = {p.stem: json.loads(p.read_text()) for p in out.glob("audit_*.json")}
    assert set(audits) == {"audit_mp", "audit_mp-tc", "audit_mp_prune", "audit_mp_reconnect"}
    mp, tc = audits["audit_mp"]["summary"], audits["audit_mp-tc"]["summary"]
    assert tc["dead"] == 0 and tc["kept"] > 0          # TC training: consistent by construction
    assert mp["kept"] == tc["kept"]                    # same budget for both methods
    pruned = audits["audit_mp_prune"]["summary"]
    assert pruned["dead"] == pruned["constant"]        # only constant-fed weights remain dead
    assert pruned["effective"] == mp["effective"]
    recon = audits["audit_mp_reconnect"]["summary"]
    assert recon["dead"] == 0 and recon["kept"] <= mp["kept"]
    # the numbers in the page are the audits' numbers
    assert f"{mp['kept']:,}" in page and f"{mp['dead']:,}" in page
    for ckpt in ("gcn_sbu_mp.pt", "gcn_sbu_mp-tc.pt", "gcn_sbu_mp_prune.pt", "gcn_sbu_mp_reconnect.pt"):
        assert main(["audit", str(out / ckpt), "--format", "json"]) == 0
    assert not list(out.glob(".netgraph-*"))
