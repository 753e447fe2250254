"""benchmarks/bench.py runs end to end: a smoke test on a small real subset, not a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow


def test_bench_runs_and_writes_its_json(small_raw_dir: Path, prepared: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "raw").symlink_to(small_raw_dir)
    (data / "prepared").symlink_to(prepared)
    out = tmp_path / "results.json"
    args = ["--data", data, "--epochs", "2", "--json", out, "--only", "matmul", "mlp project", "preprocess"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["matmul"]["gflops"] > 1
    mlp = results["mlp project"]
    assert mlp["epochs"] == 2 and mlp["images_per_epoch"] == len(np.load(prepared / "train_labels.npy"))
    assert mlp["steady_seconds_per_epoch"] > 0 and 0.3 < mlp["test_accuracy"] <= 1  # it learnt: chance is 0.1
    assert results["preprocess"]["seconds"] > 0
    assert "float32 2048x2048 matmul" in proc.stdout and "| mlp project (tensorflow" in proc.stdout
