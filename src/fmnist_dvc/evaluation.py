"""Score the trained model on the untouched test split."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from fmnist_dvc.atomic import atomic_write_text
from fmnist_dvc.errors import PipelineError
from fmnist_dvc.prepare import load_split
from fmnist_dvc.training import make_dataset

EVAL_BATCH = 1000


def load_model(path: Path) -> keras.Model:
    """Load a .keras file with safe_mode on (no arbitrary code from a shared model file)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run 'dvc repro train' first.")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise PipelineError(
            f"{path} is not a readable Keras model ({type(exc).__name__}); "
            "run 'dvc repro -f train' to rebuild it."
        ) from None


def evaluate(model_path: Path, data_dir: Path, metrics_path: Path) -> dict[str, float]:
    """Write test loss and accuracy to `metrics_path` as {"test": {...}} and return them."""
    model = load_model(model_path)
    images, labels = load_split(data_dir, "test")
    scores = model.evaluate(make_dataset(images, labels, EVAL_BATCH), return_dict=True, verbose=0)
    test = {
        "accuracy": round(float(scores["accuracy"]), 6),
        "loss": round(float(scores["loss"]), 6),
        "images": len(labels),
    }
    atomic_write_text(metrics_path, json.dumps({"test": test}, indent=2) + "\n")
    return test
