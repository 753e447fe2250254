import re
from pathlib import Path

import pytest
import yaml

from fmnist_dvc.errors import PipelineError
from fmnist_dvc.params import (
    DownloadParams,
    EvaluateParams,
    PreprocessParams,
    TrainParams,
    load_section,
    load_seed,
)
from tests.conftest import REPO_ROOT, write_params


def test_repository_params_are_the_seed_configuration() -> None:
    path = REPO_ROOT / "params.yaml"
    train = load_section("train", TrainParams, path)
    assert train.model == "mlp" and train.mlp.hidden_units == [256, 256, 128, 64]
    assert (train.mlp.dropout, train.learning_rate, train.epochs, train.batch_size) == (0.2, 0.001, 40, 32)
    assert (train.optimizer, train.schedule, train.lr_drop_epoch, train.lr_drop_factor) == (
        "adam",
        "step",
        15,
        0.1,
    )
    assert train.label_smoothing == 0 and not train.augment.any_enabled
    prep = load_section("preprocess", PreprocessParams, path)
    assert prep.val_fraction == 0.1 and prep.train_limit is None
    download = load_section("download", DownloadParams, path)
    assert download.sources[0] == "/usr/share/datasets/fashion-mnist"
    assert all(s.startswith(("/", "https://")) for s in download.sources)
    assert isinstance(load_seed(path), int)


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.learning_rat": 0.01})
    with pytest.raises(
        PipelineError, match=r"unknown key 'train.learning_rat'; did you mean 'train.learning_rate'"
    ):
        load_section("train", TrainParams, path)


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.epochs": "ten"})
    with pytest.raises(PipelineError, match=r"train.epochs must be an integer \(got 'ten'\)"):
        load_section("train", TrainParams, path)


def test_yaml_boolean_is_not_an_integer(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.batch_size": True})
    with pytest.raises(PipelineError, match=r"train\.batch_size must be an integer"):
        load_section("train", TrainParams, path)


SECTIONS = {
    "train": TrainParams,
    "preprocess": PreprocessParams,
    "download": DownloadParams,
    "evaluate": EvaluateParams,
}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train.learning_rate", 0.0),
        ("train.learning_rate", -0.1),
        ("train.epochs", 0),
        ("train.mlp.dropout", 1.0),
        ("train.mlp.dropout", -0.1),
        ("train.cnn.dropout", 1.0),
        ("train.batch_size", 0),
        ("train.mlp.hidden_units", []),
        ("train.cnn.blocks", [[32], [], [64]]),
        ("train.cnn.kernel_size", 4),
        ("train.label_smoothing", 1.0),
        ("train.weight_decay", 0.01),  # with the default optimizer, adam
        ("train.momentum", 1.0),
        ("train.ema", -0.5),
        ("train.cnn.bn_momentum", 1.0),
        ("train.augment.erase.probability", 1.5),
        ("train.augment.translate.pixels", 20),
        ("preprocess.val_fraction", 0.0),
        ("preprocess.val_fraction", 1.0),
        ("preprocess.train_limit", 5),
        ("download.sources", []),
        ("download.retries", 0),
    ],
)
def test_out_of_range_values_are_refused(tmp_path: Path, key: str, value: object) -> None:
    section = key.split(".")[0]
    path = write_params(tmp_path, {key: value})
    with pytest.raises(PipelineError, match=rf"params\.yaml: {re.escape(key)} (must|applies|may)"):
        load_section(section, SECTIONS[section], path)


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("model", "resnet", "mlp, cnn"),
        ("optimizer", "rmsprop", "adam, adamw, sgd"),
        ("schedule", "linear", "step, one_cycle, cosine"),
        ("cnn.head", "attention", "gap, flatten"),
    ],
)
def test_unknown_names_list_the_valid_choices(tmp_path: Path, key: str, value: str, choices: str) -> None:
    path = write_params(tmp_path, {f"train.{key}": value})
    with pytest.raises(
        PipelineError, match=rf"train\.{key} is '{value}', not one of the valid choices: {choices}\.$"
    ):
        load_section("train", TrainParams, path)


def test_unknown_tta_mode_lists_the_valid_choices(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"evaluate.tta": "rotate"})
    with pytest.raises(
        PipelineError, match=r"evaluate\.tta is 'rotate', not one of the valid choices: none, flip"
    ):
        load_section("evaluate", EvaluateParams, path)


def test_unknown_augmentation_names_the_valid_keys(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.augment.rotate": {"enabled": True}})
    with pytest.raises(
        PipelineError,
        match=r"unknown key 'train\.augment\.rotate'; valid keys: flip, translate, erase, zoom\.$",
    ):
        load_section("train", TrainParams, path)


def test_nested_type_errors_name_the_full_key(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.augment.flip.enabled": "yes please"})
    with pytest.raises(PipelineError, match=r"train\.augment\.flip\.enabled must be true or false"):
        load_section("train", TrainParams, path)


def test_missing_key(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    del data["train"]["patience"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PipelineError, match=r"key 'train\.patience' is missing"):
        load_section("train", TrainParams, path)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"params\.yaml not found"):
        load_section("train", TrainParams, tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(PipelineError, match="is not valid YAML at line"):
        load_section("train", TrainParams, bad)


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5", "'7'"])
def test_seed_must_fit_numpy_and_tensorflow(tmp_path: Path, seed: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(f"seed: {seed}\n")
    with pytest.raises(PipelineError, match=r"seed must be an integer from 0 to 2\*\*32 - 1"):
        load_seed(path)


def test_infinite_values_are_refused(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"download.timeout": float("inf")})
    with pytest.raises(PipelineError, match=r"download.timeout must be a finite number"):
        load_section("download", DownloadParams, path)


def test_yaml_1_2_exponent_floats_as_dvc_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        (REPO_ROOT / "params.yaml").read_text().replace("weight_decay: 0.0 ", "weight_decay: 1e-05 ")
    )
    path.write_text(path.read_text().replace("optimizer: adam ", "optimizer: adamw "))
    assert load_section("train", TrainParams, path).weight_decay == 1e-05


def test_nested_list_type_error_says_list_of_lists(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.cnn.blocks": [32, 64]})
    with pytest.raises(PipelineError, match=r"train\.cnn\.blocks must be a list of lists of integers"):
        load_section("train", TrainParams, path)
