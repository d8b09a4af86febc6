"""The streaming audit (issue 12): the same report, the same refusals, in constant memory.

The oracle is the in-memory path, ``audit(graph_from_checkpoint(load_checkpoint(p)))``
(pair arrays, tested against networkx and dense products elsewhere); the stream shares
none of its kernels.  Chunk sizes are drawn so that chunks split rows, and even kernel
taps, anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netgraph import audit, graph_from_checkpoint, graph_to_spec, load_checkpoint, save_checkpoint
from netgraph.errors import NetgraphError
from netgraph.io import _infer
from netgraph.io._stream import audit_arrays, audit_path

from .strategies import CONSTANT_FED, EMPTY_LAYER, SKIP_AROUND_DEAD, WIDTH_ONE, layered_nets, pruned_models

if not hasattr(_infer, "revived_warning"):  # requested from _infer's owner (notes/perf-api.md); the
    # comparison with the in-memory report below checks this text against theirs
    _infer.revived_warning = lambda extra: (
        f"{extra:,} kept weight(s) would be dead in a plain chain but an identity skip between "
        "equal-width layers could keep them alive; they are counted as effective (an upper bound)")

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CHUNKS = st.sampled_from([1, 2, 3, 4, 5, 7, 12, 13, 24, 40, 100, 1 << 20])


def _outcome(fn):
    """A report's dict, or the error a bad file gets (type and message)."""
    try:
        return fn().to_dict()
    except NetgraphError as exc:
        return (type(exc).__name__, str(exc))


def _in_memory(p):
    return _outcome(lambda: audit(graph_from_checkpoint(load_checkpoint(p)), source=str(p)))


def _streamed(p, chunk):
    def go():
        res = audit_path(p, chunk_bytes=chunk)
        assert res.fallback is None, res.fallback
        return res.report
    return _outcome(go)


def _write(tmp_path, sd, fmt, meta=None, dtype=torch.float32):
    p = tmp_path / ("m.safetensors" if fmt == "safetensors" else "m.pt")
    if p.exists():
        p.unlink()
    tensors = {k: (torch.from_numpy(np.ascontiguousarray(v)).to(dtype) if v.dtype != bool else torch.from_numpy(v))
               for k, v in sd.items()}
    if fmt == "safetensors":
        import json

        from safetensors.torch import save_file

        save_file(tensors, str(p), metadata={"netgraph": json.dumps(meta)} if meta else None)
    else:
        torch.save({"state_dict": tensors, "netgraph": meta} if meta else tensors, p)
    return p


@st.composite
def chain_state_dicts(draw):
    """An MLP / conv chain as a state_dict: prune format or plain zeros, biases, BatchNorm."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 4))
    conv = draw(st.integers(0, n))  # the first `conv` layers are convs, then a flatten
    k = draw(st.sampled_from([(1,), (2,), (1, 1), (2, 3), (3, 3)]))
    widths = [draw(st.integers(1, 6)) for _ in range(n + 1)]
    density = draw(st.sampled_from([0.0, 0.1, 0.3, 0.7, 1.0]))
    prune = draw(st.booleans())
    sd = {}
    for i in range(n):
        shape = (widths[i + 1], widths[i]) + (k if i < conv else ())
        if i == conv and conv > 0:  # linear after the convs: a flatten by factor 2
            shape = (widths[i + 1], widths[i] * 2)
        keep = rng.random(shape) < density
        w = rng.normal(size=shape).astype(np.float32)
        if prune:
            sd[f"l{i}.weight_orig"] = w
            sd[f"l{i}.weight_mask"] = keep.astype(np.float32)
        else:
            sd[f"l{i}.weight"] = np.where(keep, w + np.sign(w) + 0.5, 0).astype(np.float32)
        if draw(st.booleans()):
            sd[f"l{i}.bias"] = (rng.random(shape[0]) < 0.5).astype(np.float32)
        if i < conv and draw(st.integers(0, 2)) == 0:
            c = shape[0]
            sd[f"bn{i}.weight"] = np.ones(c, np.float32)
            sd[f"bn{i}.bias"] = (rng.random(c) < 0.5).astype(np.float32)
            sd[f"bn{i}.running_mean"] = np.zeros(c, np.float32)
            sd[f"bn{i}.running_var"] = np.ones(c, np.float32)
    return sd


@SETTINGS
@given(sd=chain_state_dicts(), fmt=st.sampled_from(["torch", "safetensors"]), chunk=CHUNKS,
       dtype=st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16]))
def test_stream_equals_in_memory_on_chains(tmp_path, sd, fmt, chunk, dtype):
    p = _write(tmp_path, sd, fmt, dtype=dtype)
    assert _streamed(p, chunk) == _in_memory(p)


def _net_state_dict(net, rng, prune: bool) -> dict:
    sd = {}
    for _, name, _, _, mask, _ in net.weight_ops:
        w = rng.normal(size=mask.shape).astype(np.float32)
        if prune:
            sd[name + "_orig"] = w
            sd[name + "_mask"] = mask.astype(np.float32)
        else:
            sd[name] = np.where(mask, w + np.sign(w) + 0.5, 0).astype(np.float32)
    return sd


@SETTINGS
@given(net=layered_nets(), fmt=st.sampled_from(["torch", "safetensors"]), chunk=CHUNKS,
       prune=st.booleans(), seed=st.integers(0, 2**32 - 1))
@example(net=EMPTY_LAYER, fmt="torch", chunk=1, prune=True, seed=0)
@example(net=WIDTH_ONE, fmt="safetensors", chunk=3, prune=False, seed=0)
@example(net=SKIP_AROUND_DEAD, fmt="torch", chunk=2, prune=False, seed=0)
@example(net=CONSTANT_FED, fmt="safetensors", chunk=5, prune=True, seed=0)
def test_stream_equals_in_memory_on_stored_topologies(tmp_path, net, fmt, chunk, prune, seed):
    """Random layered DAGs (skips, flatten expansions, grouped convs, all-to-all blocks,
    constant seeds) stored with their topology spec, as the trainer and compact write them."""
    sd = _net_state_dict(net, np.random.default_rng(seed), prune)
    meta = {"topology": graph_to_spec(net.build())}
    p = _write(tmp_path, sd, fmt, meta=meta)
    assert _streamed(p, chunk) == _in_memory(p)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=pruned_models(), fmt=st.sampled_from(["torch", "safetensors"]), chunk=CHUNKS)
def test_stream_equals_in_memory_on_model_zoo_state_dicts(tmp_path, case, fmt, chunk):
    """torch modules (convs, BN, residuals, concatenation, grouped convs) saved without their
    code: the same report, or the same refusal when no chain can be inferred."""
    model, _ = case
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    p = _write(tmp_path, sd, fmt)
    assert _streamed(p, chunk) == _in_memory(p)


def test_arrays_path_equals_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    sd = {"a.weight": (rng.random((7, 5)) < 0.3).astype(np.float32), "a.bias": np.ones(7, np.float32),
          "b.weight_orig": rng.normal(size=(3, 7)).astype(np.float32),
          "b.weight_mask": (rng.random((3, 7)) < 0.4).astype(np.float32)}
    p = _write(tmp_path, sd, "torch")
    ck = load_checkpoint(p)
    assert audit_arrays(ck, source=str(p), chunk_bytes=8).to_dict() == _in_memory(p)


def _bad_cases():
    from . import test_bad_input

    return [c for c in test_bad_input.CASES if c[0] not in ("directory",)]


@pytest.mark.parametrize("name, make, expected", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_files_get_the_same_refusal(tmp_path, name, make, expected):
    p = tmp_path / "model.pt"
    make(p)
    want = _in_memory(p)
    assert isinstance(want, tuple), "the in-memory path accepted a file of the bad-input table"
    got = _outcome(lambda: audit_path(p, chunk_bytes=4).report)
    assert got == want


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
@pytest.mark.parametrize("where", ["mask", "orig", "bias", "plain"])
def test_value_errors_are_those_of_the_full_read_in_file_order(tmp_path, fmt, where):
    """A NaN in the last chunk of one tensor and a bad mask value in another: the message is
    the one the in-memory loader gives (file order, whole-tensor NaN/Inf and bad values)."""
    rng = np.random.default_rng(0)
    sd = {"a.weight_orig": rng.normal(size=(6, 4)).astype(np.float32),
          "a.weight_mask": (rng.random((6, 4)) < 0.5).astype(np.float32),
          "a.bias": np.ones(6, np.float32),
          "b.weight": rng.normal(size=(2, 6)).astype(np.float32)}
    if where == "mask":
        sd["a.weight_mask"][5, 3] = 0.25
        sd["a.weight_mask"][0, 0] = 3.0
    elif where == "orig":
        sd["a.weight_orig"][5, 3] = np.inf
        sd["a.weight_orig"][0, 1] = np.nan
    elif where == "bias":
        sd["a.bias"][2] = np.nan
    else:
        sd["b.weight"][1, 5] = -np.inf
        sd["a.weight_mask"][1, 1] = 7.0
    p = _write(tmp_path, sd, fmt)
    want = _in_memory(p)
    assert isinstance(want, tuple)
    for chunk in (4, 12, 1 << 20):
        assert _streamed(p, chunk) == want


def test_stream_does_not_import_torch_for_safetensors(tmp_path):
    """bfloat16 included: it is widened without torch."""
    rng = np.random.default_rng(0)
    sd = {"a.weight": rng.normal(size=(5, 4)).astype(np.float32), "b.weight": rng.normal(size=(2, 5)).astype(np.float32)}
    p = _write(tmp_path, sd, "safetensors", dtype=torch.bfloat16)
    code = textwrap.dedent(f"""
        import sys
        from netgraph.cli import main
        rc = main(["audit", {str(p)!r}, "--format", "json"])
        print("TORCH" if "torch" in sys.modules else "NO-TORCH", rc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH 0"


def _peak_rss_kib(code: str) -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report the
    # peak of the (large) test process that forked it.
    wrapped = code + textwrap.dedent("""
        peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
        print("PEAK", int(peak.split()[1]))
    """)
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split("PEAK")[-1].split()[0])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("fmt", ["safetensors", pytest.param("torch", marks=pytest.mark.slow)])
def test_peak_memory_is_one_tensor_not_the_file(tmp_path, fmt):
    """A ~320 MB checkpoint whose largest tensor is 64 MB: the audit child's peak RSS stays
    within 1.2 x the largest tensor above the interpreter's baseline (same imports)."""
    rng = np.random.default_rng(0)
    n, layers = 4096, 5
    sd = {}
    for i in range(layers):
        w = rng.random((n, n), dtype=np.float32)
        w[w < 0.9] = 0  # 90 % pruned, plain format
        sd[f"l{i}.weight"] = w
    largest = n * n * 4
    p = tmp_path / ("big.safetensors" if fmt == "safetensors" else "big.pt")
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file(sd, str(p))
    else:
        torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, p)
    del sd, w
    assert os.path.getsize(p) > layers * largest
    pre = "import torch\n" if fmt == "torch" else ""
    base = _peak_rss_kib(pre + "import netgraph.io._stream, netgraph.cli.audit, numpy, json")
    peak = _peak_rss_kib(pre + textwrap.dedent(f"""
        from netgraph.io._stream import audit_path
        r = audit_path({str(p)!r})
        assert r.fallback is None, r.fallback
        assert r.report.summary.weights == {layers * n * n}
    """))
    print(f"peak {peak} KiB, baseline {base} KiB, largest tensor {largest // 1024} KiB")
    assert base > 0 and (peak - base) * 1024 <= 1.2 * largest, (peak, base)


def _hostile_cases():
    from . import test_hostile

    return test_hostile.CASES


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns while the table builds sparse/quantized files
@pytest.mark.parametrize("name, make, expected", _hostile_cases(), ids=[c[0] for c in _hostile_cases()])
def test_hostile_files_get_the_same_refusal(tmp_path, name, make, expected):
    """The hardening table (built byte by byte): the stream refuses each file exactly as the
    strict in-memory loader does (same error class, same message)."""
    p = make(tmp_path)
    want = _in_memory(p)
    got = _outcome(lambda: audit_path(p, chunk_bytes=4).report)
    assert got == want


@SETTINGS
@given(sd=chain_state_dicts(), fmt=st.just("safetensors"), chunk=CHUNKS, cut=st.integers(0, 100))
def test_sharded_checkpoint_equals_the_single_file(tmp_path, sd, fmt, chunk, cut):
    """A state_dict split over shards with a Hugging Face-style index audits like one file."""
    import json

    keys = list(sd)
    k = cut % (len(keys) + 1)
    parts = [dict((key, sd[key]) for key in keys[:k]), dict((key, sd[key]) for key in keys[k:])]
    parts = [p for p in parts if p]
    folder = tmp_path / f"shards-{fmt}-{k}"
    folder.mkdir(exist_ok=True)
    wmap = {}
    for i, part in enumerate(parts):
        name = f"model-{i + 1:05d}-of-{len(parts):05d}" + (".safetensors" if fmt == "safetensors" else ".bin")
        sub = _write(folder, part, fmt)
        os.replace(sub, folder / name)
        wmap.update({key: name for key in part})
    index = folder / "model.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": sum(v.nbytes for v in sd.values())},
                                 "weight_map": wmap}))
    whole = _write(tmp_path, sd, fmt)
    want = _in_memory(whole)
    if isinstance(want, dict):
        want["source"] = str(index)
    else:
        want = (want[0], want[1].replace(str(whole), str(index)))
    assert _streamed(index, chunk) == want


def test_a_shard_index_that_lies_is_refused(tmp_path):
    """The same refusals as the in-memory sharded reader (netgraph.io._formats)."""
    import json

    sd = {"a.weight": np.ones((3, 2), np.float32), "b.weight": np.ones((1, 3), np.float32)}
    p = _write(tmp_path, sd, "safetensors")
    for i, wmap in enumerate(({"a.weight": p.name},
                              {"a.weight": p.name, "b.weight": p.name, "c.weight": p.name},
                              {"a.weight": "../" + p.name, "b.weight": p.name},
                              {"a.weight": "gone.safetensors", "b.weight": p.name})):
        index = tmp_path / f"x{i}.index.json"
        index.write_text(json.dumps({"weight_map": wmap, "metadata": {"total_size": 1}}))
        want = _in_memory(index)
        assert isinstance(want, tuple)
        assert _outcome(lambda: audit_path(index).report) == want


@settings(max_examples=25, deadline=None)
@given(masks=st.lists(st.integers(1, 5), min_size=2, max_size=5).flatmap(
    lambda w: st.tuples(*[st.integers(0, 2**32 - 1).map(
        lambda s, a=a, b=b: np.random.default_rng(s).random((b, a)) < 0.4) for a, b in zip(w[:-1], w[1:])])))
def test_the_benchmark_networkx_baseline_counts_what_netgraph_counts(masks):
    """`netgraph bench` times networkx against netgraph; both must compute the same audit."""
    from netgraph import chain
    from netgraph.cli._bench import networkx_effective

    assert networkx_effective(list(masks)) == audit(chain(list(masks))).summary.effective
