"""Other tools' layouts, each built as that tool documents it, audit exactly as the same masks in
torch's prune format (the oracle: ``torch.nn.utils.prune.custom_from_mask`` on the same model).

* Hugging Face sharded safetensors: ``model-0000K-of-0000N.safetensors`` + ``model.safetensors.index.json``
  (``{"metadata": {"total_size": bytes}, "weight_map": {tensor: shard}}``);
* open_lth: ``<run>/level_L/main/model_ep<E>_it<I>.pth`` (the model's state_dict, pruned weights
  zeroed by ``PrunedModel._apply_mask``) with ``mask.pth`` (``{param: int 0/1}``, ``Mask.save``);
* NNI: the mask dict ``{module: {"weight": mask, "bias": mask}}`` that pruners return from
  ``compress()`` and ``export_model(model_path, mask_path)`` saves beside the state_dict.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as prune
from safetensors.torch import save_file

from netgraph import audit, graph_from_checkpoint, load_checkpoint
from netgraph.cli import main
from netgraph.errors import BadCheckpoint, UnsafeCheckpoint
from netgraph.io._formats import load_with_masks


def _model_and_masks(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(seed)
    masks = {f"{i}.weight": (torch.rand(m[i].weight.shape, generator=g) > 0.7).float() for i in (0, 2, 4)}
    masks["2.weight"][5, :] = 0  # unit 5 of layer 2 reads nothing: its outgoing weights are dead
    return m, masks


def _oracle(m, masks, tmp_path):
    """The audit of the same masks written by torch's own prune API."""
    m2 = nn.Sequential(*[type(l)(l.in_features, l.out_features) if isinstance(l, nn.Linear) else l for l in m])
    m2.load_state_dict(m.state_dict())
    for name, mask in masks.items():
        prune.custom_from_mask(m2[int(name.split(".")[0])], "weight", mask)
    p = tmp_path / "oracle.pt"
    torch.save(m2.state_dict(), p)
    return _audit(p)


def _audit(path):
    d = audit(graph_from_checkpoint(load_checkpoint(path))).to_dict()
    d.pop("source")
    return d


# -- sharded safetensors --------------------------------------------------------------------

def _shard(sd, folder, n_shards=2, name="model"):
    keys = list(sd)
    parts = [keys[i::n_shards] for i in range(n_shards)]
    wmap, total = {}, 0
    for k, part in enumerate(parts, 1):
        fname = f"{name}-{k:05d}-of-{n_shards:05d}.safetensors"
        save_file({key: sd[key].contiguous() for key in part}, os.path.join(folder, fname), metadata={"format": "pt"})
        for key in part:
            wmap[key] = fname
            total += sd[key].numel() * sd[key].element_size()
    index = os.path.join(folder, f"{name}.safetensors.index.json")
    with open(index, "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, fh)
    return index


def test_sharded_safetensors_audit_like_one_file(tmp_path):
    m, masks = _model_and_masks()
    sd = {k: (v * masks[k] if k in masks else v).detach() for k, v in m.state_dict().items()}
    index = _shard(sd, tmp_path, 3)
    got = _audit(index)
    assert got == _oracle(m, masks, tmp_path)
    kept = sum(int((sd[k] != 0).sum()) for k in masks)
    assert got["summary"]["kept"] == kept
    ck = load_checkpoint(index)
    for k, v in sd.items():
        np.testing.assert_array_equal(ck.tensors[k], v.numpy())


def test_sharded_safetensors_repair_writes_one_file(tmp_path):
    m, masks = _model_and_masks(1)
    sd = {k: (v * masks[k] if k in masks else v).detach() for k, v in m.state_dict().items()}
    index = _shard(sd, tmp_path)
    out = tmp_path / "fixed.safetensors"
    assert main(["repair", index, "-o", str(out)]) == 0
    rep = audit(graph_from_checkpoint(load_checkpoint(out)))
    assert rep.summary.dead == rep.summary.constant


@pytest.mark.parametrize("lie, expected", [
    ("traversal", "plain file names"),
    ("absolute", "plain file names"),
    ("extra-tensor", "maps elsewhere"),
    ("missing-tensor", "lacks"),
    ("missing-shard", "is missing"),
    ("total-size", "total_size"),
    ("not-json", "not JSON"),
    ("no-map", "weight_map"),
])
def test_sharded_index_that_lies_is_refused(tmp_path, lie, expected):
    m, masks = _model_and_masks()
    sd = {k: v.detach() for k, v in m.state_dict().items()}
    index = _shard(sd, tmp_path)
    with open(index) as fh:
        doc = json.load(fh)
    first = next(iter(doc["weight_map"]))
    if lie == "traversal":
        doc["weight_map"][first] = "../" + doc["weight_map"][first]
    elif lie == "absolute":
        doc["weight_map"][first] = str(tmp_path / doc["weight_map"][first])
    elif lie == "extra-tensor":
        del doc["weight_map"][first]
    elif lie == "missing-tensor":
        doc["weight_map"]["ghost.weight"] = doc["weight_map"][first]
    elif lie == "missing-shard":
        doc["weight_map"][first] = "model-00009-of-00009.safetensors"
    elif lie == "total-size":
        doc["metadata"]["total_size"] += 4
    elif lie == "no-map":
        doc = {"metadata": {}}
    text = "{not json" if lie == "not-json" else json.dumps(doc)
    with open(index, "w") as fh:
        fh.write(text)
    with pytest.raises((BadCheckpoint, UnsafeCheckpoint), match=expected):
        load_checkpoint(index)
    assert main(["repair", index, "-o", str(tmp_path / "o.safetensors")]) == 2
    assert not (tmp_path / "o.safetensors").exists()


# -- open_lth ---------------------------------------------------------------------------------

def _open_lth_level(tmp_path, m, masks):
    level = tmp_path / "replicate_1" / "level_2" / "main"
    level.mkdir(parents=True)
    sd = m.state_dict()
    with torch.no_grad():  # PrunedModel._apply_mask: the stored weights are zero where pruned
        for k, mask in masks.items():
            sd[k].mul_(mask)
    torch.save(sd, level / "model_ep40_it0.pth")
    torch.save({k: v.int() for k, v in masks.items()}, level / "mask.pth")  # Mask.save
    with open(level / "sparsity_report.json", "w") as fh:
        json.dump({"total": float(sum(v.numel() for v in masks.values())),
                   "unpruned": float(sum(v.sum() for v in masks.values()))}, fh)
    return level


def test_open_lth_level_audits_with_its_mask(tmp_path):
    m, masks = _model_and_masks(2)
    with torch.no_grad():
        m[2].weight[masks["2.weight"].bool()] += 0.5  # no kept weight is 0 by chance
        kept_zero = masks["2.weight"].nonzero()[0]
        m[2].weight[tuple(kept_zero)] = 0.0  # but one kept weight is exactly 0: only mask.pth says it is kept
    level = _open_lth_level(tmp_path, m, masks)
    got = _audit(level / "model_ep40_it0.pth")
    assert got == _oracle(m, masks, tmp_path)
    assert got["summary"]["kept"] == int(sum(v.sum() for v in masks.values()))
    report = json.loads((level / "sparsity_report.json").read_text())
    assert got["summary"]["kept"] == report["unpruned"] and got["summary"]["weights"] == report["total"]


def test_open_lth_mask_that_does_not_fit_is_refused(tmp_path):
    m, masks = _model_and_masks(3)
    level = _open_lth_level(tmp_path, m, masks)
    torch.save({"2.weight": torch.ones(3, 3, dtype=torch.int32)}, level / "mask.pth")
    with pytest.raises(BadCheckpoint, match="must match"):
        load_checkpoint(level / "model_ep40_it0.pth")
    torch.save({"9.weight": torch.ones(3, 3, dtype=torch.int32)}, level / "mask.pth")
    with pytest.raises(BadCheckpoint, match="does not hold"):
        load_checkpoint(level / "model_ep40_it0.pth")
    torch.save({"2.weight": torch.full((8, 10), 2, dtype=torch.int32)}, level / "mask.pth")
    with pytest.raises(BadCheckpoint, match="0 or 1"):
        load_checkpoint(level / "model_ep40_it0.pth")


# -- NNI ------------------------------------------------------------------------------------------

def _nni_masks(masks, with_bias=True):
    out = {}
    for k, v in masks.items():
        module = k[: -len(".weight")]
        out[module] = {"weight": v.clone()}
        if with_bias:
            out[module]["bias"] = torch.ones(v.shape[0])
    return out


def test_nni_model_and_mask_files_audit_like_prune_format(tmp_path):
    m, masks = _model_and_masks(4)
    sd = m.state_dict()
    with torch.no_grad():
        for k, mask in masks.items():
            sd[k].mul_(mask)
    torch.save(sd, tmp_path / "model.pth")  # export_model(model_path, mask_path)
    nni = _nni_masks(masks, with_bias=False)
    torch.save(nni, tmp_path / "mask.pth")
    ck = load_with_masks(tmp_path / "model.pth", tmp_path / "mask.pth")
    got = audit(graph_from_checkpoint(ck)).to_dict()
    got.pop("source")
    assert got == _oracle(m, masks, tmp_path)


def test_nni_mask_dict_alone_gives_the_connectivity(tmp_path):
    m, masks = _model_and_masks(5)
    with torch.no_grad():  # biases everywhere non-zero, as the NNI bias masks (all kept) say
        for i in (0, 2, 4):
            m[i].bias.fill_(0.1)
    torch.save(_nni_masks(masks), tmp_path / "mask.pth")
    got = _audit(tmp_path / "mask.pth")
    want = _oracle(m, masks, tmp_path)
    for key in ("weights", "kept", "effective", "dead", "constant"):
        assert got["summary"][key] == want["summary"][key], key
    assert [l["name"] for l in got["layers"]] == [l["name"] for l in want["layers"]]


def test_nni_mask_dict_with_non_binary_values_is_refused(tmp_path):
    _, masks = _model_and_masks(6)
    nni = _nni_masks(masks)
    nni["2"]["weight"][0, 0] = 0.5
    torch.save(nni, tmp_path / "mask.pth")
    assert main(["repair", str(tmp_path / "mask.pth"), "-o", str(tmp_path / "o.pth")]) == 2
    with pytest.raises(BadCheckpoint, match="0 or 1"):
        load_checkpoint(tmp_path / "mask.pth")


def test_the_cli_audit_reads_open_lth_and_nni_files_like_the_library(tmp_path, capsys):
    m, masks = _model_and_masks(7)
    with torch.no_grad():
        m[2].weight[masks["2.weight"].bool()] += 0.5
        m[2].weight[tuple(masks["2.weight"].nonzero()[0])] = 0.0  # kept, and exactly 0
    level = _open_lth_level(tmp_path, m, masks)
    torch.save(_nni_masks(masks), tmp_path / "nni_mask.pth")
    for path in (level / "model_ep40_it0.pth", tmp_path / "nni_mask.pth"):
        assert main(["audit", str(path), "--format", "json"]) == 0
        got = json.loads(capsys.readouterr().out)
        want = audit(graph_from_checkpoint(load_checkpoint(path)), source=str(path)).to_dict()
        assert got == want, path
    assert got["summary"]["kept"] == int(sum(v.sum() for v in masks.values()))
