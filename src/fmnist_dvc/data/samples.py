"""The preprocess stage's picture of the data: a few training images of each class."""

from __future__ import annotations

import numpy as np

from fmnist_dvc import CLASS_NAMES
from fmnist_dvc.core.figures import plt


def class_samples(images: np.ndarray, labels: np.ndarray, per_class: int = 8) -> plt.Figure:
    """The first `per_class` images of each class, one row per class, drawn as one mosaic: one
    image in one axes renders in a fraction of the time of an axes per image."""
    rows, size, gap = len(CLASS_NAMES), images.shape[1], 2  # gap: pixels between images
    step = size + gap
    mosaic = np.full((rows * step - gap, per_class * step - gap), 255, np.uint8)
    for c in range(rows):
        for i, index in enumerate(np.flatnonzero(labels == c)[:per_class]):
            mosaic[c * step : c * step + size, i * step : i * step + size] = images[index]
    fig, ax = plt.subplots(figsize=(1.1 * per_class + 1.4, 1.1 * rows + 0.5), layout="constrained")
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([c * step + size // 2 for c in range(rows)], CLASS_NAMES)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("Fashion-MNIST: sample images per class")
    return fig
