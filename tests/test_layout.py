"""The architecture is visible in the imports: ``viz -> netgraph <- trainer``, and only the
composition root ``netgraph/cli/`` wires them together.  Checked from the source (``ast``), so a
lazy import inside a function cannot hide a wrong direction."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _engine_files():
    for path in sorted((ROOT / "netgraph").rglob("*.py")):
        if (ROOT / "netgraph" / "cli") in path.parents:
            continue
        yield path


@pytest.mark.parametrize("path", list(_engine_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_imports_neither_trainer_nor_viz(path):
    bad = _imported_roots(path) & {"trainer", "viz", "tests", "benchmarks"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; only netgraph/cli/ may"


@pytest.mark.parametrize("package", ["trainer", "viz", "benchmarks"])
def test_siblings_use_public_netgraph_names_and_no_test_code(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                assert parts[0] != "tests", f"{path.relative_to(ROOT)} imports test code ({node.module})"
                if parts[0] == "netgraph":
                    private = [p for p in parts[1:] if p.startswith("_")]
                    assert not private, f"{path.relative_to(ROOT)} imports private {node.module}"


def test_the_check_sees_a_lazy_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    import viz.x\n    from trainer import y\n")
    assert {"viz", "trainer"} <= _imported_roots(bad)


def test_the_cli_uses_public_names_of_trainer_and_viz():
    for path in sorted((ROOT / "netgraph" / "cli").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                if parts[0] in ("trainer", "viz"):
                    assert not [p for p in parts[1:] if p.startswith("_")], \
                        f"{path.relative_to(ROOT)} imports private {node.module}"
