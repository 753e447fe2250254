"""Every command turns a fault it can explain into one `error:` line and exit 1, through the one
function in fmnist_dvc.core.errors; none of these runs a training."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_dvc.core.errors import PipelineError, exit_code
from fmnist_dvc.experiments import budget_plot, plots, presets, report
from fmnist_dvc.ship import cli
from tests.helpers import REPO_ROOT


def test_exit_code_maps_outcomes() -> None:
    assert exit_code(lambda: None) == 0
    assert exit_code(lambda code: code, 3) == 3

    def fails() -> None:
        raise PipelineError("the file is broken; fix it.")

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert exit_code(fails) == 1
    assert exit_code(interrupted) == 130
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        exit_code(lambda: 1 / 0)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("name", "command", "fragment"),
    [
        ("presets", lambda tmp: presets.main(["args", str(tmp / "missing.yaml")]), "missing.yaml not found"),
        ("report", lambda tmp: report.main(["no-such-branch"]), "git cannot find revision 'no-such-branch'"),
        ("budget_plot", lambda tmp: budget_plot.main(["no-such-exp"]), "no-such-exp: cannot read"),
    ],
)
def test_command_fault_is_one_line_and_exit_1(
    name: str,
    command: Callable[[Path], int],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no git or DVC repository here
    assert command(tmp_path) == 1
    assert fragment in one_error_line(capsys)


def test_plots_without_dvc_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert plots.main(["show"]) == 1
    assert "dvc not found on PATH" in one_error_line(capsys)


def test_fmnist_predict_with_a_missing_model_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "one.png")
    code = cli.main(["predict", str(tmp_path / "one.png"), "--model", str(tmp_path / "none.keras")])
    assert code == 1
    assert "none.keras not found" in one_error_line(capsys)


def test_stage_without_its_paths_prints_usage_and_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages/preprocess.py")],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert proc.returncode == 2
    assert "usage: preprocess.py [-h] raw prepared samples" in proc.stderr


@pytest.mark.parametrize(
    ("space", "fragment"),
    [
        (
            "train.learnig_rate=interval(0.001, 0.01)",
            "-S train.learnig_rate: not a key of params.yaml; did you mean",
        ),
        ("train.learning_rate=interval(0.001)", "cannot read the -S arguments"),
        ("train.batch_size=choice()", "cannot read the -S arguments"),
        ("train.learning_rate=tag(log, interval(0, 0.01))", "a log interval must start above 0 (got 0"),
        ("train.learning_rate=interval(0.01, 0.001)", "interval(0.01, 0.001) is empty"),
        ("train.epochs=3", "the -S arguments search nothing"),
    ],
)
def test_fmnist_tune_refuses_a_bad_space_before_anything_starts(
    space: str,
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)  # not even a git repository: the space is read first
    assert cli.main(["tune", "-S", space]) == 1
    assert fragment in one_error_line(capsys)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    assert not (tmp_path / "tune").exists()
