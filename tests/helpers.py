"""What test modules import: the repository's paths, real-data subsets cut to IDX bytes, params.yaml
variants, stage runs as DVC runs them and the checks on their output. conftest.py holds the
fixtures (and imports what they need from here); a test module imports from here, never from
conftest."""

from __future__ import annotations

import gzip
import os
import re
import runpy
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fmnist_dvc.data.idx import UBYTE, read_pair

REPO_ROOT = Path(__file__).resolve().parents[1]

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def require(missing: str | None) -> None:
    """A tool or package a test needs (Chromium, moto, zizmor...): `missing` says which is absent
    and how to get it. Locally that is a skip with the reason; under CI=true, a failure."""
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(missing)
    pytest.skip(missing)


def encode_idx(array: np.ndarray) -> bytes:
    """A uint8 array as IDX bytes: to cut real subsets and write broken files for tests."""
    if array.dtype != np.uint8:
        raise ValueError("only uint8 arrays can be written as unsigned-byte IDX")
    head = struct.pack(">HBB", 0, UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + np.ascontiguousarray(array).tobytes()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def real_labels(raw_dir: Path) -> np.ndarray:
    _, labels = read_pair(raw_dir / "train-images-idx3-ubyte", raw_dir / "train-labels-idx1-ubyte")
    return labels


def params_with(changes: dict[str, object], base: Path = REPO_ROOT / "params.yaml") -> dict:
    """The params in `base` with dotted keys changed, e.g. {"train.mlp.dropout": 0.5}."""
    data = yaml.safe_load(base.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


def write_params(folder: Path, changes: dict[str, object], base: Path = REPO_ROOT / "params.yaml") -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params_with(changes, base), sort_keys=False))
    return path


# TensorFlow's C++ start-up log (CUDA probes) goes straight to file descriptor 2 whatever
# TF_CPP_MIN_LOG_LEVEL says; it is not ours, so the one-line checks look past it.
TF_STARTUP_LOG = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] )"
)


def resolved_dvc_yaml() -> dict:
    """dvc.yaml's stages and plots as DVC reads them, `${paths.*}` filled in by DVC's own resolver."""
    from dvc.dvcfile import load_file
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        resolver = load_file(repo, "dvc.yaml").resolver
        return {**resolver.resolve(), "plots": resolver.resolve_plots()}


def stage_args(stage: str) -> list[str]:
    """The paths dvc.yaml's `cmd:` passes to stages/<stage>.py (relative, as DVC runs it)."""
    cmd = shlex.split(resolved_dvc_yaml()["stages"][stage]["cmd"])
    return cmd[cmd.index(f"stages/{stage}.py") + 1 :]


def run_stage(
    stage: str, cwd: Path, changes: dict | None = None, *, params: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run stages/<stage>.py in `cwd` as DVC does, with dvc.yaml's paths; params.yaml is the
    repository's with `changes` (params=False: leave `cwd`'s params.yaml, or its absence, alone)."""
    if params:
        write_params(cwd, changes or {})
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / f"{stage}.py"), *stage_args(stage)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def run_stage_here(
    stage: str, cwd: Path, changes: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> subprocess.CompletedProcess[str]:
    """stages/<stage>.py run in this process as `python stages/<stage>.py` would run it (runpy,
    `__main__`): for the bad-params matrix, where a process per case would add only its start-up.
    The stage must fail before it imports TensorFlow; run_stage keeps the subprocess contract."""
    write_params(cwd, changes)
    argv = [f"stages/{stage}.py", *stage_args(stage)]  # dvc.yaml read from the repository
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", argv)
    capsys.readouterr()
    try:
        runpy.run_path(str(REPO_ROOT / "stages" / f"{stage}.py"), run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 1, and stderr is one `error: ` line holding every fragment; returns that line."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not TF_STARTUP_LOG.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (directories as None, files with their bytes): to show that
    a failed stage left an earlier output exactly as it was, with no scratch files beside it."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))
    }
