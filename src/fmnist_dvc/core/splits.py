"""The prepared data in data/prepared/: one uint8 .npy pair per split.

Its own module so training and evaluation read the splits without importing the IDX
parsing and splitting code that wrote them (fmnist_dvc.data.prepare).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_dvc.core.atomic import atomic_dir
from fmnist_dvc.core.errors import PipelineError


def save_splits(out_dir: Path, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write (images, labels) per split to `out_dir`, all or nothing."""
    with atomic_dir(out_dir) as tmp:
        for split, (images, labels) in arrays.items():
            np.save(tmp / f"{split}_images.npy", images)
            np.save(tmp / f"{split}_labels.npy", labels)


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) and labels (n,) of one prepared split, both uint8."""
    paths = [Path(data_dir) / f"{split}_{kind}.npy" for kind in ("images", "labels")]
    arrays = []
    for path in paths:
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except FileNotFoundError:
            raise PipelineError(f"{path} not found; run 'dvc repro preprocess' first.") from None
        except ValueError as exc:
            raise PipelineError(
                f"{path} is not a readable .npy array ({exc}); run 'dvc repro -f preprocess'."
            ) from None
    images, labels = arrays
    if images.dtype != np.uint8 or labels.dtype != np.uint8 or len(images) != len(labels):
        raise PipelineError(f"{paths[0]} and {paths[1]} do not match; run 'dvc repro -f preprocess'.")
    return images, labels
