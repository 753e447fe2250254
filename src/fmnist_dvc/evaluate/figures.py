"""The evaluate stage's figures for what DVC's Vega templates cannot show: images, grouped bars."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fmnist_dvc import CLASS_NAMES
from fmnist_dvc.core.figures import plt


def image_grid(images: np.ndarray, titles: list[str], columns: int, suptitle: str) -> plt.Figure:
    """Grayscale 28x28 images with a caption each."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=7)
    fig.suptitle(suptitle)
    return fig


def most_confident_mistakes(
    images: np.ndarray, labels: np.ndarray, probs: np.ndarray, count: int = 24
) -> plt.Figure:
    """Wrong predictions the model was surest about: where it is confidently wrong."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    worst = wrong[np.argsort(-confidence, kind="stable")[:count]]
    titles = [
        f"true: {CLASS_NAMES[labels[i]]}\npred: {CLASS_NAMES[predicted[i]]} ({probs[i, predicted[i]]:.4f})"
        for i in worst
    ]
    return image_grid(images[worst], titles, 6, "Most confidently misclassified test images")


def per_class_bars(table: pd.DataFrame) -> plt.Figure:
    """Precision, recall and F1 side by side for each class."""
    fig, ax = plt.subplots(figsize=(11, 4), layout="constrained")
    table.set_index("class")[["precision", "recall", "f1"]].plot.bar(ax=ax, width=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Class")
    ax.set_ylabel("Score on the test set")
    ax.set_title("Precision, recall and F1 per class")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return fig
