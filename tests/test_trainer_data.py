"""Loaders on fixture trees in the real formats; temporal chunking; synthetic determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures_data import write_fpha, write_sbu
from trainer import (
    FPHA_EDGES,
    SBU_TEST_SETS,
    DataError,
    load_dataset,
    load_digits,
    load_fpha,
    load_sbu,
    synthetic_skeletons,
    temporal_chunks,
)


def _normalized(chunks: np.ndarray) -> np.ndarray:
    """The loaders' per-sequence normalisation, written out: centre, unit RMS."""
    xyz = chunks.reshape(chunks.shape[0], -1, 3)
    xyz = xyz - xyz.mean(axis=(0, 1), keepdims=True)
    return (xyz / (np.sqrt((xyz ** 2).mean()) + 1e-8)).reshape(chunks.shape)


def test_temporal_chunks_averages_each_chunk():
    frames = np.arange(64 * 2 * 3, dtype=float).reshape(64, 2, 3)
    out = temporal_chunks(frames, chunks=32)
    assert out.shape == (2, 96)
    # chunk m holds frames 2m, 2m+1: its mean, chunk-major [x y z] per chunk
    for m in range(32):
        np.testing.assert_allclose(out[:, 3 * m:3 * m + 3], frames[2 * m:2 * m + 2].mean(axis=0))


def test_temporal_chunks_short_sequence_uses_nearest_frame():
    frames = np.arange(3 * 1 * 3, dtype=float).reshape(3, 1, 3)
    out = temporal_chunks(frames, chunks=6).reshape(6, 3)
    assert {tuple(r) for r in out} <= {tuple(f[0]) for f in frames}
    np.testing.assert_allclose(out[0], frames[0, 0])
    np.testing.assert_allclose(out[-1], frames[-1, 0])


def test_fpha_loader_reads_split_and_skeletons(tmp_path):
    written = write_fpha(tmp_path)
    d = load_fpha(tmp_path)
    assert d.x_train.shape == (2, 21, 96) and d.x_test.shape == (1, 21, 96)
    assert d.y_train.tolist() == [0, 1] and d.y_test.tolist() == [0]
    assert d.classes == 45 and d.edges == FPHA_EDGES
    expect = _normalized(temporal_chunks(written["Subject_1/pour_milk/2"]))
    np.testing.assert_allclose(d.x_train[1].numpy(), expect, rtol=1e-5, atol=1e-5)


def test_sbu_loader_splits_by_set_pairs(tmp_path):
    written = write_sbu(tmp_path, sets=(SBU_TEST_SETS[0], "s01s03"), classes=(1, 8))
    d = load_sbu(tmp_path)
    assert d.x_train.shape == (2, 30, 96) and d.x_test.shape == (2, 30, 96)
    assert sorted(d.y_test.tolist()) == [0, 7] and d.classes == 8
    expect = _normalized(temporal_chunks(written["s01s03/08/001"].reshape(-1, 30, 3)))
    np.testing.assert_allclose(d.x_train[1].numpy(), expect, rtol=1e-5, atol=1e-5)
    assert load_dataset(f"sbu:{tmp_path}").x_train.shape == (2, 30, 96)


@pytest.mark.parametrize("damage, match", [
    ("bad_width", "expected a frame index then 63"),
    ("nan", "NaN or infinite"),
    ("no_split", "not found"),
    ("bad_label", "not an integer"),
], ids=["short-line", "nan-coordinate", "missing-split-file", "non-integer-label"])
def test_fpha_loader_refuses_broken_trees(tmp_path, damage, match):
    write_fpha(tmp_path)
    split = tmp_path / "data_split_action_recognition.txt"
    skel = tmp_path / "Hand_pose_annotation_v1" / "Subject_1" / "open_juice" / "1" / "skeleton.txt"
    if damage == "bad_width":
        skel.write_text("0 1 2 3\n")
    elif damage == "nan":
        skel.write_text(" ".join(["0"] + ["nan"] * 63) + "\n")
    elif damage == "no_split":
        split.unlink()
    elif damage == "bad_label":
        split.write_text("Training 1\nSubject_1/open_juice/1 x\nTest 1\nSubject_2/open_juice/1 0\n")
    with pytest.raises(DataError, match=match):
        load_fpha(tmp_path)


def test_sbu_loader_refuses_empty_split(tmp_path):
    write_sbu(tmp_path, sets=("s01s03",))
    with pytest.raises(DataError, match="test sequences"):
        load_sbu(tmp_path)


@pytest.mark.parametrize("kind, shape, classes, n_test", [("fpha", (600, 21, 96), 45, 575), ("sbu", (225, 30, 96), 8, 57)])
def test_synthetic_datasets_are_deterministic_and_shaped(kind, shape, classes, n_test):
    a, b = synthetic_skeletons(kind, seed=3), synthetic_skeletons(kind, seed=3)
    assert tuple(a.x_train.shape) == shape and a.x_test.shape[0] == n_test and a.classes == classes
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert set(a.y_train.tolist()) == set(range(classes))
    c = synthetic_skeletons(kind, seed=4)
    assert not torch.equal(a.x_train, c.x_train)


def test_synthetic_is_not_trivially_separable():
    """A linear probe on the chunked signal (an independent check of difficulty) stays far from 100 %."""
    from sklearn.linear_model import LogisticRegression

    d = synthetic_skeletons("sbu", seed=0)
    clf = LogisticRegression(max_iter=300).fit(d.x_train.reshape(len(d.x_train), -1), d.y_train)
    acc = clf.score(d.x_test.reshape(len(d.x_test), -1), d.y_test)
    assert 0.2 < acc < 0.95


def test_digits_split_is_seeded():
    a, b = load_digits(seed=1), load_digits(seed=1)
    assert torch.equal(a.x_train, b.x_train) and a.x_train.shape[1] == 64 and a.classes == 10


def test_unknown_dataset_is_refused():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet")
