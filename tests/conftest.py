"""Shared fixtures: the real Fashion-MNIST from Debian's package, and small real subsets of it."""

from __future__ import annotations

import gzip
import json
import os
import re
import runpy
import shlex
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock

from fmnist_dvc.download import download_all
from fmnist_dvc.idx import UBYTE, read_pair
from fmnist_dvc.prepare import prepare

REPO_ROOT = Path(__file__).resolve().parents[1]

# params.yaml's train.threads. TensorFlow fixes the count at its first op, and test modules
# may run one as they are collected, so hand it over before any of them imports TensorFlow
# (read once, at TensorFlow's start; conftest itself does not load it).
os.environ["TF_NUM_INTRAOP_THREADS"] = str(
    yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["train"]["threads"]
)

# Test runs send DVC no usage reports: each dvc command the tests run (the Ray trials' too) would
# otherwise start DVC's analytics daemon, about 0.4 CPU-s a time.
os.environ["DVC_NO_ANALYTICS"] = "1"

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def require(missing: str | None) -> None:
    """A tool or package a test needs (npm, Chromium, moto...): `missing` says which is absent
    and how to get it. Locally that is a skip with the reason; under CI=true, a failure."""
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(missing)
    pytest.skip(missing)


@pytest.fixture(scope="session")
def debian_dir() -> Path:
    if not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            f"the real data is missing from {DEBIAN_DIR}; "
            "run 'apt-get install dataset-fashion-mnist' (make setup does this)"
        )
    return DEBIAN_DIR


@pytest.fixture(scope="session")
def raw_dir(debian_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four official files, decompressed and verified by the download code."""
    dest = tmp_path_factory.mktemp("raw") / "raw"
    download_all([str(debian_dir)], dest)
    return dest


@pytest.fixture(scope="session")
def small_raw_dir(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real subset in the raw layout: the first 1,000 training and 500 test images."""
    dest = tmp_path_factory.mktemp("small_raw")
    for prefix, n in (("train", 1000), ("t10k", 500)):
        images, labels = read_pair(
            raw_dir / f"{prefix}-images-idx3-ubyte", raw_dir / f"{prefix}-labels-idx1-ubyte"
        )
        (dest / f"{prefix}-images-idx3-ubyte").write_bytes(encode_idx(images[:n]))
        (dest / f"{prefix}-labels-idx1-ubyte").write_bytes(encode_idx(labels[:n]))
    return dest


@pytest.fixture(scope="session")
def prepared(small_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real subset split as the preprocess stage does it: 800 train, 200 val, 500 test."""
    out = tmp_path_factory.mktemp("prepared")
    prepare(small_raw_dir, out, val_fraction=0.2, train_limit=None, seed=0)
    return out


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


# The slow tier (`make test-all` runs it with the rest; `make test` leaves it out): whole-pipeline
# runs under real DVC, remotes on loopback servers, kill-and-resume, the JAX backend, the
# bad-input catalogue's stage runs, predict on trained models and the pages rendered in Chromium.
SLOW_MODULES = {
    "test_predict",
    "test_export",
    "test_registry",
    "test_bench",
    "test_pipeline",
    "test_collaboration",
    "test_resume",
    "test_backend",
    "test_bad_input",
    "test_offline_plots",
}


# The longest modules, longest first. `make test-all` runs `pytest -n 3 --dist loadfile
# --no-loadscope-reorder`: each module stays on one worker (module fixtures run once), and the
# workers take them in this order (xdist would otherwise sort the modules by their test count).
# xdist queues a worker's next module once two tests of its current one are left, so a long
# module ends with quick tests (test_pipeline's queued experiments come before its diffs).
LONGEST_FIRST = ["test_sweep", "test_collaboration", "test_pipeline", "test_resume", "test_backend"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def module(item: pytest.Item) -> str:
        return item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""

    for item in items:
        if module(item) in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(module(item), len(rank)))  # stable: order kept within


@pytest.fixture(scope="session")
def two_branches(tmp_path_factory: pytest.TempPathFactory, debian_dir: Path) -> tuple[Path, dict]:
    """The main/short project of tests.dvcrepo.build_two_branches, built once per test run: the
    xdist workers share the run's base directory, and a file lock lets one build while the
    others wait. Users copy it (copy_project) before they change anything."""
    from tests.dvcrepo import build_two_branches

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's directory, above each worker's own
    repo, record = base / "two-branches" / "repo", base / "two-branches" / "record.json"
    with FileLock(str(base / "two-branches.lock")):
        if not record.is_file():
            shutil.rmtree(repo, ignore_errors=True)  # a build that failed on another worker
            repo.mkdir(parents=True)
            record.write_text(json.dumps(build_two_branches(repo)))
    return repo, json.loads(record.read_text())


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on a free loopback port, with the bucket of the s3 remote."""
    from tests.s3 import BUCKET, require_module, s3_client

    for module in ("moto.server", "boto3", "dvc_s3"):
        require_module(module)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()
