"""Test-time augmentation: average the model's probabilities over mirrored and shifted views.

Clothes are mostly left-right symmetric, so a mirrored image is as valid an input as the
original, and the model's two answers err differently; their mean is right more often. The
views follow cifar10-airbench's levels: `flip` averages the image and its mirror image;
`flip_translate` gives that pair half the weight and the pair shifted one pixel up-left and
down-right (zero fill: the background is black) the other half.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import numpy as np

Tta = Literal["none", "flip", "flip_translate"]  # evaluate.tta and fmnist predict --tta
TTA_CHOICES: tuple[str, ...] = get_args(Tta)


def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(n, 28, 28) images moved by (dy, dx) pixels, uncovered pixels 0."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def views(images: np.ndarray, mode: str) -> list[tuple[float, np.ndarray]]:
    """(weight, images) pairs whose weighted probabilities make the TTA prediction."""
    if mode == "none":
        return [(1.0, images)]
    pairs = [(1.0, images)]
    if mode == "flip_translate":
        pairs = [(0.5, images), (0.25, shift(images, -1, -1)), (0.25, shift(images, 1, 1))]
    return [(w / 2, v) for w, x in pairs for v in (x, x[:, :, ::-1])]


def predict_tta(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    mode: str,
    plain: np.ndarray | None = None,
) -> np.ndarray:
    """Probabilities averaged over the views of `mode`; `predict` maps images to probabilities.
    `plain`: the model's probabilities for `images` themselves, if already known (not recomputed)."""
    total = None
    for weight, view in views(images, mode):
        known = plain is not None and view is images
        probs = weight * np.asarray(plain if known else predict(np.ascontiguousarray(view)), dtype=np.float64)
        total = probs if total is None else total + probs
    return total.astype(np.float32)
