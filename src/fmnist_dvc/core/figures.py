"""Matplotlib set up for files, and PNGs that are byte-identical for the same figure.

The figures themselves live with the stage that draws them (data.samples, evaluate.figures)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from fmnist_dvc.core.atomic import atomic_write_bytes

# No version or date stamps: the same inputs give the same PNG bytes.
PNG_METADATA = {"Software": None}


def save_png(fig: plt.Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
