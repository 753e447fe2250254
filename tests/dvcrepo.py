"""Helpers for tests that run the real pipeline under real DVC in a temporary git repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from fmnist_dvc.experiments.offline_plots import build_template
from tests.helpers import REPO_ROOT, write_params
from tests.s3 import BUCKET

BIN = Path(sys.executable).parent
TEMPLATE = Path("build/plots-template.html")


def run(cmd: list[str], cwd: Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # stages run `python`: this interpreter
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == expect, (
        f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def dvc(*args: str, cwd: Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "dvc"), *args], cwd, expect)


def lock_without_timing(repo: Path) -> dict:
    """dvc.lock less the hash of metrics/time (wall-clock minutes, different on every run):
    everything else must match byte for byte between identical runs."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    train = lock["stages"]["train"]
    train["outs"] = [out for out in train["outs"] if out["path"] != "metrics/time"]
    return lock


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def exp_runs(show: list[dict]) -> list[dict]:
    """Flatten `dvc exp show --json` into one dict per experiment run."""
    runs = []
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                runs.append({"name": rev.get("name"), "error": rev.get("error"), **(rev.get("data") or {})})
    return runs


def set_params(repo: Path, changes: dict[str, object]) -> None:
    write_params(repo, changes, base=repo / "params.yaml")


def new_project(repo: Path) -> Path:
    """A copy of this project's git-tracked files (no results, no tests) at `repo`, with the
    offline plot template in use as `make setup` leaves it."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard"], REPO_ROOT).stdout.split()
    for rel in listed:
        if rel == "dvc.lock" or rel.startswith(("metrics/", "tests/")):
            continue  # start from no results at all
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, repo / rel)
    if (REPO_ROOT / TEMPLATE).is_file():  # made by `make setup`; gitignored, so copy it
        (repo / TEMPLATE).parent.mkdir()
        shutil.copy2(REPO_ROOT / TEMPLATE, repo / TEMPLATE)
    else:
        build_template(repo / TEMPLATE)
    use_offline_template(repo)
    drop_export_stage(repo)
    return repo


def build_two_branches(repo: Path) -> dict:
    """Branch main: a small run (2,000 images, 2 epochs), then a repro with nothing to do; branch
    short: the same with 1 epoch, checked out. Returns what each command printed and whether the
    second repro kept every output. test_pipeline and test_collaboration each work on a copy."""
    new_project(repo)
    set_params(repo, {"preprocess.train_limit": 2000, "train.epochs": 2})
    run(["git", "init", "-q", "-b", "main"], repo)
    # The project commits no S3 bucket (bucket names are global): a team adds its own, as here.
    dvc("remote", "add", "s3", f"s3://{BUCKET}/cache", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "small run"], repo)

    record: dict = {"first": dvc("repro", cwd=repo).stdout}
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results of the small run"], repo)
    lock = (repo / "dvc.lock").read_bytes()
    model_mtime = (repo / "models/model.keras").stat().st_mtime_ns
    record["noop"] = dvc("repro", cwd=repo).stdout
    record["noop_kept_lock"] = (repo / "dvc.lock").read_bytes() == lock
    record["noop_kept_model"] = (repo / "models/model.keras").stat().st_mtime_ns == model_mtime
    record["status"] = dvc("status", cwd=repo).stdout

    run(["git", "checkout", "-qb", "short"], repo)
    set_params(repo, {"train.epochs": 1})
    record["short"] = dvc("repro", cwd=repo).stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "one epoch"], repo)
    return record


def copy_project(built: Path, dest: Path) -> Path:
    """A copy of a built project, its git history and DVC cache included, for one test module."""
    shutil.copytree(built, dest, symlinks=True)
    return dest


def drop_export_stage(repo: Path) -> None:
    """The whole-pipeline tests keep to download..evaluate, whose stage lists, timings and
    byte-for-byte checks they were written for; the export stage has tests of its own
    (tests/test_export.py runs stages/export.py as DVC does)."""
    path = repo / "dvc.yaml"
    data = yaml.safe_load(path.read_text())
    del data["stages"]["export"]
    data["metrics"] = [m for m in data["metrics"] if "export" not in m]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def use_offline_template(repo: Path) -> None:
    """Point DVC at the template in the untracked .dvc/config.local, as `make setup` does."""
    dvc("config", "--local", "plots.html_template", f"../{TEMPLATE}", cwd=repo)
