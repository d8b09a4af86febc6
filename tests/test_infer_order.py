"""Order inference at scale and with odd names (issue 10): iterative, near-linear, no sort errors.

Performance itself is measured in ``benchmarks/infer_order.py``; these tests check that the
large cases finish with the right answer (no RecursionError, no quadratic memory)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from netgraph import (
    ChainNotInferable,
    PrunableWeight,
    audit,
    checkpoint_from_state_dict,
    graph_from_checkpoint,
    reachability,
    unit_states,
)
from netgraph.cli import main
from netgraph.io._checkpoint import natural_key
from netgraph.io._infer import _segment_orders


def _chain_sd(n: int, width: int = 2) -> dict[str, torch.Tensor]:
    return {f"layers.{i}.weight": torch.ones(width, width) for i in range(n)}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_a_10000_layer_chain_audits_through_the_cli(tmp_path, capsys, fmt):
    sd = _chain_sd(10_000)
    sd["layers.9999.weight"] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # output unit 1 receives nothing
    path = tmp_path / f"deep.{fmt}"
    if fmt == "pt":
        torch.save(sd, path)
    else:
        save_file(sd, path)  # sorted keys: layers.10 before layers.2
    assert main(["audit", str(path), "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    names = [layer["name"] for layer in rep["layers"]]
    assert names == [f"layers.{i}.weight" for i in range(10_000)]
    # the last layer reads unit 0 only: in a plain chain the 2 weights into unit 1 of the layer
    # before would be dead, but with equal widths a skip could carry unit 1 to the output
    assert rep["summary"]["dead"] == 0
    assert rep["summary"]["kept"] == 4 * 9_999 + 1
    assert any(w.startswith("2 kept weight(s) would be dead in a plain chain") for w in rep["warnings"])


@pytest.mark.parametrize("n", [1_500, pytest.param(10_000, marks=pytest.mark.slow)])
def test_a_deep_chain_in_memory_all_algorithms(n):
    sd = _chain_sd(n)
    ck = checkpoint_from_state_dict(sd)
    for skips in ("plausible", "none"):
        g = graph_from_checkpoint(ck, skips=skips)
        r = reachability(g)
        states = unit_states(g, r)
        rep = audit(g, r)
        assert rep.summary.effective == rep.summary.kept == 4 * n
        assert all((v == 2).all() for v in states.values())
        assert len(g.weighted_blocks) == n


@pytest.mark.slow
def test_40000_small_weights_with_one_prefix():
    g = graph_from_checkpoint(checkpoint_from_state_dict(_chain_sd(40_000)))
    assert len(g.weighted_blocks) == 40_000


def test_40000_small_weights_each_its_own_prefix_are_refused_at_once():
    # no digits: every key is its own prefix; equal shapes can trade places -> ambiguous
    import itertools
    import string

    letters = itertools.product(string.ascii_lowercase, repeat=4)
    names = [f"{''.join(next(letters))}.weight" for _ in range(40_000)]
    sd = {k: torch.ones(2, 2) for k in names}
    with pytest.raises(ChainNotInferable, match="ambiguous"):
        graph_from_checkpoint(checkpoint_from_state_dict(sd))


def _stub(name, out, inp):
    shape = (out, inp)
    return PrunableWeight(name, np.broadcast_to(np.zeros((), bool), shape), np.broadcast_to(np.zeros(()), shape))


def test_the_prefix_search_is_iterative_and_finds_a_10000_deep_unique_order():
    # 10,000 segments (distinct prefixes) of widths i -> i+1, shuffled: one order, 10,000 deep
    n = 10_000
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    segs = [[_stub(f"s{k}", int(k) + 2, int(k) + 1)] for k in perm]
    order = _segment_orders(segs, "<test>")
    assert [int(perm[i]) for i in order] == list(range(n))


def test_the_prefix_search_refuses_two_orders_and_no_order():
    two = [[_stub("a", 4, 3)], [_stub("b", 4, 4)], [_stub("c", 3, 4)]]  # c a b, or a b ... a->c->a? no
    # a: 3->4, b: 4->4, c: 4->3 : orders a b c and c a b both chain
    with pytest.raises(ChainNotInferable, match="ambiguous"):
        _segment_orders(two, "<test>")
    none = [[_stub("a", 4, 3)], [_stub("b", 5, 2)]]
    with pytest.raises(ChainNotInferable, match="do not chain"):
        _segment_orders(none, "<test>")


@pytest.mark.parametrize("keys", [["fc¹.weight", "fc².weight"], ["fc٣.weight", "fc².weight"],
                                  ["layer.²", "layer.10"]])
def test_superscript_and_non_ascii_digits_sort_without_error(keys):
    assert sorted(keys, key=natural_key)  # no ValueError / TypeError
    assert all(isinstance(natural_key(k)[0], str) for k in keys)


def test_superscript_key_audits(tmp_path, capsys):
    sd = {"fc¹.weight": torch.ones(4, 3), "fc².weight": torch.ones(2, 4)}
    path = tmp_path / "sup.pt"
    torch.save(sd, path)
    assert main(["audit", str(path), "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in rep["layers"]] == ["fc¹.weight", "fc².weight"]
