"""`fmnist sweep`: a grid of DVC experiments run on a Ray cluster, one trial per worker task.

DVC's queue runs on the local machine only. Here Ray schedules the trials and DVC stays in
charge of everything else: each trial clones the repository's git remote at the current
commit, runs `dvc exp run --pull -n NAME -S ...` there and `dvc exp push`es the experiment
to the git remote and the DVC remote. The calling repository then `dvc exp pull`s each
finished trial, so `dvc exp show`, `dvc exp apply` and `dvc plots diff` work as for local
experiments. The workers therefore need both remotes reachable (docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.experiments import cluster
from fmnist_dvc.experiments.dvc_command import dvc_executable
from fmnist_dvc.experiments.presets import flatten, set_args

SHOWN = ("test.accuracy", "test.tta_accuracy", "train.seconds")


@dataclass
class Trial:
    name: str
    overrides: list[str]  # `key=value` strings, one -S each
    result: dict[str, Any] = field(default_factory=dict)


def grid(overrides: list[str]) -> list[list[str]]:
    """Expand DVC's `-S` sweep syntax (`seed=1,2,3`, `range(...)`, `choice(...)`) the way
    `dvc exp run --queue` does: with DVC's own Hydra-based parser."""
    from dvc.exceptions import DvcException
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    try:
        sweeps = get_hydra_sweeps(to_path_overrides(overrides))
    except DvcException as exc:
        raise PipelineError(f"cannot read the -S arguments: {exc}") from None
    except Exception as exc:  # Hydra's parser raises its own OverrideParseException
        raise PipelineError(f"cannot read the -S arguments ({' '.join(str(exc).split())}).") from None
    return [
        [o if path == "params.yaml" else f"{path}:{o}" for path, items in sweep.items() for o in items]
        for sweep in sweeps
    ]


def _git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise PipelineError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def check_repository(root: Path) -> tuple[str, str, str]:
    """The git remote's URL, the commit the trials run and the git remote's name, after
    refusing what the workers could not see: no git remote, uncommitted changes, a commit
    that is not on the remote, or a DVC remote that a clone does not know."""
    remotes = _git("remote", cwd=root).split()
    if not remotes:
        raise PipelineError(
            "this repository has no git remote; the Ray workers clone the code from one "
            "(git remote add origin URL, then git push)."
        )
    remote = "origin" if "origin" in remotes else remotes[0]
    url = _git("remote", "get-url", remote, cwd=root)
    changed = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
    if changed:
        files = [line.split(maxsplit=1)[1] for line in changed.splitlines()]  # 'XY path'
        more = f" and {len(files) - 1} other files" if len(files) > 1 else ""
        raise PipelineError(
            f"uncommitted changes to {files[0]}{more} would not reach the trials, which run the "
            "committed code: commit and push them, or stash them."
        )
    commit = _git("rev-parse", "HEAD", cwd=root)
    if not _git("branch", "-r", "--contains", commit, cwd=root):
        raise PipelineError(
            f"commit {commit[:7]} is not on the git remote '{remote}', where the workers fetch it: "
            "git push it first."
        )
    _check_dvc_remote(root)
    return url, commit, remote


def _check_dvc_remote(root: Path) -> None:
    """The default DVC remote must be in .dvc/config (what a clone gets) and not a relative path,
    which each worker would resolve inside its own scratch clone. Read raw: DVC's own config
    reader makes relative paths absolute."""
    from configobj import ConfigObj  # DVC's own config format and library

    shared = ConfigObj(str(root / ".dvc" / "config"))
    local = ConfigObj(str(root / ".dvc" / "config.local"))
    name = local.get("core", {}).get("remote") or shared.get("core", {}).get("remote")
    if not name:
        raise PipelineError(
            "no default DVC remote: the trials push their outputs to it and this repository pulls "
            "them back (dvc remote add -d NAME URL, committed in .dvc/config)."
        )
    section = shared.get(f'remote "{name}"')
    if section is None:
        raise PipelineError(
            f"DVC remote '{name}' is not in .dvc/config, the only DVC config a clone gets (it is set "
            f"in .dvc/config.local or outside the repository): dvc remote add -d --project {name} URL, "
            "then commit."
        )
    url = section.get("url", "")
    if "://" not in url and not os.path.isabs(url):
        raise PipelineError(
            f"DVC remote '{name}' is the relative path '{url}', which each worker would resolve "
            "inside its own scratch clone: use an absolute shared path or a URL (s3://, ssh://, ...)."
        )


def run_trial(
    git_url: str,
    commit: str,
    name: str,
    overrides: list[str],
    board: Any = None,
    watch: bool = False,
) -> dict[str, Any]:
    """One trial, on whichever node Ray picks: clone, `dvc exp run`, `dvc exp push`. Cancelled
    (KeyboardInterrupt from `ray.cancel`), it stops DVC and its stage, and removes its clone.
    `board` (cluster.Board) hears that it started; with `watch`, also each epoch's validation
    accuracy, and a trial the board prunes is stopped and saves no experiment."""
    # Ray cancels a running task by interrupt_main(), which does nothing where SIGINT is ignored,
    # as on a node started in the background (`ray start ... &` in a script, nohup).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if board is not None:
        board.start.remote(name)
    began = time.monotonic()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the stages' python
    host = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix=f"fmnist-sweep-{name}-") as tmp:
        repo = Path(tmp) / "repo"
        clone = _run(["git", "clone", "--quiet", git_url, str(repo)], Path(tmp), env)
        if clone.returncode:
            return {"ok": False, "host": host, "error": _last_line(clone.stderr, "git clone failed")}
        _run(["git", "checkout", "--quiet", commit], repo, env)
        dvc = dvc_executable(env["PATH"])  # beside this Python first, as the stages' python
        set_flags = [arg for o in overrides for arg in ("-S", o)]
        epochs = EpochWatch(repo, name, board) if watch else None
        done = _run([dvc, "exp", "run", "--pull", "-n", name, *set_flags], repo, env, epochs)
        timing = {"seconds": time.monotonic() - began}
        if epochs is not None:
            epochs.poll(final=not epochs.pruned)  # a finished stage's dvclive logs hold every epoch
            timing.update(epochs=epochs.values, epoch_seconds=epochs.epoch_seconds())
        if epochs is not None and epochs.pruned:
            return {"ok": False, "pruned": True, "host": host, **timing}
        if done.returncode:
            return {
                "ok": False,
                "host": host,
                "error": _last_line(done.stderr + done.stdout, "dvc exp run failed"),
            }
        pushed = _run([dvc, "exp", "push", "--run-cache", "origin", name], repo, env)
        if pushed.returncode:
            return {"ok": False, "host": host, "error": _last_line(pushed.stderr, "dvc exp push failed")}
        shown = _run([dvc, "metrics", "show", "--json"], repo, env)
        return {"ok": True, "host": host, "metrics": _flat_metrics(shown.stdout), **timing}


class EpochWatch:
    """Reads a running trial's validation accuracy per epoch, as the train stage's resume
    snapshot holds it after each epoch (then its dvclive logs, once the stage has ended), and
    posts each new epoch to the board, which answers whether the trial is pruned."""

    SNAPSHOT = "build/train-resume/live/plots/metrics/eval/accuracy.tsv"  # dvc.yaml's paths.resume
    FINAL = "metrics/train/plots/metrics/eval/accuracy.tsv"  # dvc.yaml's paths.live

    def __init__(self, repo: Path, name: str, board: Any) -> None:
        self.repo, self.name, self.board = repo, name, board
        self.values: list[float] = []
        self.seen: list[float] = []  # seconds from the start of the watch to each epoch's sighting
        self.start = time.monotonic()
        self.pruned = False

    def epoch_seconds(self) -> float | None:
        """The trial's own time per epoch: the median gap between epochs seen while it trained."""
        gaps = sorted(b - a for a, b in zip(self.seen, self.seen[1:], strict=False))
        return gaps[len(gaps) // 2] if gaps else None

    def poll(self, final: bool = False) -> bool:
        """Post the epochs not posted yet; True if the trial is to stop."""
        try:
            rows = (self.repo / (self.FINAL if final else self.SNAPSHOT)).read_text().splitlines()[1:]
        except OSError:  # no epoch finished yet, or a snapshot being replaced
            return False
        import ray

        new = rows[len(self.values) :]
        for row in new:
            value = float(row.split("\t")[-1])
            self.values.append(value)
            if not final:  # the dvclive logs at the end come all at once
                self.seen.append(time.monotonic() - self.start)
            stop = ray.get(self.board.report.remote(self.name, len(self.values) - 1, value))
        if not new:  # the driver may have decided since the last epoch
            stop = ray.get(self.board.pruned.remote(self.name))
        self.pruned = stop and not final
        return self.pruned


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str], watch: EpochWatch | None = None
) -> subprocess.CompletedProcess[str]:
    """A command in a process group of its own, so that an interrupted (or pruned) trial also
    stops the stage that DVC started (killing DVC alone would leave its stage running). Its
    output goes to files, which never fill up and block it while `watch` polls."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True, start_new_session=True
        )
        try:
            while proc.poll() is None:
                if watch is not None and watch.poll():
                    os.killpg(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def _last_line(text: str, fallback: str) -> str:
    """The line that says what went wrong: our stages' own `error: ...` (it names the file or
    key), else DVC's `ERROR: ...`, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for prefix in ("error:", "ERROR:"):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[-1]
    return lines[-1] if lines else fallback


def _flat_metrics(show_json: str) -> dict[str, float]:
    """`dvc metrics show --json` as {"test.accuracy": 0.93, ...} over every metrics file."""
    try:
        data = json.loads(show_json)
    except json.JSONDecodeError:
        return {}
    flat: dict[str, float] = {}
    for rev in data.values():
        for metrics in (rev.get("data") or {}).values():
            values = flatten(metrics.get("data") or {})
            flat.update({k: v for k, v in values.items() if isinstance(v, (int, float))})
    return flat


def sweep(
    overrides: list[str],
    preset: Path | None = None,
    address: str | None = None,
    cpus_per_trial: float = 2,
    prefix: str | None = None,
    root: Path = Path("."),
) -> int:
    """Run the grid on Ray, pull every finished trial back, print them by test accuracy."""
    git_url, commit, remote = check_repository(root)
    fixed = [a for a in set_args(preset) if a != "-S"] if preset else []
    prefix = prefix or time.strftime("sweep-%m%d-%H%M%S")
    trials = [Trial(f"{prefix}-{i + 1}", fixed + g) for i, g in enumerate(grid(overrides))]
    if not trials:
        raise PipelineError("the -S arguments make no trial; give at least one, e.g. -S 'seed=1,2'.")
    _run_on_ray(trials, git_url, commit, address, cpus_per_trial)
    failed = [t for t in trials if not t.result.get("ok")]
    for t in trials:
        if t.result.get("ok"):
            pulled = subprocess.run(
                [dvc_executable(), "exp", "pull", remote, t.name], cwd=root, capture_output=True, text=True
            )
            if pulled.returncode:
                t.result = {"ok": False, "error": _last_line(pulled.stderr, "dvc exp pull failed")}
                failed.append(t)
    print(table(trials))
    if failed:
        print(f"fmnist sweep: {len(failed)} of {len(trials)} trials failed", file=sys.stderr)
    return 1 if failed else 0


def _run_on_ray(trials: list[Trial], git_url: str, commit: str, address: str | None, cpus: float) -> None:
    from tqdm import tqdm

    ray = cluster.connect(address)
    task, board = cluster.trial_task(ray, run_trial, cpus)
    pending = {task.remote(git_url, commit, t.name, t.overrides, board): t for t in trials}
    bar = cluster.progress_bar(len(trials))
    failed = 0
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=5)
            for ref in done:
                trial = pending.pop(ref)
                try:
                    trial.result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    trial.result = {"ok": False, "error": _last_line(str(exc), type(exc).__name__)}
                if trial.result.get("ok"):
                    acc = trial.result["metrics"].get("test.accuracy")
                    tqdm.write(
                        f"{trial.name}: test accuracy {acc} on {trial.result['host']} "
                        f"({' '.join(trial.overrides)})",
                        file=sys.stderr,
                    )
                else:
                    failed += 1
                    tqdm.write(f"{trial.name}: failed: {trial.result['error']}", file=sys.stderr)
                bar.update(1)
            started, _ = ray.get(board.read.remote())
            bar.set_postfix(cluster.progress(started, [t.name for t in pending.values()], failed=failed))
    except KeyboardInterrupt:
        bar.close()
        cluster.cancel(ray, list(pending), "sweep")
        raise
    finally:
        bar.close()
        ray.shutdown()


def table(trials: list[Trial]) -> str:
    """Markdown rows, best test accuracy first; a failed trial last with its error."""
    varying = _varying_keys(trials)
    head = ["trial", *varying, *SHOWN]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def key(t: Trial) -> float:
        return -t.result.get("metrics", {}).get("test.accuracy", -1.0) if t.result.get("ok") else 2.0

    for t in sorted(trials, key=key):
        values = dict(o.split("=", 1) for o in t.overrides)
        cells = [t.name, *(values.get(k, "") for k in varying)]
        if t.result.get("ok"):
            cells += [_fmt(t.result["metrics"].get(m)) for m in SHOWN]
        else:
            cells += [f"failed: {t.result.get('error', 'not run')}", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _varying_keys(trials: list[Trial]) -> list[str]:
    seen: dict[str, set[str]] = {}
    for t in trials:
        for o in t.overrides:
            k, _, v = o.partition("=")
            seen.setdefault(k, set()).add(v)
    return [k for k, values in seen.items() if len(values) > 1]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) and value < 10 else str(value)
