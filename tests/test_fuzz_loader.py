"""Corrupted checkpoints never crash the loader: any mutation of a valid file is either still
read (exit 0) or refused with one `netgraph: error:` line (exit 2), never a traceback."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

from netgraph.cli import main


def _valid_bytes(kind: str) -> bytes:
    g = torch.Generator().manual_seed(0)
    sd = {"fc1.weight_orig": torch.randn(6, 4, generator=g), "fc1.weight_mask": (torch.rand(6, 4, generator=g) > 0.5).float(),
          "fc1.bias": torch.randn(6, generator=g), "fc2.weight": torch.randn(3, 6, generator=g)}
    if kind == "safetensors":
        return save_safetensors(sd)
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


VALID = {kind: _valid_bytes(kind) for kind in ("torch", "safetensors")}


@st.composite
def corruptions(draw):
    kind = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[kind])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "zero-run"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "zero-run":
            data[pos:pos + draw(st.integers(1, 64))] = bytes(min(64, len(data) - pos))
    return kind, bytes(data)


@settings(max_examples=150)
@given(corruptions())
def test_corrupted_files_are_read_or_refused_in_one_line(tmp_path_factory, case):
    kind, data = case
    path = tmp_path_factory.mktemp("fuzz") / ("m.safetensors" if kind == "safetensors" else "m.pt")
    path.write_bytes(data)
    out, errs = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(errs):
        rc = main(["audit", str(path), "--format", "json"])
    err = errs.getvalue()
    assert rc in (0, 2)
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("netgraph: error: "), err


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_uncorrupted_files_are_read(tmp_path, kind):
    path = tmp_path / "m.bin"
    path.write_bytes(VALID[kind])
    assert main(["audit", str(path)]) == 0
