"""Stage scripts as DVC runs them: bad params or a missing input give one line on stderr,
exit 1, no output. Bad data files are in test_bad_input.py; docs/bad-input.md lists both and
holds the messages: each case checks its row there, found by id."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.catalogue import assert_catalogued_error, cases
from tests.helpers import REPO_ROOT, run_stage, run_stage_here


@pytest.mark.parametrize(
    ("case", "stage", "change"),
    cases(
        ("retries-zero", "download", {"download.retries": 0}),
        ("val-fraction-above-1", "preprocess", {"preprocess.val_fraction": 1.5}),
        ("val-fraction-1", "preprocess", {"preprocess.val_fraction": 1.0}),
        ("val-fraction-0", "preprocess", {"preprocess.val_fraction": 0.0}),
        ("unknown-key", "train", {"train.learnig_rate": 0.01}),
        ("unknown-nested-key", "train", {"train.augment.rotate": {"enabled": True}}),
        ("wrong-type", "train", {"train.batch_size": "32"}),
        ("unknown-choice", "train", {"train.model": "resnet"}),
        ("learning-rate-0", "train", {"train.learning_rate": 0.0}),
        ("learning-rate-negative", "train", {"train.learning_rate": -0.001}),
        ("epochs-0", "train", {"train.epochs": 0}),
        ("threads-negative", "train", {"train.threads": -1}),
        ("unknown-backend", "train", {"train.backend": "torch"}),
        ("export-unknown-format", "export", {"export.formats": ["pb"]}),
        ("batch-size-0", "train", {"train.batch_size": 0}),
        ("mlp-dropout-1", "train", {"train.mlp.dropout": 1.0}),
        ("mlp-dropout-negative", "train", {"train.mlp.dropout": -0.1}),
        ("cnn-dropout-above-1", "train", {"train.cnn.dropout": 1.5}),
        ("seed-negative", "train", {"seed": -1}),
    ),
)
def test_bad_params_stop_the_stage_before_any_work(
    tmp_path: Path,
    case: str,
    stage: str,
    change: dict,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = "tensorflow" in sys.modules  # by an earlier test in this process, perhaps
    assert_catalogued_error(run_stage_here(stage, tmp_path, change, capsys, monkeypatch), case)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
    assert loaded or "tensorflow" not in sys.modules  # it stopped before loading TensorFlow


@pytest.mark.parametrize("stage", ["download", "preprocess", "train"])
def test_missing_params_file_says_where_to_run_from(tmp_path: Path, stage: str) -> None:
    assert_catalogued_error(run_stage(stage, tmp_path, params=False), "params-missing")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stage", ["download", "preprocess", "train"])
def test_invalid_yaml_names_the_line(tmp_path: Path, stage: str) -> None:
    # The repository's params.yaml with one closing bracket lost, as a hand edit might. The
    # catalogue's message names its lines in the repository's params.yaml.
    text = (REPO_ROOT / "params.yaml").read_text()
    broken = text.replace("hidden_units: [256, 256, 128, 64]", "hidden_units: [256, 256, 128, 64")
    assert broken != text
    (tmp_path / "params.yaml").write_text(broken)
    assert_catalogued_error(run_stage(stage, tmp_path, params=False), "invalid-yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("stage", ["download", "train"])
def test_a_key_given_twice_is_refused(tmp_path: Path, stage: str) -> None:
    # YAML would let the second silently win; DVC's reader, and so ours, refuses it.
    text = (REPO_ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text + "seed: 7\n")
    # The catalogue's message names the line in the repository's params.yaml.
    assert_catalogued_error(run_stage(stage, tmp_path, params=False), "duplicate-key")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_download_with_no_usable_source_leaves_no_data(tmp_path: Path) -> None:
    proc = run_stage("download", tmp_path, {"download.sources": [str(tmp_path / "nowhere")]})
    assert_catalogued_error(proc, "missing-source-directory", work=tmp_path)
    assert not (tmp_path / "data" / "raw").exists()
    assert list((tmp_path / "data").iterdir()) == []


def test_preprocess_without_raw_data_says_what_to_run(tmp_path: Path) -> None:
    assert_catalogued_error(run_stage("preprocess", tmp_path), "raw-missing")
    assert not (tmp_path / "data" / "prepared").exists()


def test_evaluate_without_a_model_says_what_to_run(tmp_path: Path) -> None:
    assert_catalogued_error(run_stage("evaluate", tmp_path), "model-missing")
    assert not (tmp_path / "metrics").exists()
