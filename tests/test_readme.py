"""Every command in README.md runs, adapted to a temporary folder.

The commands are extracted from the README itself (``bash`` and ``console`` blocks, ``$``
lines), so a command added to the README is tested without touching this file.  They run in
README order as the console script ``netgraph`` (no ``PYTHONPATH``) in one temporary folder
that holds what the README assumes the reader has: ``model.pt`` (a pruned CNN in torch's
prune format), ``mymodels.py`` with ``make_cnn``, ``path/to/mymodels.py``, ``mydata.py`` and
``model.onnx``.  Adaptations, all here in ``adapt``: ``--epochs`` becomes 1 (the ablation: 2
epochs, its least, one rate, one seed), ``netgraph demo`` becomes ``--quick``, ``pytest`` only collects, and
the ``pip install`` lines are checked against what is installed instead of being run.  The
oracle per command: exit 0 (1 for ``--fail-on-dead`` on a file with dead weights), no
traceback, and the file the command names as output exists afterwards.

The ``python`` blocks run with a prelude that defines what the README leaves to the reader
(``model``, ``loader``, ``epochs``); a block whose body is a placeholder (``...``) is only
compiled.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TIMEOUT = 900

MYMODELS = textwrap.dedent('''
    import torch.nn as nn


    def make_cnn(num_classes=10, in_channels=3, width=8):
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
''')
MYDATA = textwrap.dedent('''
    import torch


    def load():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (64,), generator=g)
        return x[:48], y[:48], x[48:], y[48:]
''')


# -- extraction ---------------------------------------------------------------------------

def blocks(text: str):
    """(language, body) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def commands(text: str) -> list[str]:
    """Shell commands: every line of a ``bash`` block, every ``$`` line of a ``console`` block;
    ``&&`` chains split; comments removed."""
    out = []
    for lang, body in blocks(text):
        if lang not in ("bash", "console"):
            continue
        for line in body.splitlines():
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            words = shlex.split(line, comments=True)
            if not words:
                continue
            cmd = shlex.join(words)
            out += [c.strip() for c in cmd.split(" '&&' ")] if "'&&'" in cmd else [cmd]
    return out


def python_blocks(text: str) -> list[str]:
    return [body for lang, body in blocks(text) if lang == "python"]


COMMANDS = commands(README)
SLOW_TOOLS = ("train", "ablate", "demo")


def _outputs(argv) -> list[str]:
    out = []
    for flag in ("-o", "--out", "--output"):
        if flag in argv:
            out.append(argv[argv.index(flag) + 1])
    return out


def _is_slow(cmds: list[str]) -> list[bool]:
    """Training, the demo, the test suite and the benchmark are slow, and so is every
    command that reads what a slow command wrote."""
    slow, made = [], set()
    for c in cmds:
        argv = shlex.split(c)
        s = (argv[0] in ("pytest", "python", "torchrun") or
             (argv[0] == "netgraph" and len(argv) > 1 and argv[1] in SLOW_TOOLS) or
             any(tok.rstrip("/") in made or tok.split("/")[0] + "/" in made for tok in argv[1:]))
        if s:
            made.update(o.rstrip("/") for o in _outputs(argv))
            made.update(o for o in _outputs(argv) if o.endswith("/"))
        slow.append(s)
    return slow


SLOW = _is_slow(COMMANDS)
PARAMS = [pytest.param(i, c, marks=[pytest.mark.slow] if s else [], id=f"{i:02d}-{' '.join(shlex.split(c)[:3])}")
          for i, (c, s) in enumerate(zip(COMMANDS, SLOW))]


# -- the reader's folder --------------------------------------------------------------------

def _pruned_cnn() -> nn.Module:
    ns: dict = {}
    exec(compile(MYMODELS, "mymodels.py", "exec"), ns)
    torch.manual_seed(0)
    m = ns["make_cnn"](num_classes=10)
    prune.global_unstructured([(m[i], "weight") for i in (0, 3, 8)], pruning_method=prune.L1Unstructured,
                              amount=0.8)
    with torch.no_grad():
        m[3].weight_mask[2] = 0
        m[8].weight_mask[:, 5] = 0
    return m.eval()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    d = tmp_path_factory.mktemp("reader")
    (d / "mymodels.py").write_text(MYMODELS)
    (d / "path" / "to").mkdir(parents=True)
    (d / "path" / "to" / "mymodels.py").write_text(MYMODELS)
    (d / "mydata.py").write_text(MYDATA)
    m = _pruned_cnn()
    torch.save(m.state_dict(), d / "model.pt")
    try:
        import onnx  # noqa: F401

        import warnings

        for i in (0, 3, 8):
            prune.remove(m[i], "weight")
        with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation
            warnings.simplefilter("ignore")
            torch.onnx.export(m, torch.randn(1, 3, 32, 32), str(d / "model.onnx"), dynamo=False)
    except Exception:  # no onnx package: the ONNX lines are skipped with that reason
        pass
    return d


def _exe(name: str) -> str:
    path = shutil.which(name) or os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not installed")
    return path


def adapt(argv: list[str], workspace: Path) -> list[str] | None:
    """The README command as the test runs it; ``None`` when it is checked, not run."""
    argv = list(argv)
    if argv[0] == "pip":
        return None
    if "--epochs" in argv:
        argv[argv.index("--epochs") + 1] = "1"
    if argv[:2] == ["netgraph", "train"] and "--epochs" not in argv:
        argv += ["--epochs", "1"]
    if argv[:2] == ["netgraph", "train"] or argv[:1] == ["torchrun"]:
        argv += ["--no-progress"]
    if argv[:2] == ["netgraph", "ablate"]:
        argv += ["--epochs", "2", "--tc-rates", "0.9", "--ctf-rates", "0.9", "--seeds", "1", "--no-progress"]
    if argv[:2] == ["netgraph", "demo"]:
        argv += ["--quick"]
    if argv == ["pytest"]:
        argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", str(ROOT / "tests")]
    if argv[0] == "python":
        argv = [sys.executable, *[str(ROOT / a) if a.startswith("benchmarks/") else a for a in argv[1:]]]
    if argv[0] == "netgraph":
        argv[0] = _exe("netgraph")
    if argv[0] == "torchrun":
        argv[0] = _exe("torchrun")
    if "model.onnx" in argv and not (workspace / "model.onnx").exists():
        pytest.skip("the onnx package is not installed (pip install onnx)")
    if "model.onnx" in argv and "--input-shape" in argv:  # the reader's model.onnx is 32x32
        argv[argv.index("--input-shape") + 1] = "1,3,32,32"
    return argv


def _check_pip_line(argv: list[str]) -> None:
    """``pip install ...`` is not run; what it installs must be what is installed."""
    pkgs = [a for a in argv[2:] if not a.startswith("-") and not a.startswith("http")]
    for pkg in pkgs:
        if pkg in (".",) or pkg.startswith(".["):
            assert importlib.metadata.version("netgraph-topology") or True
            if pkg == ".[test]":
                for mod in ("pytest", "hypothesis"):
                    __import__(mod)
            continue
        name, _, version = pkg.partition("==")
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here (the README line installs it)")
        if version:
            assert have.split("+")[0] == version, f"{name} {have} installed, the README says {version}"
    if "--index-url" in argv and argv[argv.index("--index-url") + 1].endswith("/cpu"):
        if torch.version.cuda is not None:
            pytest.skip("this environment has a CUDA build of torch, not the CPU build the line installs")


def test_the_readme_opens_with_the_two_set_up_commands():
    lang, body = blocks(README)[0]
    lines = [ln for ln in body.splitlines() if ln.strip()]
    assert lang == "bash" and len(lines) == 2
    assert lines[0].startswith("pip install torch==") and lines[0].endswith("netgraph demo")
    assert lines[1].endswith("pytest")


@pytest.mark.parametrize("index, command", PARAMS)
def test_readme_command(workspace, index, command):
    argv = shlex.split(command)
    run = adapt(argv, workspace)
    if run is None:
        _check_pip_line(argv)
        return
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "1")
    cwd = ROOT if argv[0] in ("python",) else workspace
    proc = subprocess.run(run, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    ok = {0, 1} if "--fail-on-dead" in argv else {0}
    assert proc.returncode in ok, f"{command}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for out in _outputs(argv):
        assert (workspace / out).exists(), f"{command}: {out} was not written"


PRELUDE = textwrap.dedent('''
    import sys, torch
    sys.path.insert(0, ".")
    from mymodels import make_cnn
    model = make_cnn(num_classes=10)
    example_input = torch.randn(1, 3, 32, 32)
    epochs = 1
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))]
''')


@pytest.mark.parametrize("index", range(len(python_blocks(README))))
def test_readme_python_block(workspace, index):
    body = python_blocks(README)[index]
    tree = ast.parse(body)  # every block at least compiles
    placeholder = any(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                      and node.value.value is Ellipsis for node in ast.walk(tree))
    if placeholder:
        return  # a template with "..." for the reader's own code: compiled only
    code = PRELUDE + body.replace("(1, 3, 224, 224)", "(1, 3, 32, 32)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_readme_command_is_collected():
    """The extraction sees the commands a reader sees (a guard against a silent empty list)."""
    assert len(COMMANDS) >= 20
    assert any(c.startswith("netgraph audit model.pt --model mymodels:make_cnn") for c in COMMANDS)
    assert any(c.startswith("netgraph repair model.pt") for c in COMMANDS)
