"""`python -m fmnist_dvc.experiments.plots` on a tiny DVC project (one CSV plot, no training):
--open with and without a browser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text("plots:\n  - scores.csv:\n      x: step\n      y: score\n")
    (tmp_path / "scores.csv").write_text("step,score\n0,0.5\n1,0.7\n")
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def plots_show_open(repo: Path, browser: str) -> subprocess.CompletedProcess[str]:
    # webbrowser runs $BROWSER URL: `false` stands for a machine without a browser.
    env = {**os.environ, "BROWSER": browser, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "fmnist_dvc.experiments.plots", "show", "--open"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_open_without_a_browser_says_where_the_page_is_and_succeeds(tiny_project: Path) -> None:
    proc = plots_show_open(tiny_project, "false")
    assert proc.returncode == 0, proc.stderr
    page = (tiny_project / "dvc_plots" / "index.html").as_uri()
    assert f"plots: no browser to open here; open {page} in one" in proc.stdout
    assert "scores.csv" in (tiny_project / "dvc_plots" / "index.html").read_text()


def test_open_with_a_browser_opens_the_page_quietly(tiny_project: Path) -> None:
    proc = plots_show_open(tiny_project, "true")
    assert proc.returncode == 0, proc.stderr
    assert "no browser" not in proc.stdout
