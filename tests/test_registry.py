"""The model registry: dvc.yaml's `artifacts:` entry, versions and stages as GTO's git tags, and
`dvc artifacts get` fetching each version back from the git remote and the DVC remote alone.

The scratch repository's `train` stage writes a few random bytes as the model: the registry
moves files, whatever they hold, and the real pipeline's model is tested elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.dvcrepo import BIN, dvc, run
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

NAME = "fashion-classifier"


def gto(*args: str, cwd: Path) -> str:
    return run([str(BIN / "gto"), *args], cwd).stdout


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd).stdout


def registry_repo(root: Path) -> tuple[Path, Path]:
    """A git repo with the project's artifacts entry over a one-stage pipeline, a bare git
    remote and a directory DVC remote."""
    remote, storage, repo = root / "remote.git", root / "storage", root / "repo"
    run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], root)
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    git("config", "user.name", "test", cwd=repo)
    git("config", "user.email", "test@example.com", cwd=repo)
    git("remote", "add", "origin", str(remote), cwd=repo)
    dvc("init", "-q", cwd=repo)
    dvc("remote", "add", "-d", "storage", str(storage), cwd=repo)
    project = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "vars": [{"paths": {"models": project["vars"][0]["paths"]["models"]}}],
                "stages": {
                    "train": {
                        "cmd": "python train.py",
                        "deps": ["train.py", "seed.txt"],
                        "outs": ["${paths.models}"],
                    }
                },
                "artifacts": project["artifacts"],
            },
            sort_keys=False,
        )
    )
    (repo / "train.py").write_text(
        "import os, random\n"
        "random.seed(open('seed.txt').read())\n"
        "os.makedirs('models', exist_ok=True)\n"
        "open('models/model.keras', 'wb').write(random.randbytes(4096))\n"
    )
    return repo, remote


def release(repo: Path, seed: str, version: str) -> bytes:
    (repo / "seed.txt").write_text(seed)
    dvc("repro", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", f"model {version}", cwd=repo)
    dvc("push", "-q", cwd=repo)
    gto("register", NAME, "--version", version, cwd=repo)
    git("push", "-q", "--follow-tags", "origin", "main", cwd=repo)
    return (repo / "models/model.keras").read_bytes()


def test_versions_and_stages_come_back_byte_for_byte(tmp_path: Path) -> None:
    repo, remote = registry_repo(tmp_path)
    first = release(repo, "one", "v1.0.0")
    second = release(repo, "two", "v1.1.0")
    assert first != second
    gto("assign", NAME, "--version", "v1.0.0", "--stage", "prod", cwd=repo)
    git("push", "-q", "origin", "--tags", cwd=repo)
    assert gto("show", f"{NAME}@latest", "--ref", cwd=repo).strip() == f"{NAME}@v1.1.0"
    assert gto("show", f"{NAME}#prod", "--ref", cwd=repo).strip() == f"{NAME}@v1.0.0"

    # Elsewhere, with nothing but the git remote's URL (DVC clones it and reads its remote).
    out = tmp_path / "out"
    out.mkdir()
    for args, expected in (
        (["--rev", "v1.0.0"], first),
        (["--rev", "v1.1.0"], second),
        (["--stage", "prod"], first),
        ([], second),  # no version: the latest
    ):
        target = out / f"{'-'.join(args) or 'latest'}.keras"
        dvc("artifacts", "get", str(remote), NAME, *args, "-o", str(target), cwd=out)
        assert target.read_bytes() == expected, args
