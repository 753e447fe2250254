"""`fmnist tune` on a real Ray cluster (a head and a worker node on 127.0.0.1, as test_sweep
runs them), a bare git repository as the git remote and a directory as the DVC remote; real
Optuna in an SQLite file; each trial a real `dvc exp run` of the pipeline on a small real
subset (1,000 images, 4 epochs of a small-data CNN).

The study searches the learning rate between 0.003 and 1e-6. With the test project's seed
the sampler draws 0.003, 0.003, then 1e-6: the first two trials run side by side on the two
nodes, the third starts once one of them is done, and the pruner stops it after its second
epoch. The driver is then killed with SIGKILL and the same command run again.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dvcrepo import dvc, exp_runs, new_project, run, set_params
from tests.helpers import require
from tests.test_sweep import finish, ray_env, start_fmnist

pytestmark = pytest.mark.slow

SPACE = ["-S", "train.learning_rate=choice(0.003, 0.000001)", "-S", "train.epochs=4"]
SEED = 6  # the sampler's seed too: its first three draws are 0.003, 0.003, 1e-6


def start_tune(repo: Path, *args: str) -> subprocess.Popen[str]:
    return start_fmnist(repo, "tune", *args)


def warned_then_interrupted(proc: subprocess.Popen[str], within: float) -> dict:
    """The seconds until the driver's first `warning:` line (Ray's own INFO lines come before
    it), that line, and how Ctrl-C then ends the command."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    start = time.time()
    reader.start()

    def warning() -> str:
        return next((line for line in list(lines) if line.startswith("warning:")), "")

    while time.time() - start < within and not warning() and proc.poll() is None:
        time.sleep(0.2)
    seconds = time.time() - start
    proc.send_signal(signal.SIGINT)
    out = proc.stdout.read()
    proc.wait(timeout=120)
    reader.join(timeout=10)
    return {"seconds": seconds, "warning": warning(), "code": proc.returncode, "stdout": out}


def study_trials(repo: Path, name: str) -> list:
    import optuna

    db = repo / "tune" / "optuna.db"
    if not db.is_file():
        return []
    try:
        return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials
    except KeyError:  # the study is not created yet
        return []


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, debian_dir: Path) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ray_env().items():
            mp.setenv(key, value)
        for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
            mp.setenv(key, "test")
        for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
            mp.setenv(key, "test@example.com")
        try:
            from ray.cluster_utils import Cluster
        except ImportError:
            require("ray is missing: run pip install -e '.[dev]'")
        yield _study(root, Cluster)


def _study(root: Path, cluster_class: type) -> dict:
    record: dict = {}
    origin, repo = root / "origin.git", root / "repo"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    new_project(repo)
    # A CNN: an MLP's epoch on 1,000 images ends before the pruner's word reaches the trial.
    # BatchNorm's statistics settle within these few steps at momentum 0.5.
    set_params(
        repo,
        {"seed": SEED, "preprocess.train_limit": 1000, "train.model": "cnn", "train.cnn.bn_momentum": 0.5},
    )
    run(["git", "init", "-q", "-b", "main"], repo)
    dvc("remote", "add", "-d", "store", str(root / "store"), cwd=repo)
    run(["git", "remote", "add", "origin", str(origin)], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "small runs"], repo)
    run(["git", "push", "-q", "origin", "main"], repo)
    record["repo"] = repo

    name = f"t{os.getpid()}"
    args = [*SPACE, "--trials", "5", "--cpus-per-trial", "1", "--name", name]
    cluster = cluster_class(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        args += ["--address", cluster.address]
        proc = start_tune(repo, *args)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            states = [t.state.name for t in study_trials(repo, name)]
            if states.count("COMPLETE") >= 2 and "PRUNED" in states and "RUNNING" in states:
                break  # the kill lands with a trial running
            time.sleep(1)
        record["before_kill"] = {t.number: t.state.name for t in study_trials(repo, name)}
        proc.send_signal(signal.SIGKILL)
        record["killed"] = finish(proc)
        assert "RUNNING" in record["before_kill"].values(), record["killed"].stderr[-3000:]
        # Ray stops the dead driver's tasks; their `dvc exp run` (a session of its own) goes on
        # in its clone: stop it by its process id, as a lost node would.
        _kill_trial_processes(name)
        for clone in glob.glob(f"/tmp/fmnist-sweep-{name}-*"):  # left by the killed trials
            shutil.rmtree(clone, ignore_errors=True)
        record["resumed"] = finish(start_tune(repo, *args))
        # One more trial, of 2 CPUs, on nodes of 1: said at once, then Ctrl-C.
        bigger = [
            *SPACE,
            "--trials",
            "6",
            "--address",
            cluster.address,
            "--cpus-per-trial",
            "2",
            "--name",
            name,
        ]
        record["bad_node"] = warned_then_interrupted(start_tune(repo, *bigger), within=60)
    finally:
        _kill_trial_processes(name)
        cluster.shutdown()
    record["name"] = name
    record["trials"] = study_trials(repo, name)
    record["show"] = json.loads(dvc("exp", "show", "--json", cwd=repo).stdout)
    first = next(t for t in record["trials"] if t.state.name == "COMPLETE")
    exp = record["rerun_of"] = first.user_attrs["experiment"]
    record["exp_scores"] = run(["git", "show", f"{_exp_ref(repo, exp)}:metrics/evaluate.json"], repo).stdout
    dvc("exp", "apply", exp, cwd=repo)
    dvc("repro", "-f", cwd=repo)
    record["rerun_scores"] = (repo / "metrics/evaluate.json").read_text()
    return record


def _exp_ref(repo: Path, name: str) -> str:
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    return next(r for r in refs if r.endswith(f"/{name}"))


def _kill_trial_processes(name: str) -> None:
    prefix = f"/tmp/fmnist-sweep-{name}-"
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd").startswith(prefix):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def test_the_bad_learning_rate_is_pruned_after_its_second_epoch(tuned: dict) -> None:
    trials = {t.number: t for t in tuned["trials"]}
    assert tuned["before_kill"][0] == tuned["before_kill"][1] == "COMPLETE", tuned["before_kill"]
    pruned = trials[2]
    assert pruned.state.name == "PRUNED" and pruned.params["train.learning_rate"] == 1e-6
    assert 2 <= pruned.user_attrs["epochs"] < 4  # the pruner looks from epoch 1 (of 0-3) on
    names = {r["name"] for r in exp_runs(tuned["show"]) if r["name"]}
    assert f"{tuned['name']}-2" not in names  # a pruned trial saves no experiment
    table = tuned["resumed"].stdout
    row = next(line for line in table.splitlines() if line.startswith(f"| {tuned['name']}-2 |"))
    assert "| pruned |" in row and f"| {pruned.user_attrs['epochs']} |" in row  # the epochs it ran
    # What pruning saved, from the pruned trial's own time per epoch.
    assert pruned.user_attrs["max_epochs"] == 4 and pruned.user_attrs["epoch_seconds"] > 0
    assert re.search(r"the 1 pruned ones, run to the end, would have taken [\d.]+ more", table)


def test_killed_driver_resumes_without_repeating_finished_trials(tuned: dict) -> None:
    assert tuned["killed"].returncode == -signal.SIGKILL
    resumed = tuned["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming study" in resumed.stdout
    trials = tuned["trials"]
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 5  # the interrupted trial does not count, and nothing beyond --trials ran
    for number, state in tuned["before_kill"].items():
        if state in ("COMPLETE", "PRUNED"):  # kept as they were, not run again
            assert next(t for t in trials if t.number == number).state.name == state
    interrupted = [t for t in trials if t.state.name == "FAIL"]
    assert interrupted and all("error" not in t.user_attrs for t in interrupted)


def test_completed_trials_are_experiments_with_their_metrics(tuned: dict) -> None:
    runs = {r["name"]: r for r in exp_runs(tuned["show"]) if r["name"]}
    for trial in tuned["trials"]:
        exp = trial.user_attrs["experiment"]  # every trial, the interrupted ones too, has its name
        if trial.state.name == "COMPLETE":
            metrics = runs[exp]["metrics"]["metrics/evaluate.json"]["data"]["test"]
            assert metrics["accuracy"] == trial.user_attrs["test_accuracy"]
            assert runs[exp]["params"]["params.yaml"]["data"]["train"]["learning_rate"] == 0.003
        else:
            assert exp not in runs


def test_an_applied_trial_reproduces_its_metrics_byte_for_byte(tuned: dict) -> None:
    assert tuned["rerun_scores"] == tuned["exp_scores"], tuned["rerun_of"]


def test_best_params_become_a_preset_and_the_study_draws_its_figures(tuned: dict) -> None:
    repo, name = tuned["repo"], tuned["name"]
    preset = (repo / "presets" / f"tuned-{name}.yaml").read_text()
    assert "learning_rate: 0.003" in preset and "epochs: 4" in preset
    for figure in ("history", "curves", "importances"):
        assert (repo / "tune" / f"{name}-{figure}.png").read_bytes()[:4] == b"\x89PNG"


def test_a_trial_bigger_than_every_node_is_named_at_once_and_ctrl_c_ends_the_wait(tuned: dict) -> None:
    bad = tuned["bad_node"]
    assert bad["warning"].startswith(
        "warning: each trial asks for 2 CPUs (--cpus-per-trial) but the largest node has 1"
    )
    assert bad["seconds"] < 60
    assert bad["code"] == 130
    # Ctrl-C leaves the store consistent: no trial left running, the finished ones as they were.
    assert [t.number for t in tuned["trials"] if t.state.name == "RUNNING"] == []
