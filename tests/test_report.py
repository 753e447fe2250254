"""The report's text and plot_errors' advice, on DVC answers stood in for (no DVC project, no training)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fmnist_dvc.experiments import plots, report
from tests.helpers import REPO_ROOT

EMPTY_PARAMS = "| Path   | Param   | main   | workspace   |\n|--------|---------|--------|-------------|\n\n"
EMPTY_METRICS = (
    "| Path   | Metric   | main   | workspace   | Change   |\n"
    "|--------|----------|--------|-------------|----------|\n\n"
)
METRICS = (
    "| Path | Metric | main | workspace | Change |\n|---|---|---|---|---|\n"
    "| metrics/evaluate.json | test.accuracy | 0.88 | 0.89 | 0.01 |\n"
)


def fake_dvc_plots(monkeypatch: pytest.MonkeyPatch, errors: list[dict]) -> None:
    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps({"errors": errors}), stderr="")

    monkeypatch.setattr(plots, "dvc_executable", lambda: "dvc")
    monkeypatch.setattr(plots.subprocess, "run", run)


def test_missing_data_is_rebuilt_here_or_fetched_for_another_revision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # dvc.yaml names the files of a plot DVC reports without them
    fake_dvc_plots(
        monkeypatch,
        [
            {"name": "loss", "rev": "workspace", "type": "FileNotFoundError"},
            {"name": "loss", "rev": "cnn-fast-s1", "type": "FileNotFoundError"},
        ],
    )
    here, other = plots.plot_errors(["diff", "cnn-fast-s1"])
    files = "metrics/train/plots/metrics/train/loss.tsv, metrics/train/plots/metrics/eval/loss.tsv"
    assert here == (
        f"plot 'loss' (workspace): {files} is missing; run 'dvc repro' to rebuild it or fix the file."
    )
    assert other.startswith(f"plot 'loss' (cnn-fast-s1): {files} is missing; fetch that revision's data")
    assert "dvc fetch --all-branches --type plots" in other and "dvc exp pull origin cnn-fast-s1" in other
    assert "dvc repro" not in other


def build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, metrics: str, params: str, missing: list[str]
) -> str:
    answers = {"metrics": metrics, "params": params, "plots": ""}
    monkeypatch.setattr(report, "_git", lambda *args, what: "" if args[0] == "status" else "abc1234")
    monkeypatch.setattr(report, "_dvc", lambda *args: answers[args[0]])
    monkeypatch.setattr(report, "plot_errors", lambda args: missing)
    return report.build_report("main", tmp_path / "plots")


def test_nothing_changed_is_said_in_words(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = build(monkeypatch, tmp_path, EMPTY_METRICS, EMPTY_PARAMS, [])
    assert "### Metrics\n\nNo metric changed.\n" in text
    assert "### Params\n\nNo parameter changed.\n" in text
    assert "| Path" not in text and "Not drawn" not in text


def test_changes_keep_dvcs_table_and_missing_plots_are_listed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = build(monkeypatch, tmp_path, METRICS, EMPTY_PARAMS, ["plot 'loss' (main): x is missing; fetch"])
    assert METRICS.strip() in text
    assert "No parameter changed." in text
    assert "Not drawn (data missing):\n\n- plot 'loss' (main): x is missing; fetch" in text
