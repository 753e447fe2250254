import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmnist_dvc import CLASS_NAMES
from fmnist_dvc.core.params import load_section
from fmnist_dvc.data.prepare import prepare
from fmnist_dvc.evaluate.metrics import evaluate, per_class_table, summary_metrics
from fmnist_dvc.train.loop import train
from fmnist_dvc.train.params import TrainParams
from tests.helpers import REPO_ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_per_class_scores_on_a_hand_checked_example() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 0])
    table = per_class_table(labels, predicted).set_index("class")
    t_shirt, trouser, pullover = (table.loc[CLASS_NAMES[c]] for c in range(3))
    assert (t_shirt.precision, t_shirt.recall) == pytest.approx((2 / 3, 2 / 3))
    assert (trouser.precision, trouser.recall, trouser.f1) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (pullover.precision, pullover.recall, pullover.f1, pullover.support) == (0, 0, 0, 1)
    assert table.loc["Bag"].support == 0  # classes absent from the data still get a row


def test_summary_has_top2_and_macro_and_weighted_averages() -> None:
    labels = np.array([0, 1, 1, 2])
    probs = np.zeros((4, 10), np.float32)
    probs[0, [0, 1]] = [0.7, 0.3]  # right
    probs[1, [0, 1]] = [0.6, 0.4]  # wrong, but second guess right
    probs[2, [1, 2]] = [0.9, 0.1]  # right
    probs[3, [0, 1]] = [0.5, 0.5]  # wrong twice: the true class is not in the top 2
    table = per_class_table(labels, probs.argmax(axis=1))
    test = summary_metrics(labels, probs, table)
    assert test["accuracy"] == 0.5
    assert test["top2_accuracy"] == 0.75
    expected_loss = -np.mean(np.log([0.7, 0.4, 0.9, 1e-7]))
    assert test["loss"] == pytest.approx(expected_loss, abs=1e-5)
    # Weighted by support (1, 2, 1 of 4): recall = (1*1 + 2*0.5 + 1*0) / 4.
    assert test["weighted_avg"]["recall"] == pytest.approx(0.5)
    assert test["macro_avg"]["recall"] == pytest.approx((1 + 0.5 + 0) / 10)


def test_evaluate_writes_metrics_and_plot_data_for_the_real_test_images(
    small_raw_dir: Path, tmp_path: Path
) -> None:
    prepare(small_raw_dir, tmp_path / "prepared", val_fraction=0.2, train_limit=None, seed=0)
    seed = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    params = seed.replace(epochs=2, batch_size=64)
    train(params, 0, tmp_path / "prepared", tmp_path / "models", tmp_path / "live")
    plots = tmp_path / "metrics" / "test"
    test = evaluate(
        tmp_path / "models" / "model.keras",
        tmp_path / "prepared",
        tmp_path / "metrics" / "evaluate.json",
        plots,
        tta="flip",
    )
    assert json.loads((tmp_path / "metrics" / "evaluate.json").read_text()) == {"test": test}
    assert test["images"] == 500
    assert 0.3 < test["accuracy"] <= test["top2_accuracy"] <= 1.0  # 800 images, 2 epochs: far above 0.1
    # The mirrored views change some answers (an MLP is not symmetric), but not most of them.
    assert test["tta_accuracy"] != test["accuracy"] and abs(test["tta_accuracy"] - test["accuracy"]) < 0.1
    assert test["tta_loss"] > 0
    predictions = pd.read_csv(plots / "predictions.csv")
    assert len(predictions) == 500 and set(predictions.columns) == {"actual", "predicted"}
    assert set(predictions.actual) <= set(CLASS_NAMES)  # names, not numbers
    assert (predictions.actual == predictions.predicted).mean() == pytest.approx(test["accuracy"])
    per_class = pd.read_csv(plots / "per_class.csv")
    assert per_class["class"].tolist() == list(CLASS_NAMES) and per_class.support.sum() == 500
    for png in ("per_class.png", "misclassified.png"):
        assert (plots / png).read_bytes()[:8] == PNG_MAGIC
