"""Datasets: real FPHA and SBU skeleton trees, seeded synthetic stand-ins, sklearn digits.

Contract
--------
Every loader returns a :class:`Dataset`: float32 tensors ``x_train (N, n_nodes, 3·M)`` /
``x_test``, int64 labels, the class count and the skeleton's edges (``()`` for images,
whose ``x`` is ``(N, features)``).  Skeleton sequences become node signals by *temporal
chunking* (tc-pruning §5): the frames are split into ``M`` equal time chunks (M = 32), each
joint's coordinates are averaged per chunk and the ``M`` averages are concatenated
(chunk-major: ``[x₀ y₀ z₀ x₁ y₁ z₁ …]``).

Formats read:

* FPHA: ``<root>/data_split_action_recognition.txt`` (a ``Training <n>`` line followed by
  ``<subject>/<action>/<seq> <label>`` lines, then ``Test <n>`` and its lines) and
  ``<root>/Hand_pose_annotation_v1/<subject>/<action>/<seq>/skeleton.txt`` (one line per
  frame: frame index, then 21 × 3 coordinates).  600 train / 575 test, 45 classes.
* SBU Kinect Interaction: ``<root>/sXXsYY/<class 01..08>/<seq>/skeleton_pos.txt``
  (comma-separated: frame index, then 2 persons × 15 joints × 3).  The test split is the
  set pairs of fold 1 of the dataset's five-fold protocol (``SBU_TEST_SETS``); the rest train.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from netgraph.errors import NetgraphError

from ._models import FPHA_EDGES, SBU_EDGES

__all__ = ["Dataset", "DataError", "temporal_chunks", "load_fpha", "load_sbu", "synthetic_skeletons",
           "load_digits", "load_dataset", "SBU_TEST_SETS", "CHUNKS"]

CHUNKS = 32
SBU_TEST_SETS = ("s01s02", "s03s04", "s05s02", "s06s04")


class DataError(NetgraphError, ValueError):
    """A dataset tree or file breaks its format."""


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int
    edges: tuple[tuple[int, int], ...] = ()

    @property
    def n_nodes(self) -> int:
        return int(self.x_train.shape[1]) if self.x_train.dim() == 3 else 0

    @property
    def in_features(self) -> int:
        return int(self.x_train.shape[-1])


def temporal_chunks(frames: np.ndarray, chunks: int = CHUNKS) -> np.ndarray:
    """``(T, J, 3)`` coordinates → ``(J, 3·chunks)`` chunk averages, chunk-major.

    Frame ``t`` goes to chunk ``⌊t·chunks/T⌋``.  When ``T < chunks`` a chunk with no frame
    takes the frame nearest its centre.

    >>> temporal_chunks(np.arange(4.0).reshape(4, 1, 1).repeat(3, axis=2), chunks=2)[0].tolist()
    [0.5, 0.5, 0.5, 2.5, 2.5, 2.5]
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[2] != 3 or frames.shape[0] == 0:
        raise DataError(f"a sequence must be (frames, joints, 3) with at least one frame, got {frames.shape}")
    t = frames.shape[0]
    which = (np.arange(t) * chunks) // t
    out = np.empty((chunks, frames.shape[1], 3))
    for m in range(chunks):
        sel = which == m
        if sel.any():
            out[m] = frames[sel].mean(axis=0)
        else:
            out[m] = frames[min(t - 1, int((m + 0.5) * t / chunks))]
    return out.transpose(1, 0, 2).reshape(frames.shape[1], 3 * chunks)


def _read_rows(path: Path, sep: str | None, width: int) -> np.ndarray:
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    rows = []
    for k, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = [p for p in (line.split(sep) if sep else line.split()) if p.strip() != ""]
        if len(parts) != width + 1:
            raise DataError(f"{path}:{k} has {len(parts)} values; expected a frame index then {width} coordinates")
        try:
            rows.append([float(p) for p in parts[1:]])
        except ValueError:
            raise DataError(f"{path}:{k} has a value that is not a number") from None
    if not rows:
        raise DataError(f"{path} has no frame")
    arr = np.asarray(rows)
    if not np.isfinite(arr).all():
        raise DataError(f"{path} has NaN or infinite coordinates")
    return arr


def _normalize(x: np.ndarray) -> np.ndarray:
    """Centre each sequence's signal on its mean node position and scale to unit RMS."""
    xyz = x.reshape(x.shape[0], x.shape[1], -1, 3)
    xyz = xyz - xyz.mean(axis=(1, 2), keepdims=True)
    rms = np.sqrt((xyz ** 2).mean(axis=(1, 2, 3), keepdims=True)) + 1e-8
    return (xyz / rms).reshape(x.shape).astype(np.float32)


def _tensors(name, xtr, ytr, xte, yte, classes, edges) -> Dataset:
    return Dataset(name, torch.from_numpy(_normalize(np.stack(xtr))), torch.tensor(ytr, dtype=torch.int64),
                   torch.from_numpy(_normalize(np.stack(xte))), torch.tensor(yte, dtype=torch.int64),
                   classes, tuple(edges))


def load_fpha(root: str | os.PathLike, *, chunks: int = CHUNKS) -> Dataset:
    """The First-Person Hand Action benchmark (45 classes, 21 joints); see the module docstring."""
    root = Path(root)
    split = root / "data_split_action_recognition.txt"
    if not split.is_file():
        raise DataError(f"{split} not found; an FPHA root holds data_split_action_recognition.txt "
                        "and Hand_pose_annotation_v1/")
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    current = None
    for k, line in enumerate(split.read_text().splitlines(), 1):
        f = line.split()
        if not f:
            continue
        head = f[0].lower()
        if head in ("training", "test") and len(f) == 2:
            current = "train" if head == "training" else "test"
            continue
        if current is None or len(f) != 2:
            raise DataError(f"{split}:{k}: expected 'Training N' / 'Test N' headers and '<subject>/<action>/<seq> <label>' lines")
        try:
            parts[current].append((f[0], int(f[1])))
        except ValueError:
            raise DataError(f"{split}:{k}: label {f[1]!r} is not an integer") from None
    if not parts["train"] or not parts["test"]:
        raise DataError(f"{split} lists {len(parts['train'])} training and {len(parts['test'])} test sequences; both must be non-empty")
    data = {}
    for which, items in parts.items():
        xs, ys = [], []
        for rel, label in items:
            path = root / "Hand_pose_annotation_v1" / rel / "skeleton.txt"
            rows = _read_rows(path, None, 63)
            xs.append(temporal_chunks(rows.reshape(-1, 21, 3), chunks))
            ys.append(label)
        data[which] = (xs, ys)
    labels = data["train"][1] + data["test"][1]
    if min(labels) < 0:
        raise DataError(f"{split} has a negative label")
    classes = max(max(labels) + 1, 45)
    return _tensors("fpha", *data["train"], *data["test"], classes, FPHA_EDGES)


def load_sbu(root: str | os.PathLike, *, chunks: int = CHUNKS, test_sets=SBU_TEST_SETS) -> Dataset:
    """SBU Kinect Interaction (8 classes, 2 × 15 joints); see the module docstring."""
    root = Path(root)
    sets = sorted(p for p in root.iterdir() if p.is_dir() and len(p.name) == 6 and p.name[0] == "s") if root.is_dir() else []
    if not sets:
        raise DataError(f"{root} holds no sXXsYY folder; an SBU root holds sXXsYY/<class 01-08>/<seq>/skeleton_pos.txt")
    data = {"train": ([], []), "test": ([], [])}
    for s in sets:
        which = "test" if s.name in test_sets else "train"
        for cls in sorted(p for p in s.iterdir() if p.is_dir()):
            try:
                label = int(cls.name) - 1
            except ValueError:
                raise DataError(f"{cls}: class folders are named 01..08") from None
            if not 0 <= label < 8:
                raise DataError(f"{cls}: class folders are named 01..08")
            for seq in sorted(p for p in cls.iterdir() if p.is_dir()):
                rows = _read_rows(seq / "skeleton_pos.txt", ",", 90)
                data[which][0].append(temporal_chunks(rows.reshape(-1, 30, 3), chunks))
                data[which][1].append(label)
    if not data["train"][0] or not data["test"][0]:
        raise DataError(f"{root}: the split has {len(data['train'][0])} training and {len(data['test'][0])} "
                        f"test sequences (test sets {list(test_sets)}); both must be non-empty")
    return _tensors("sbu", *data["train"], *data["test"], 8, SBU_EDGES)


def synthetic_skeletons(kind: str, *, seed: int = 0, chunks: int = CHUNKS) -> Dataset:
    """Seeded stand-ins with FPHA's or SBU's joints, classes and split sizes.

    Each class is a smooth motion prototype (a rest pose plus per-joint sinusoidal
    trajectories).  A sample blends its class prototype with a random other class (weight
    up to 0.45), then applies a random rotation about the vertical axis, scale, time warp
    and phase shift, and per-frame joint noise; a few per cent of the labels are swapped.
    The classes overlap, so an unpruned GCN cannot reach 100 % test accuracy.
    """
    if kind == "fpha":
        joints, classes, n_train, n_test, edges = 21, 45, 600, 575, FPHA_EDGES
    elif kind == "sbu":
        joints, classes, n_train, n_test, edges = 30, 8, 225, 57, SBU_EDGES
    else:
        raise DataError(f"unknown synthetic dataset {kind!r}; choose 'fpha' or 'sbu'")
    rng = np.random.default_rng([seed, 7919, joints])
    rest = rng.normal(size=(joints, 3))
    n_freq = 3
    amp = rng.normal(scale=0.35, size=(classes, joints, 3, n_freq))
    phase = rng.uniform(0, 2 * np.pi, size=(classes, joints, 3, n_freq))
    freqs = np.arange(1, n_freq + 1)

    def motion(c, tt):  # (T,) in [0, 1] -> (T, J, 3)
        arg = 2 * np.pi * freqs[None, None, None, :] * tt[:, None, None, None] + phase[c][None]
        return rest[None] + (amp[c][None] * np.sin(arg)).sum(-1)

    def sample(c):
        t = int(rng.integers(40, 120))
        u = np.sort(rng.uniform(0, 1, size=t))
        u = (u - u[0]) / max(u[-1] - u[0], 1e-9)
        u = np.clip(u ** rng.uniform(0.7, 1.4) + rng.uniform(-0.08, 0.08), 0, 1)
        other = (c + 1 + int(rng.integers(classes - 1))) % classes
        alpha = rng.uniform(0.0, 0.45)
        seq = (1 - alpha) * motion(c, u) + alpha * motion(other, u)
        th = rng.uniform(-0.6, 0.6)
        rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
        seq = rng.uniform(0.8, 1.25) * seq @ rot.T + rng.normal(scale=0.45, size=seq.shape)
        return temporal_chunks(seq, chunks)

    def split(n):
        ys = np.arange(n) % classes
        rng.shuffle(ys)
        xs = [sample(int(c)) for c in ys]
        flip = rng.uniform(size=n) < 0.05
        ys = np.where(flip, rng.integers(0, classes, size=n), ys)
        return xs, ys.tolist()

    xtr, ytr = split(n_train)
    xte, yte = split(n_test)
    return _tensors(f"synthetic-{kind}", xtr, ytr, xte, yte, classes, edges)


def load_digits(*, seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes), a seeded stratified split."""
    from sklearn.datasets import load_digits as _digits
    from sklearn.model_selection import train_test_split

    d = _digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=test_fraction, random_state=seed, stratify=d.target)
    return Dataset("digits", torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64)),
                   torch.from_numpy(xte), torch.from_numpy(yte.astype(np.int64)), 10, ())


def load_dataset(spec: str, *, seed: int = 0) -> Dataset:
    """``synthetic-fpha``, ``synthetic-sbu``, ``fpha:DIR``, ``sbu:DIR`` or ``digits``."""
    if spec in ("synthetic-fpha", "synthetic-sbu"):
        return synthetic_skeletons(spec.split("-", 1)[1], seed=seed)
    if spec == "digits":
        return load_digits(seed=seed)
    kind, sep, path = spec.partition(":")
    if sep and kind == "fpha":
        return load_fpha(path)
    if sep and kind == "sbu":
        return load_sbu(path)
    if sep and kind and path:
        return load_user_dataset(spec, seed=seed)
    raise DataError(f"unknown dataset {spec!r}; use synthetic-fpha, synthetic-sbu, fpha:DIR, sbu:DIR, digits "
                    "or pkg.module:loader")


def _as_tensors(obj, spec: str, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` tensors from a pair of tensors/arrays or a map-style dataset of ``(x, y)`` items."""
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and not isinstance(obj[0], (tuple, list)):
        x, y = obj
    elif hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
        items = [obj[i] for i in range(len(obj))]
        if not items:
            raise DataError(f"--dataset {spec}: the {part} set is empty")
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.as_tensor([int(it[1]) for it in items])
    else:
        raise DataError(f"--dataset {spec}: the {part} part must be (x, y) tensors or a dataset of (x, y) "
                        f"items, got {type(obj).__name__}")
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if y.dtype.is_floating_point or y.dim() != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise DataError(f"--dataset {spec}: the {part} labels must be a 1-D integer tensor with one label per "
                        f"sample; got x {tuple(x.shape)}, y {tuple(y.shape)} {y.dtype}")
    return x, y.long()


def resolve_callable(spec: str, option: str):
    """The callable named by ``pkg.module:name`` (or ``path/to/file.py:name``), with one-line
    errors: netgraph's one resolver (:func:`netgraph.load_callable`)."""
    from netgraph import load_callable

    try:
        return load_callable(spec, option, "loader" if option == "--dataset" else "factory")
    except DataError:
        raise
    except NetgraphError as exc:
        raise DataError(str(exc)) from None


def load_user_dataset(spec: str, *, seed: int = 0) -> Dataset:
    """``pkg.module:loader``: a callable returning ``(x_train, y_train, x_test, y_test)`` or
    ``(train, test)`` with each part ``(x, y)`` or a dataset of ``(x, y)`` items.  The loader
    is called with ``seed=`` when it accepts it."""
    import inspect

    fn = resolve_callable(spec, "--dataset")
    try:
        takes_seed = "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_seed = False
    out = fn(seed=seed) if takes_seed else fn()
    if isinstance(out, (tuple, list)) and len(out) == 4:
        train, test = (out[0], out[1]), (out[2], out[3])
    elif isinstance(out, (tuple, list)) and len(out) == 2:
        train, test = out
    else:
        raise DataError(f"--dataset {spec}: the loader must return (x_train, y_train, x_test, y_test) or "
                        f"(train, test); got {type(out).__name__}")
    xtr, ytr = _as_tensors(train, spec, "train")
    xte, yte = _as_tensors(test, spec, "test")
    classes = int(max(int(ytr.max()), int(yte.max())) + 1)
    if int(min(ytr.min(), yte.min())) < 0:
        raise DataError(f"--dataset {spec}: labels must be 0..classes-1, found a negative one")
    return Dataset(spec, xtr, ytr, xte, yte, classes, ())
