"""Writers of small FPHA and SBU trees in the real datasets' formats (for loader tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_fpha(root: Path, *, seed: int = 0, train=(("Subject_1", "open_juice", 1, 0), ("Subject_1", "pour_milk", 2, 1)),
               test=(("Subject_2", "open_juice", 1, 0),), frames: int = 40) -> dict[str, np.ndarray]:
    """``data_split_action_recognition.txt`` + ``Hand_pose_annotation_v1/<s>/<a>/<seq>/skeleton.txt``.

    Returns the written coordinates ``(frames, 21, 3)`` by relative sequence path.
    """
    rng = np.random.default_rng(seed)
    lines = [f"Training {len(train)}"]
    lines += [f"{s}/{a}/{q} {y}" for s, a, q, y in train]
    lines.append(f"Test {len(test)}")
    lines += [f"{s}/{a}/{q} {y}" for s, a, q, y in test]
    root.mkdir(parents=True, exist_ok=True)
    (root / "data_split_action_recognition.txt").write_text("\n".join(lines) + "\n")
    written = {}
    for s, a, q, _ in tuple(train) + tuple(test):
        seq = rng.normal(size=(frames, 21, 3)) * 50 + 100
        d = root / "Hand_pose_annotation_v1" / s / a / str(q)
        d.mkdir(parents=True, exist_ok=True)
        rows = [" ".join([str(t)] + [f"{v:.4f}" for v in seq[t].reshape(-1)]) for t in range(frames)]
        (d / "skeleton.txt").write_text("\n".join(rows) + "\n")
        written[f"{s}/{a}/{q}"] = np.round(seq, 4)
    return written


def write_sbu(root: Path, *, seed: int = 0, sets=("s01s02", "s01s03"), classes=(1, 2), seqs: int = 1,
              frames: int = 25) -> dict[str, np.ndarray]:
    """``sXXsYY/<class 01-08>/<seq>/skeleton_pos.txt`` (comma-separated, 2 × 15 joints × 3)."""
    rng = np.random.default_rng(seed)
    written = {}
    for s in sets:
        for c in classes:
            for q in range(1, seqs + 1):
                seq = rng.uniform(0, 1, size=(frames, 30, 3))
                d = root / s / f"{c:02d}" / f"{q:03d}"
                d.mkdir(parents=True, exist_ok=True)
                rows = [",".join([str(t + 1)] + [f"{v:.6f}" for v in seq[t].reshape(-1)]) for t in range(frames)]
                (d / "skeleton_pos.txt").write_text("\n".join(rows) + "\n")
                written[f"{s}/{c:02d}/{q:03d}"] = np.round(seq, 6)
    return written
