"""Score the trained model on the untouched test split, overall and per class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fmnist_dvc import CLASS_NAMES, NUM_CLASSES
from fmnist_dvc.core.atomic import atomic_dir, atomic_write_text
from fmnist_dvc.core.figures import save_png
from fmnist_dvc.core.model_io import load_model
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.evaluate.figures import most_confident_mistakes, per_class_bars
from fmnist_dvc.evaluate.tta import predict_tta

EVAL_BATCH = 1000
EPSILON = 1e-7  # the clipping Keras applies inside categorical cross-entropy


def per_class_table(labels: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (0 where a class is never predicted)."""
    rows = []
    for c, name in enumerate(CLASS_NAMES):
        tp = int(np.sum((predicted == c) & (labels == c)))
        n_pred, n_true = int(np.sum(predicted == c)), int(np.sum(labels == c))
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": n_true})
    return pd.DataFrame(rows)


def summary_metrics(labels: np.ndarray, probs: np.ndarray, table: pd.DataFrame) -> dict:
    """The numbers `dvc metrics diff` compares, all named test.* so none can pass for validation."""
    top2 = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    weights = table["support"] / table["support"].sum()

    def averages(w: pd.Series | float) -> dict[str, float]:
        return {k: round(float((table[k] * w).sum()), 6) for k in ("precision", "recall", "f1")}

    return {
        "accuracy": round(float(np.mean(probs.argmax(axis=1) == labels)), 6),
        "loss": log_loss(labels, probs),
        "top2_accuracy": round(float(np.mean((top2 == labels[:, None]).any(axis=1))), 6),
        "macro_avg": averages(1.0 / NUM_CLASSES),
        "weighted_avg": averages(weights),
        "images": len(labels),
    }


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy of the true classes, clipped as Keras clips it."""
    true_prob = np.clip(probs[np.arange(len(labels)), labels].astype(np.float64), EPSILON, 1.0)
    return round(float(np.mean(-np.log(true_prob))), 6)


def evaluate(
    model_path: Path, data_dir: Path, metrics_path: Path, plots_dir: Path, tta: str = "none"
) -> dict:
    """Write `{"test": {...}}` to `metrics_path` and the per-image and per-class plot data to `plots_dir`.

    With `tta` other than "none", test.tta_accuracy and test.tta_loss score the probabilities
    averaged over its views (fmnist_dvc.evaluate.tta); every other number and plot is the plain model's.
    """
    model = load_model(model_path)
    images, labels = load_split(data_dir, "test")

    def predict(x: np.ndarray) -> np.ndarray:
        # float32 pixel values 0-255: the model scales them itself (train.models.pixel_scaling).
        return model.predict(x.astype(np.float32), batch_size=EVAL_BATCH, verbose=0)

    probs = predict(images)
    predicted = probs.argmax(axis=1)
    table = per_class_table(labels, predicted)
    test = summary_metrics(labels, probs, table)
    if tta != "none":
        tta_probs = predict_tta(predict, images, tta, plain=probs)
        test["tta_accuracy"] = round(float(np.mean(tta_probs.argmax(axis=1) == labels)), 6)
        test["tta_loss"] = log_loss(labels, tta_probs)

    names = np.array(CLASS_NAMES)
    with atomic_dir(plots_dir) as tmp:
        pd.DataFrame({"actual": names[labels], "predicted": names[predicted]}).to_csv(
            tmp / "predictions.csv", index=False
        )
        table.round(6).to_csv(tmp / "per_class.csv", index=False)
        save_png(per_class_bars(table), tmp / "per_class.png")
        save_png(most_confident_mistakes(images, labels, probs), tmp / "misclassified.png")
    atomic_write_text(metrics_path, json.dumps({"test": test}, indent=2) + "\n")
    return test
