"""Stage scripts as DVC runs them: bad input gives one line on stderr, exit 1, no output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, write_params


def run_stage(stage: str, cwd: Path, changes: dict | None = None) -> subprocess.CompletedProcess[str]:
    write_params(cwd, changes or {})
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / f"{stage}.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("stage", "change", "fragments"),
    [
        ("download", {"download.retries": 0}, ["download.retries must be >= 1"]),
        (
            "preprocess",
            {"preprocess.val_fraction": 1.5},
            ["preprocess.val_fraction must be between 0 and 1"],
        ),
        (
            "train",
            {"train.learnig_rate": 0.01},
            ["unknown key 'train.learnig_rate'", "train.learning_rate"],
        ),
        ("train", {"train.batch_size": "32"}, ["train.batch_size must be an integer"]),
        ("train", {"train.model": "resnet"}, ["train.model is 'resnet'", "valid choices: mlp, cnn"]),
        (
            "train",
            {"train.augment.rotate": {"enabled": True}},
            ["unknown key 'train.augment.rotate'", "flip"],
        ),
    ],
)
def test_bad_params_stop_the_stage_before_any_work(
    tmp_path: Path, stage: str, change: dict, fragments: list[str]
) -> None:
    assert_one_line_error(run_stage(stage, tmp_path, change), *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_download_with_no_usable_source_leaves_no_data(tmp_path: Path) -> None:
    proc = run_stage("download", tmp_path, {"download.sources": [str(tmp_path / "nowhere")]})
    assert_one_line_error(
        proc, "no source supplied a valid train-images-idx3-ubyte", "apt-get install dataset-fashion-mnist"
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
