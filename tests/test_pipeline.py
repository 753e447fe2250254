"""End to end: the real pipeline under real DVC in a temporary git repository, on a real subset."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # stages run `python`: this interpreter
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def set_params(repo: Path, **sections: dict) -> None:
    path = repo / "params.yaml"
    data = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        data[section].update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, debian_dir: Path) -> Path:
    """A copy of the project's tracked files, minus the recorded results, as a fresh git repo."""
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for rel in listed:
        if rel == "dvc.lock" or rel.startswith(("metrics/", "tests/")):
            continue
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, repo / rel)
    set_params(repo, preprocess={"train_limit": 2000}, train={"epochs": 2})
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "small run"], repo)
    return repo


def test_repro_builds_every_output(repo: Path) -> None:
    out = run([str(BIN / "dvc"), "repro"], repo)
    assert stages_run(out) == ["download", "preprocess", "train", "evaluate"]
    assert "Test accuracy:" in out
    labels = np.load(repo / "data/prepared/train_labels.npy", allow_pickle=False)
    assert labels.dtype == np.uint8 and len(labels) == 1800
    assert (repo / "models/model.keras").stat().st_size > 1_000_000
    metrics = json.loads((repo / "metrics/evaluate.json").read_text())["test"]
    assert metrics["images"] == 10000
    assert 0.5 < metrics["accuracy"] <= 1.0  # 1,800 images, 2 epochs: well above chance (0.1)
    assert 0 < metrics["loss"] < 2.3  # below the loss of a uniform guess, ln 10
    assert len((repo / "metrics/history.csv").read_text().splitlines()) == 1 + 2
    shown = run([str(BIN / "dvc"), "metrics", "show"], repo)
    assert "test.accuracy" in shown


def test_second_repro_changes_nothing(repo: Path) -> None:
    lock = (repo / "dvc.lock").read_bytes()
    model_mtime = (repo / "models/model.keras").stat().st_mtime_ns
    out = run([str(BIN / "dvc"), "repro"], repo)
    assert stages_run(out) == []
    assert (repo / "dvc.lock").read_bytes() == lock
    assert (repo / "models/model.keras").stat().st_mtime_ns == model_mtime
    assert "Data and pipelines are up to date" in run([str(BIN / "dvc"), "status"], repo)


def test_changing_epochs_reruns_only_train_and_evaluate(repo: Path) -> None:
    set_params(repo, train={"epochs": 1})
    out = run([str(BIN / "dvc"), "repro"], repo)
    assert stages_run(out) == ["train", "evaluate"]
    assert len((repo / "metrics/history.csv").read_text().splitlines()) == 1 + 1


def test_git_ignores_every_cached_output(repo: Path) -> None:
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], repo)
    assert "data/raw" not in status and "data/prepared" not in status and "models/" not in status
