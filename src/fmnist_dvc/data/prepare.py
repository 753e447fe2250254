"""Turn the raw IDX files into train/validation/test arrays of uint8.

uint8 keeps data/prepared 4x smaller than float32 to hash, cache and share;
the model's first layer scales the pixels to [0, 1] (train.models.pixel_scaling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_dvc import NUM_CLASSES
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.splits import save_splits
from fmnist_dvc.data.idx import read_pair


def allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Share `total` among classes in proportion to `counts` (largest remainder)."""
    exact = counts * total / counts.sum()
    share = np.floor(exact).astype(np.int64)
    leftover = total - int(share.sum())
    # Ties go to the lower class index: a stable sort keeps this reproducible.
    order = np.argsort(-(exact - share), kind="stable")
    share[order[:leftover]] += 1
    return share


def stratified_split(
    labels: np.ndarray, n_first: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-balanced sample of `n_first` items, and of the rest (both sorted)."""
    classes = np.arange(NUM_CLASSES)
    counts = np.array([(labels == c).sum() for c in classes])
    take = allocate(counts, n_first)
    first, rest = [], []
    for c, k in zip(classes, take, strict=True):
        idx = rng.permutation(np.flatnonzero(labels == c))
        first.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(rest))


def prepare(
    raw_dir: Path, out_dir: Path, val_fraction: float, train_limit: int | None, seed: int
) -> dict[str, int]:
    """Split the 60k training images into train/val, keep the test set; returns split sizes."""
    raw_dir = Path(raw_dir)
    x, y = read_pair(raw_dir / "train-images-idx3-ubyte", raw_dir / "train-labels-idx1-ubyte")
    x_test, y_test = read_pair(raw_dir / "t10k-images-idx3-ubyte", raw_dir / "t10k-labels-idx1-ubyte")
    rng = np.random.default_rng(seed)
    if train_limit is not None and train_limit < len(y):
        keep, _ = stratified_split(y, train_limit, rng)
        x, y = x[keep], y[keep]
    n_val = round(len(y) * val_fraction)
    if n_val < 1 or n_val >= len(y):
        raise PipelineError(
            f"params.yaml: preprocess.val_fraction={val_fraction} leaves {n_val} of {len(y)} "
            "images for validation; choose a fraction that leaves both splits non-empty."
        )
    val_idx, train_idx = stratified_split(y, n_val, rng)
    arrays = {
        "train": (x[train_idx], y[train_idx]),
        "val": (x[val_idx], y[val_idx]),
        "test": (x_test, y_test),
    }
    save_splits(out_dir, arrays)
    return {split: len(labels) for split, (_, labels) in arrays.items()}
