"""Shared fixtures: the real Fashion-MNIST from Debian's package, and small real subsets of it.

Test modules import their helpers from tests/helpers.py, not from here. A module of the slow tier
(`make test-all` only) marks itself with `pytestmark = pytest.mark.slow`; tests/test_tiers.py
fails when a module that is not marked uses what only the slow tier may."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from fmnist_dvc.data.download import download_all
from fmnist_dvc.data.idx import read_pair
from fmnist_dvc.data.prepare import prepare
from tests.helpers import DEBIAN_DIR, REPO_ROOT, encode_idx

# Test runs send DVC no usage reports: each dvc command the tests run (the Ray trials' too) would
# otherwise start DVC's analytics daemon, about 0.4 CPU-s a time.
os.environ["DVC_NO_ANALYTICS"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    """Pin TensorFlow's intra-op threads to params.yaml's train.threads, as the train stage does,
    through TensorFlow's own API: the count is fixed at TensorFlow's first op, and test modules
    may run one as they are collected, before any training pins it. Not in xdist's controller,
    which runs no test."""
    if getattr(config, "workerinput", None) is None and config.getoption("numprocesses", None):
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(
        yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["train"]["threads"]
    )


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


# The longest modules, longest first. `make test-all` runs `pytest -n 3 --dist loadfile
# --no-loadscope-reorder`: each module stays on one worker (module fixtures run once), and the
# workers take them in this order (xdist would otherwise sort the modules by their test count).
# xdist queues a worker's next module once two tests of its current one are left, so a long
# module ends with quick tests (test_pipeline's queued experiments come before its diffs).
LONGEST_FIRST = [
    "test_sweep",
    "test_tune",
    "test_collaboration",
    "test_pipeline",
    "test_resume",
    "test_backend",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def module(item: pytest.Item) -> str:
        return item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""

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
