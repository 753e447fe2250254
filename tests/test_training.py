import csv
from pathlib import Path

import keras
import numpy as np
import pytest

from fmnist_dvc.evaluation import evaluate, load_model
from fmnist_dvc.errors import PipelineError
from fmnist_dvc.models import build_mlp
from fmnist_dvc.params import TrainParams, load_section
from fmnist_dvc.prepare import prepare
from fmnist_dvc.training import lr_schedule, train
from tests.conftest import REPO_ROOT

SEED = load_section("train", TrainParams, REPO_ROOT / "params.yaml")


def test_seed_mlp_has_the_exact_layers_and_308554_parameters() -> None:
    model = build_mlp(SEED.hidden_units, SEED.dropout)
    assert model.count_params() == 308_554
    kinds = [(type(layer).__name__, getattr(layer, "units", None) or getattr(layer, "rate", None))
             for layer in model.layers]
    assert kinds == [
        ("Flatten", None),
        ("Dense", 256), ("Dropout", 0.2),
        ("Dense", 256), ("Dropout", 0.2),
        ("Dense", 128), ("Dropout", 0.2),
        ("Dense", 64), ("Dropout", 0.2),
        ("Dense", 10),
    ]
    activations = [layer.activation.__name__ for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert activations == ["relu"] * 4 + ["softmax"]
    assert model.input_shape == (None, 28, 28)


def test_learning_rate_drops_tenfold_from_epoch_15() -> None:
    def lr(epoch: int) -> float:
        return lr_schedule(epoch, SEED.learning_rate, SEED.lr_drop_epoch, SEED.lr_drop_factor)

    assert lr(14) == pytest.approx(1e-3)
    assert lr(15) == pytest.approx(1e-4)
    assert lr(16) == pytest.approx(1e-4)


@pytest.fixture(scope="module")
def prepared(small_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare(small_raw_dir, out, val_fraction=0.2, train_limit=None, seed=0)
    return out


def _quick_params(**overrides: object) -> TrainParams:
    values = {**SEED.__dict__, "epochs": 3, "lr_drop_epoch": 1, "batch_size": 64, **overrides}
    return TrainParams(**values)


def test_training_writes_model_and_history_with_the_schedule_applied(prepared: Path, tmp_path: Path) -> None:
    history = tmp_path / "metrics" / "history.csv"
    train(_quick_params(), 0, prepared, tmp_path / "models", history)
    rows = list(csv.DictReader(history.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([1e-3, 1e-4, 1e-4])
    assert all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    model = load_model(tmp_path / "models" / "model.keras")
    assert model.count_params() == 308_554
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model.keras"]


def test_same_seed_gives_bit_identical_weights(prepared: Path, tmp_path: Path) -> None:
    weights = []
    for run in ("a", "b"):
        model = train(_quick_params(epochs=2), 5, prepared, tmp_path / run, tmp_path / f"{run}.csv")
        weights.append(model.get_weights())
    for w1, w2 in zip(*weights, strict=True):
        np.testing.assert_array_equal(w1, w2)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_evaluate_writes_test_metrics(prepared: Path, tmp_path: Path) -> None:
    train(_quick_params(epochs=2), 0, prepared, tmp_path / "models", tmp_path / "h.csv")
    scores = evaluate(tmp_path / "models" / "model.keras", prepared, tmp_path / "m" / "evaluate.json")
    assert scores["images"] == 500
    assert 0.3 < scores["accuracy"] <= 1.0  # 800 real images, 2 epochs: far above chance (0.1)
    assert (tmp_path / "m" / "evaluate.json").read_text().startswith('{\n  "test": {')


def test_missing_or_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"model.keras not found; run 'dvc repro train' first"):
        load_model(tmp_path / "model.keras")
    (tmp_path / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(PipelineError, match="is not a readable Keras model"):
        load_model(tmp_path / "model.keras")
