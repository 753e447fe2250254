import itertools
from pathlib import Path

import keras
import numpy as np
import pytest

from fmnist_dvc.core.model_io import load_model
from fmnist_dvc.core.params import load_section
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.train.loop import train
from fmnist_dvc.train.models import build_mlp, whitening_filters
from fmnist_dvc.train.optimizer import execution_steps, learning_rate
from fmnist_dvc.train.params import TrainParams
from tests.helpers import REPO_ROOT, write_params

SEED = load_section("train", TrainParams, REPO_ROOT / "params.yaml")


def test_seed_mlp_has_the_exact_layers_and_308554_parameters() -> None:
    model = build_mlp(SEED.mlp.hidden_units, SEED.mlp.dropout)
    assert model.count_params() == 308_554
    kinds = [
        (type(layer).__name__, getattr(layer, "units", None) or getattr(layer, "rate", None))
        for layer in model.layers
    ]
    assert kinds == [
        ("Normalization", None),  # pixels / 255 (models.pixel_scaling)
        ("Flatten", None),
        ("Dense", 256),
        ("Dropout", 0.2),
        ("Dense", 256),
        ("Dropout", 0.2),
        ("Dense", 128),
        ("Dropout", 0.2),
        ("Dense", 64),
        ("Dropout", 0.2),
        ("Dense", 10),
    ]
    activations = [
        layer.activation.__name__ for layer in model.layers if isinstance(layer, keras.layers.Dense)
    ]
    assert activations == ["relu"] * 4 + ["softmax"]
    assert model.input_shape == (None, 28, 28)


def test_learning_rate_drops_tenfold_from_epoch_15() -> None:
    schedule = learning_rate(SEED, steps_per_epoch=10)  # 0-based epoch 15 starts at step 150
    assert [float(schedule(step)) for step in (0, 149, 150, 399)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


def _quick_params(**overrides: object) -> TrainParams:
    return SEED.replace(**{"epochs": 3, "lr_drop_epoch": 1, "batch_size": 64, **overrides})


def _tsv(path: Path) -> list[float]:
    """The value column of a dvclive step/value TSV."""
    return [float(line.split("\t")[1]) for line in path.read_text().splitlines()[1:]]


def test_training_writes_model_and_dvclive_logs_with_the_schedule_applied(
    prepared: Path, tmp_path: Path
) -> None:
    live = tmp_path / "metrics" / "train"
    train(_quick_params(), 0, prepared, tmp_path / "models", live)
    curves = live / "plots" / "metrics"
    assert _tsv(curves / "train" / "learning_rate.tsv") == pytest.approx([1e-3, 1e-4, 1e-4])
    val_acc = _tsv(curves / "eval" / "accuracy.tsv")  # dvclive calls Keras' val_* "eval/"
    assert len(val_acc) == 3 and all(0 <= a <= 1 for a in val_acc)
    loss = _tsv(curves / "train" / "loss.tsv")
    assert loss[-1] < loss[0]
    assert not (live / "dvc.yaml").exists()  # dvc.yaml at the top owns every declaration
    model = load_model(tmp_path / "models" / "model.keras")
    assert model.count_params() == 308_554
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model.keras"]


def test_same_seed_gives_identical_model_files_and_logs(prepared: Path, tmp_path: Path) -> None:
    for run in ("a", "b"):
        keras.backend.clear_session()
        train(_quick_params(epochs=2), 5, prepared, tmp_path / run, tmp_path / f"live_{run}")
    assert (tmp_path / "a" / "model.keras").read_bytes() == (tmp_path / "b" / "model.keras").read_bytes()
    for tsv in sorted((tmp_path / "live_a").rglob("*.tsv")):
        twin = tmp_path / "live_b" / tsv.relative_to(tmp_path / "live_a")
        assert tsv.read_bytes() == twin.read_bytes()


def test_execution_steps_divide_the_epoch() -> None:
    assert execution_steps(1688, 250) == 211  # the full set at batch 32
    assert execution_steps(1688, 50) == 8
    assert execution_steps(13, 250) == 13
    assert execution_steps(13, 7) == 1  # a prime number of batches: one at a time
    assert execution_steps(57, 1) == 1


def test_steps_per_execution_changes_speed_not_weights(prepared: Path, tmp_path: Path) -> None:
    # 800 images in batches of 50 are 16 batches per epoch, and the learning rate drops after
    # the first epoch. Executions of 6 would run across the epoch boundary (6+6+6 > 16) and
    # change the weights; the train stage uses 4, the largest divisor of 16 not above 6.
    for run, steps in (("one", 1), ("more", 6)):
        keras.backend.clear_session()
        train(
            _quick_params(epochs=2, batch_size=50, steps_per_execution=steps),
            5,
            prepared,
            tmp_path / run,
            tmp_path / f"l{run}",
        )
    one, more = (load_model(tmp_path / run / "model.keras").get_weights() for run in ("one", "more"))
    assert len(one) == len(more) and all(a.tobytes() == b.tobytes() for a, b in zip(one, more, strict=True))
    # (the files differ: each records its compile settings, steps_per_execution included)


def test_cnn_with_one_cycle_adamw_smoothing_and_augmentation_trains_reproducibly(
    prepared: Path, tmp_path: Path
) -> None:
    params = load_section(
        "train",
        TrainParams,
        write_params(
            tmp_path,
            {
                "train.model": "cnn",
                "train.cnn.blocks": [[8], [16]],
                "train.optimizer": "adamw",
                "train.weight_decay": 0.01,
                "train.schedule": "one_cycle",
                "train.learning_rate": 0.003,
                "train.warmup_fraction": 0.3,
                "train.label_smoothing": 0.1,
                "train.epochs": 3,
                "train.batch_size": 64,
                "train.augment.flip.enabled": True,
                "train.augment.translate.enabled": True,
                "train.augment.erase.enabled": True,
                "train.augment.zoom.enabled": True,
            },
        ),
    )
    for run in ("a", "b"):
        keras.backend.clear_session()
        model = train(params, 3, prepared, tmp_path / run, tmp_path / f"live_{run}")
    assert model.name == "cnn" and any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    assert (tmp_path / "a" / "model.keras").read_bytes() == (tmp_path / "b" / "model.keras").read_bytes()
    # 800 images at batch 64: 13 steps an epoch, 39 in all, 11 of them warm-up.
    schedule = learning_rate(params, steps_per_epoch=13)
    rate = [float(schedule(step)) for step in range(40)]
    assert rate[0] == pytest.approx(0.003 / 25)
    assert rate[5] == pytest.approx(0.003 / 25 + (0.003 - 0.003 / 25) * 5 / 11)  # linear warm-up
    assert max(rate) == pytest.approx(0.003) and rate.index(max(rate)) == 11
    assert all(a >= b for a, b in itertools.pairwise(rate[11:])) and rate[39] == pytest.approx(0)
    logged = _tsv(tmp_path / "live_a" / "plots" / "metrics" / "train" / "learning_rate.tsv")
    assert logged == pytest.approx([rate[0], rate[13], rate[26]], rel=1e-5)  # where each epoch began
    assert load_model(tmp_path / "a" / "model.keras").count_params() == model.count_params()


@pytest.mark.slow  # two trainings: make test-all
def test_cnn_with_whitening_and_faster_bn_biases_trains_reproducibly(prepared: Path, tmp_path: Path) -> None:
    changes = {"train.model": "cnn", "train.cnn.blocks": [[8], [16]], "train.cnn.whiten": 2}
    params = load_section(
        "train", TrainParams, write_params(tmp_path, {**changes, "train.bn_bias_lr": 8, "train.epochs": 1})
    )
    for run in ("a", "b"):
        keras.backend.clear_session()
        train(params, 3, prepared, tmp_path / run, tmp_path / f"live_{run}")
    assert (tmp_path / "a" / "model.keras").read_bytes() == (tmp_path / "b" / "model.keras").read_bytes()
    saved = load_model(tmp_path / "a" / "model.keras").get_layer("whiten")  # set by train(), then frozen
    expected = whitening_filters(load_split(prepared, "train")[0][:5000], 2)
    assert np.asarray(saved.kernel).tobytes() == expected.tobytes() and not saved.trainable
