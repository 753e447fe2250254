import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.params import load_section, load_seed, read_params
from fmnist_dvc.data.params import DownloadParams, PreprocessParams
from fmnist_dvc.evaluate.params import EvaluateParams
from fmnist_dvc.experiments.presets import set_args
from fmnist_dvc.train.params import TrainParams
from tests.helpers import REPO_ROOT, write_params


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
    with pytest.raises(PipelineError, match=r"train\.epochs should be a valid integer \(got 'ten'\)"):
        load_section("train", TrainParams, path)


def test_yaml_boolean_is_not_an_integer(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.batch_size": True})
    with pytest.raises(PipelineError, match=r"train\.batch_size should be a valid integer \(got True\)"):
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
        ("train.cnn.kernel_size", True),  # an int Literal alone would take it as 1
        ("train.cnn.blocks", [[32], [64], [128], [256]]),
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
    # A rule broken inside a list names the item: train.cnn.blocks.1 for the empty block.
    with pytest.raises(PipelineError, match=rf"params\.yaml: {re.escape(key)}(\.\d+)? (should|applies) "):
        load_section(section, SECTIONS[section], path)


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("model", "resnet", "'mlp' or 'cnn'"),
        ("optimizer", "rmsprop", "'adam', 'adamw' or 'sgd'"),
        ("schedule", "linear", "'step', 'one_cycle' or 'cosine'"),
        ("cnn.head", "attention", "'gap' or 'flatten'"),
    ],
)
def test_unknown_names_list_the_valid_choices(tmp_path: Path, key: str, value: str, choices: str) -> None:
    path = write_params(tmp_path, {f"train.{key}": value})
    with pytest.raises(
        PipelineError,
        match=rf"train\.{key} should be {choices} \(got '{value}'\); fix it in params\.yaml\.$",
    ):
        load_section("train", TrainParams, path)


def test_unknown_tta_mode_lists_the_valid_choices(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"evaluate.tta": "rotate"})
    with pytest.raises(
        PipelineError, match=r"evaluate\.tta should be 'none', 'flip' or 'flip_translate' \(got 'rotate'\)"
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
    with pytest.raises(PipelineError, match=r"train\.augment\.flip\.enabled should be a valid boolean"):
        load_section("train", TrainParams, path)


def test_missing_key(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    del data["train"]["patience"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PipelineError, match=r"key 'train\.patience' is missing"):
        load_section("train", TrainParams, path)


def test_misspelt_key_points_at_the_spelling_not_at_the_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text().replace("  patience:", "  patince:"))
    with pytest.raises(PipelineError, match=r"unknown key 'train\.patince'; did you mean 'train\.patience'"):
        load_section("train", TrainParams, path)


def test_missing_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\n")
    with pytest.raises(PipelineError, match=r"'evaluate:' is missing or not a mapping\.$"):
        load_section("evaluate", EvaluateParams, path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "train.threads",
            -1,
            "train.threads should be greater than or equal to 0 (0 = one per CPU core; got -1)",
        ),
        (
            "preprocess.train_limit",
            5,
            "preprocess.train_limit should be greater than or equal to 20 (null = all",
        ),
        (
            "train.cnn.blocks",
            [[8]] * 4,
            "should have at most 3 items, not 4 (28x28 images halve to 7x7 after",
        ),
        (
            "train.weight_decay",
            0.01,
            "train.weight_decay applies only to optimizers adamw and sgd; set it to 0 or choose one of "
            "them (got 0.01); fix it in params.yaml.",
        ),
        (
            "train.bn_bias_lr",
            8,
            "train.bn_bias_lr speeds up BatchNorm biases, which only model cnn with cnn.batch_norm has; "
            "set it to 1 (",
        ),
    ],
)
def test_messages_carry_the_why(tmp_path: Path, key: str, value: object, message: str) -> None:
    section = key.split(".")[0]
    with pytest.raises(PipelineError, match=re.escape(message)):
        load_section(section, SECTIONS[section], write_params(tmp_path, {key: value}))


def test_sections_are_frozen_and_replace_validates_again() -> None:
    train = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    with pytest.raises(ValidationError):  # frozen
        train.epochs = 1  # type: ignore[misc]
    assert train.replace(optimizer="adamw", weight_decay=1e-4).weight_decay == 1e-4
    with pytest.raises(ValidationError):
        train.replace(weight_decay=1e-4)  # still adam


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"params\.yaml not found"):
        load_section("train", TrainParams, tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(PipelineError, match="is not valid YAML at line"):
        load_section("train", TrainParams, bad)


@pytest.mark.parametrize(
    ("seed", "rule"),
    [
        ("-1", "should be greater than or equal to 0"),
        ("4294967296", "should be less than 4294967296"),
        ("1.5", "should be a valid integer"),
        ("'7'", "should be a valid integer"),
        ("yes", "should be a valid integer"),  # YAML 1.1 reads a bool, 1.2 a string: not a number
    ],
)
def test_seed_must_fit_numpy_and_tensorflow(tmp_path: Path, seed: str, rule: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(f"seed: {seed}\ntrain: {{}}\n")  # the sections beside it are not the seed's
    with pytest.raises(
        PipelineError,
        match=rf"^{re.escape(str(path))}: seed {rule} \(NumPy and TensorFlow take 0 to 2\*\*32 - 1; ",
    ):
        load_seed(path)


def test_a_missing_seed_is_named(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train: {}\n")
    with pytest.raises(
        PipelineError, match=rf"^{re.escape(str(path))}: key 'seed' is missing; add it to params.yaml\.$"
    ):
        load_seed(path)


def test_infinite_values_are_refused(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"download.timeout": float("inf")})
    with pytest.raises(PipelineError, match=r"download\.timeout should be a finite number \(got inf\)"):
        load_section("download", DownloadParams, path)


def test_yaml_1_2_exponent_floats_as_dvc_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        (REPO_ROOT / "params.yaml").read_text().replace("weight_decay: 0.0 ", "weight_decay: 1e-05 ")
    )
    path.write_text(path.read_text().replace("optimizer: adam ", "optimizer: adamw "))
    assert load_section("train", TrainParams, path).weight_decay == 1e-05


def test_params_read_as_dvc_reads_them(tmp_path: Path) -> None:
    from dvc.utils.serialize import parse_yaml

    text = (REPO_ROOT / "params.yaml").read_text().replace("weight_decay: 0.0 ", "weight_decay: 1e-05 ")
    path = tmp_path / "params.yaml"
    path.write_text(text + "flags: [yes, no, on, 010]\n")  # YAML 1.1 would read True, False, True, 8
    assert read_params(path) == parse_yaml(path.read_text(), str(path))
    assert read_params(path)["flags"] == ["yes", "no", "on", 10]


def test_a_key_given_twice_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\ntrain: {}\nseed: 2\n")
    with pytest.raises(
        PipelineError,
        match=rf"^{re.escape(str(path))} gives 'seed' twice in one mapping \(again at line 3\); ",
    ):
        load_seed(path)


def test_presets_read_floats_and_faults_as_params_do(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("train:\n  learning_rate: 1e-3\n  cnn: {blocks: [[8], [16]]}\n")
    assert set_args(preset) == ["-S", "train.learning_rate=0.001", "-S", "train.cnn.blocks=[[8],[16]]"]
    preset.write_text("train:\n  epochs: [3\n")
    with pytest.raises(PipelineError, match=r"p\.yaml is not valid YAML at line 3: .*; fix the syntax\.$"):
        set_args(preset)


def test_nested_list_type_error_names_the_item(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.cnn.blocks": [32, 64]})
    with pytest.raises(PipelineError, match=r"train\.cnn\.blocks\.0 should be a valid list \(got 32\)"):
        load_section("train", TrainParams, path)
