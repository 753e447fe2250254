"""`fmnist sweep` on a real Ray cluster: a head and a worker node, each with its own raylet
process (Ray's own `ray.cluster_utils.Cluster`), on 127.0.0.1 only; a bare git repository as
the git remote and moto's S3 server as the DVC remote. Each trial is a real `dvc exp run` of
the real pipeline on a small real subset.

One module-scoped fixture runs the sweeps in order and records what they printed; the tests
check the records. Ray stops every process of the cluster by its id (remove_node, shutdown).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.dvcrepo import BIN, dvc, exp_runs, new_project, run, set_params
from tests.helpers import require
from tests.s3 import BUCKET, GOOD_KEYS, aws_env, s3_client

pytestmark = pytest.mark.slow


def ray_env() -> dict[str, str]:
    return {
        "RAY_AUTH_MODE": "disabled",  # loopback only; a real cluster would use Ray's token
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's switch for clusters on one machine: node addresses (and every server's bind
        # address) stay 127.0.0.1 instead of the machine's network address.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # Notice a killed node within seconds (Ray's default waits about half a minute).
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
        "RAY_health_check_initial_delay_ms": "1000",
    }


def listening_addresses() -> set[str]:
    """host:port of every TCP socket that a process started by this test process listens on
    (the Ray cluster's servers; other tests' servers may run beside it)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {
        line.split()[3]
        for line in out.splitlines()
        if any(started_by_us(int(pid)) for pid in re.findall(r"pid=(\d+)", line))
    }


def started_by_us(pid: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the parent
        except (OSError, ValueError, IndexError):
            return False
        if pid == os.getpid():
            return True
    return False


def start_sweep(repo: Path, *args: str) -> subprocess.Popen[str]:
    return start_fmnist(repo, "sweep", *args)


def start_fmnist(repo: Path, *args: str) -> subprocess.Popen[str]:
    """`fmnist ARGS` as a terminal's foreground job: pytest-xdist's workers ignore SIGINT, and a
    child started with SIGINT ignored (Python then installs no KeyboardInterrupt) keeps that."""
    return subprocess.Popen(
        [str(BIN / "fmnist"), *args],
        cwd=repo,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def sweep(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return finish(start_sweep(repo, *args))


def exp_file(repo: Path, name: str, path: str) -> bytes:
    """A git-tracked file as the experiment NAME committed it."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    ref = next(r for r in refs if r.endswith(f"/{name}"))
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True, check=True).stdout


def trial_processes(prefix: str) -> list[str]:
    """Command lines of the processes working inside the trials' scratch clones /tmp/PREFIX*."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd").startswith(f"/tmp/{prefix}"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def interrupt_a_sweep(repo: Path, address: str, name: str) -> dict:
    """Ctrl-C on the driver while a trial trains and another waits; what was left behind."""
    before = (exp_refs(repo), run(["git", "status", "--porcelain"], repo).stdout)
    proc = start_sweep(
        repo, "-S", "seed=3,4", "-S", "train.epochs=1000", "-S", "train.patience=1000",
        "--address", address, "--cpus-per-trial", "1", "--name", name,
    )  # fmt: skip
    prefix = f"fmnist-sweep-{name}-"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any("stages/train.py" in cmd for cmd in trial_processes(prefix)):
            break  # one trial trains; the other waits for a CPU (the worker node was removed)
        time.sleep(0.5)
    running = trial_processes(prefix)
    proc.send_signal(signal.SIGINT)
    start = time.time()
    done = finish(proc, timeout=300)
    seconds = time.time() - start
    time.sleep(2)
    return {
        "running": running,
        "proc": done,
        "seconds": seconds,
        "left_processes": trial_processes(prefix),
        "left_clones": glob.glob(f"/tmp/{prefix}*"),
        "repo": before == (exp_refs(repo), run(["git", "status", "--porcelain"], repo).stdout),
    }


def exp_refs(repo: Path) -> list[str]:
    return run(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"], repo).stdout.split()


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, debian_dir: Path, s3_endpoint: str) -> Iterator[dict]:
    """Refusals, then on a two-node cluster: a grid with one invalid value whose worker node is
    killed mid-trial, and a grid interrupted by Ctrl-C; then the experiment whose trial was
    killed and retried, run locally by `dvc exp run`."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "empty").write_text("")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ray_env().items():
            mp.setenv(key, value)  # before Ray is imported: it reads them once
        for key, value in aws_env(s3_endpoint, GOOD_KEYS, root / "empty").items():
            mp.setenv(key, value)  # the driver, the nodes and their trials inherit them
        mp.setenv("GIT_AUTHOR_NAME", "test")
        mp.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
        mp.setenv("GIT_COMMITTER_NAME", "test")
        mp.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
        try:
            from ray.cluster_utils import Cluster
        except ImportError:
            require("ray is missing: run pip install -e '.[dev]'")
        yield _sweeps(root, Cluster, s3_endpoint)


def _sweeps(root: Path, cluster_class: type, s3_endpoint: str) -> dict:
    record: dict = {"root": root, "s3": s3_endpoint}
    origin, repo = root / "origin.git", root / "repo"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    new_project(repo)
    set_params(repo, {"preprocess.train_limit": 1000, "train.epochs": 1, "train.batch_size": 64})
    run(["git", "init", "-q", "-b", "main"], repo)
    dvc("remote", "add", "-d", "s3", f"s3://{BUCKET}/sweep", cwd=repo)  # moto's, empty
    run(["git", "remote", "add", "origin", str(origin)], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "small runs"], repo)
    run(["git", "push", "-q", "origin", "main"], repo)
    record["repo"] = repo

    # Refusals first: they need no cluster.
    other = root / "other"
    run(["git", "clone", "-q", str(origin), str(other)], root)
    (other / "params.yaml").write_text((other / "params.yaml").read_text() + "\n")
    record["dirty"] = sweep(other, "-S", "seed=1,2")
    run(["git", "checkout", "-q", "params.yaml"], other)
    dvc("remote", "add", "-d", "--local", "mine", str(root / "mine"), cwd=other)
    record["local_only_remote"] = sweep(other, "-S", "seed=1,2")
    dvc("remote", "remove", "--local", "mine", cwd=other)
    dvc("remote", "default", "local", cwd=other)  # the project's own: ../../fmnist-dvc-storage
    run(["git", "commit", "-qam", "relative remote"], other)
    record["unpushed_commit"] = sweep(other, "-S", "seed=1,2")
    run(["git", "push", "-q", "origin", "HEAD:relative"], other)
    run(["git", "fetch", "-q", "origin"], other)
    record["relative_remote"] = sweep(other, "-S", "seed=1,2")
    run(["git", "remote", "remove", "origin"], other)
    record["no_remote"] = sweep(other, "-S", "seed=1,2")

    # A head and a worker node, each a raylet process of its own, on 127.0.0.1.
    grid = f"g{os.getpid()}"  # the trials' scratch clones are /tmp/fmnist-sweep-<name>-*
    cluster = cluster_class(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        record["listening"] = listening_addresses()
        address = cluster.address
        # Two valid trials and an invalid seed (-1), which fails in preprocess.
        proc = start_sweep(
            repo, "-S", "seed=1,2,-1", "--address", address, "--cpus-per-trial", "1", "--name", grid
        )
        record["killed_worker"] = False
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if all(glob.glob(f"/tmp/fmnist-sweep-{grid}-{i}-*") for i in (1, 2)):  # both nodes busy
                time.sleep(3)
                cluster.remove_node(worker, allow_graceful=False)  # kills its processes by id
                record["killed_worker"] = True
                break
            time.sleep(0.5)
        record["grid"] = finish(proc)
        record["grid_name"] = grid
        # The killed trial's clone stays behind (its process died with the node): its number
        # is its seed. It is run locally below, for comparison.
        left = record["grid_clones"] = glob.glob(f"/tmp/fmnist-sweep-{grid}-*")
        killed = re.findall(rf"fmnist-sweep-{grid}-(\d+)-", " ".join(left))
        seed = record["killed_seed"] = int(killed[0]) if len(killed) == 1 else 1  # the test says if not
        record["grid_show"] = json.loads(dvc("exp", "show", "--json", cwd=repo).stdout)
        record["ctrl_c"] = interrupt_a_sweep(repo, address, f"c{os.getpid()}")
    finally:
        cluster.shutdown()
        for leftover in glob.glob(f"/tmp/fmnist-sweep-{grid}-*"):  # the killed trial's clone
            shutil.rmtree(leftover, ignore_errors=True)

    dvc("exp", "run", "-n", "local", "-S", f"seed={seed}", cwd=repo)
    return record


def test_the_cluster_listens_on_loopback_only(swept: dict) -> None:
    ray_ports = swept["listening"]
    assert len(ray_ports) >= 3 and all("127.0.0.1" in a for a in ray_ports), sorted(ray_ports)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("dirty", "uncommitted changes to params.yaml would not reach the trials"),
        ("local_only_remote", "DVC remote 'mine' is not in .dvc/config, the only DVC config a clone gets"),
        ("unpushed_commit", "is not on the git remote 'origin', where the workers fetch it"),
        ("relative_remote", "DVC remote 'local' is the relative path '../../fmnist-dvc-storage'"),
        ("no_remote", "this repository has no git remote"),
    ],
)
def test_refuses_what_the_workers_could_not_see_with_one_line(swept: dict, case: str, message: str) -> None:
    proc = swept[case]
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]


def test_grid_survives_a_killed_worker_and_matches_local_runs_byte_for_byte(swept: dict) -> None:
    grid = swept["grid"]
    assert swept["killed_worker"], "the worker node was never busy with a trial"
    assert grid.returncode == 1 and "1 of 3 trials failed" in grid.stderr, grid.stderr[-3000:]  # seed -1
    repo = swept["repo"]
    grid_name = swept["grid_name"]
    left = swept["grid_clones"]
    assert len(left) == 1, f"the killed trial should have left its clone, and only it: {left}"
    scores = {seed: exp_file(repo, f"{grid_name}-{seed}", "metrics/evaluate.json") for seed in (1, 2)}
    assert scores[swept["killed_seed"]] == exp_file(repo, "local", "metrics/evaluate.json")
    assert scores[1] != scores[2]  # the seed reached each trial
    table = [line for line in grid.stdout.splitlines() if line.startswith(f"| {grid_name}-")]
    assert len(table) == 3 and "| failed: error: params.yaml: seed" in table[2]  # the failed one last
    accuracies = [float(line.split("|")[3]) for line in table[:2]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert "trials" in grid.stderr  # the progress bar


def test_exp_show_lists_every_trial_with_its_params(swept: dict) -> None:
    grid_name = swept["grid_name"]
    names = {r["name"]: r for r in exp_runs(swept["grid_show"]) if r["name"]}
    for seed in (1, 2):
        assert names[f"{grid_name}-{seed}"]["params"]["params.yaml"]["data"]["seed"] == seed, sorted(names)
    assert f"{grid_name}-3" not in names  # the failed trial pushed nothing


def test_a_bad_value_fails_its_trial_alone_with_one_line(swept: dict) -> None:
    stderr = swept["grid"].stderr
    failed = [line for line in stderr.splitlines() if f"{swept['grid_name']}-3: failed:" in line]
    assert len(failed) == 1 and "seed should be greater than or equal to 0" in failed[0], stderr[-3000:]


def test_each_trials_model_is_stored_on_the_s3_remote(swept: dict) -> None:
    s3 = s3_client(swept["s3"])
    for seed in (1, 2):
        lock = yaml.safe_load(exp_file(swept["repo"], f"{swept['grid_name']}-{seed}", "dvc.lock"))
        models = next(o for o in lock["stages"]["train"]["outs"] if o["path"] == "models")["md5"]
        listing = s3.get_object(Bucket=BUCKET, Key=f"sweep/files/md5/{models[:2]}/{models[2:]}")[
            "Body"
        ].read()
        for entry in json.loads(listing):  # the directory's files, by their own md5
            s3.head_object(Bucket=BUCKET, Key=f"sweep/files/md5/{entry['md5'][:2]}/{entry['md5'][2:]}")
        assert [e["relpath"] for e in json.loads(listing)] == ["model.keras"]


def test_ctrl_c_stops_every_trial_and_leaves_the_repository_as_it_was(swept: dict) -> None:
    ctrl_c = swept["ctrl_c"]
    assert any("stages/train.py" in cmd for cmd in ctrl_c["running"]), ctrl_c["running"]
    proc = ctrl_c["proc"]
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "interrupted" in proc.stderr
    assert ctrl_c["left_processes"] == [] and ctrl_c["left_clones"] == []
    assert ctrl_c["repo"], "the calling repository changed"
