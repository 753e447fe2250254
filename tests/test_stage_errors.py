"""Stage scripts as DVC runs them: bad params or a missing input give one line on stderr,
exit 1, no output. Bad data files are in test_bad_input.py; docs/bad-input.md lists both."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, assert_one_line_error, run_stage


@pytest.mark.parametrize(
    ("stage", "change", "fragments"),
    [
        pytest.param(
            "download",
            {"download.retries": 0},
            ["download.retries should be greater than or equal to 1 (got 0)"],
            id="retries-zero",
        ),
        pytest.param(
            "preprocess",
            {"preprocess.val_fraction": 1.5},
            ["preprocess.val_fraction should be less than 1 (got 1.5)"],
            id="val-fraction-above-1",
        ),
        pytest.param(
            "preprocess",
            {"preprocess.val_fraction": 1.0},
            ["preprocess.val_fraction should be less than 1 (got 1.0)"],
            id="val-fraction-1",
        ),
        pytest.param(
            "preprocess",
            {"preprocess.val_fraction": 0.0},
            ["preprocess.val_fraction should be greater than 0 (got 0.0)"],
            id="val-fraction-0",
        ),
        pytest.param(
            "train",
            {"train.learnig_rate": 0.01},
            ["unknown key 'train.learnig_rate'", "did you mean 'train.learning_rate'"],
            id="unknown-key",
        ),
        pytest.param(
            "train",
            {"train.augment.rotate": {"enabled": True}},
            ["unknown key 'train.augment.rotate'", "flip"],
            id="unknown-nested-key",
        ),
        pytest.param(
            "train",
            {"train.batch_size": "32"},
            ["train.batch_size should be a valid integer (got '32')"],
            id="wrong-type",
        ),
        pytest.param(
            "train",
            {"train.model": "resnet"},
            ["train.model should be 'mlp' or 'cnn' (got 'resnet')"],
            id="unknown-choice",
        ),
        pytest.param(
            "train",
            {"train.learning_rate": 0.0},
            ["train.learning_rate should be greater than 0 (got 0.0)"],
            id="learning-rate-0",
        ),
        pytest.param(
            "train",
            {"train.learning_rate": -0.001},
            ["train.learning_rate should be greater than 0 (got -0.001)"],
            id="learning-rate-negative",
        ),
        pytest.param(
            "train",
            {"train.epochs": 0},
            ["train.epochs should be greater than or equal to 1 (got 0)"],
            id="epochs-0",
        ),
        pytest.param(
            "train",
            {"train.threads": -1},
            ["train.threads should be greater than or equal to 0 (0 = one per CPU core; got -1)"],
            id="threads-negative",
        ),
        pytest.param(
            "train",
            {"train.backend": "torch"},
            ["train.backend should be 'tensorflow' or 'jax' (got 'torch')"],
            id="unknown-backend",
        ),
        pytest.param(
            "train",
            {"train.batch_size": 0},
            ["train.batch_size should be greater than or equal to 1 (got 0)"],
            id="batch-size-0",
        ),
        pytest.param(
            "train",
            {"train.mlp.dropout": 1.0},
            ["train.mlp.dropout should be less than 1 (got 1.0)"],
            id="mlp-dropout-1",
        ),
        pytest.param(
            "train",
            {"train.mlp.dropout": -0.1},
            ["train.mlp.dropout should be greater than or equal to 0 (got -0.1)"],
            id="mlp-dropout-negative",
        ),
        pytest.param(
            "train",
            {"train.cnn.dropout": 1.5},
            ["train.cnn.dropout should be less than 1 (got 1.5)"],
            id="cnn-dropout-above-1",
        ),
        pytest.param(
            "train",
            {"seed": -1},
            ["seed must be an integer from 0 to 2**32 - 1 (got -1)"],
            id="seed-negative",
        ),
    ],
)
def test_bad_params_stop_the_stage_before_any_work(
    tmp_path: Path, stage: str, change: dict, fragments: list[str]
) -> None:
    assert_one_line_error(run_stage(stage, tmp_path, change), *fragments, "params.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("stage", ["download", "preprocess", "train"])
def test_missing_params_file_says_where_to_run_from(tmp_path: Path, stage: str) -> None:
    assert_one_line_error(
        run_stage(stage, tmp_path, params=False),
        "params.yaml not found; run from the repository root, where params.yaml lives.",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stage", ["download", "preprocess", "train"])
def test_invalid_yaml_names_the_line(tmp_path: Path, stage: str) -> None:
    # The repository's params.yaml with one closing bracket lost, as a hand edit might.
    text = (REPO_ROOT / "params.yaml").read_text()
    broken = text.replace("hidden_units: [256, 256, 128, 64]", "hidden_units: [256, 256, 128, 64")
    assert broken != text
    (tmp_path / "params.yaml").write_text(broken)
    line = 1 + next(i for i, s in enumerate(broken.splitlines()) if "hidden_units" in s)
    assert_one_line_error(
        run_stage(stage, tmp_path, params=False),
        f"params.yaml is not valid YAML at line {line + 1}: expected ',' or ']', but got ':' "
        f"(while parsing a flow sequence at line {line}); fix the syntax.",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_download_with_no_usable_source_leaves_no_data(tmp_path: Path) -> None:
    proc = run_stage("download", tmp_path, {"download.sources": [str(tmp_path / "nowhere")]})
    assert_one_line_error(
        proc,
        "no source supplied a valid train-images-idx3-ubyte",
        f"{tmp_path / 'nowhere'}: directory not found",
        "apt-get install dataset-fashion-mnist",
    )
    assert not (tmp_path / "data" / "raw").exists()
    assert list((tmp_path / "data").iterdir()) == []


def test_preprocess_without_raw_data_says_what_to_run(tmp_path: Path) -> None:
    assert_one_line_error(
        run_stage("preprocess", tmp_path), "data/raw/train-images-idx3-ubyte not found", "download"
    )
    assert not (tmp_path / "data" / "prepared").exists()


def test_evaluate_without_a_model_says_what_to_run(tmp_path: Path) -> None:
    assert_one_line_error(run_stage("evaluate", tmp_path), "models/model.keras not found", "dvc repro train")
    assert not (tmp_path / "metrics").exists()
