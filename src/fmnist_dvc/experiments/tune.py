"""`fmnist tune`: a hyperparameter search that learns from finished trials and stops bad ones
early, each trial a DVC experiment.

Optuna holds the study (TPE sampler, pruner, storage: an SQLite file in tune/ by default, or
any URL Optuna takes, such as PostgreSQL). Ray runs the trials exactly as `fmnist sweep` runs
its grid: in a clone, `dvc exp run`, pushed to the remotes and pulled back here. While a trial
trains, its validation accuracy after each epoch goes to the study, and a trial the pruner
stops saves no experiment, so every experiment's params reproduce its metrics. Running the
same command again resumes the study: finished trials are kept, not run again.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist_dvc.core.atomic import atomic_write_text
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.params import load_seed, read_params
from fmnist_dvc.experiments import cluster
from fmnist_dvc.experiments.dvc_command import dvc_executable
from fmnist_dvc.experiments.presets import compact, flatten, set_args
from fmnist_dvc.experiments.sweep import _last_line, check_repository, run_trial

OUT = Path("tune")
STORAGE = f"sqlite:///{OUT}/optuna.db"
OBJECTIVES = ("best_val_accuracy", "last_val_accuracy")
PRUNERS = ("median", "halving", "hyperband", "none")


@dataclass
class Space:
    fixed: list[str]  # key=value for every trial, -S form
    distributions: dict[str, Any]  # key -> optuna distribution
    as_text: set[str]  # keys whose choices are lists, held as their -S text (Optuna's are scalars)

    def overrides(self, params: dict[str, Any]) -> list[str]:
        return self.fixed + [
            f"{key}={value if key in self.as_text else compact(value)}" for key, value in params.items()
        ]


def interrupted(trial: Any) -> bool:
    """Cut short by Ctrl-C or a driver that died, not by its own fault: it runs again."""
    return trial.state.name == "FAIL" and "error" not in trial.user_attrs


def parse_space(overrides: list[str], keys: list[str]) -> Space:
    """`-S` arguments read by Hydra's own parser, its sweep functions turned into Optuna
    distributions as Hydra's Optuna sweeper does; plain values are fixed. One line per fault."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # Hydra's OverrideParseException
        first = " ".join(str(exc).split("\n")[0].split())
        raise PipelineError(f"cannot read the -S arguments ({first}); see docs/scaling.md#tuning.") from None
    fixed, distributions, as_text = [], {}, set()
    for item in parsed:
        key = item.key_or_group
        if key not in keys:
            near = difflib.get_close_matches(key, keys, n=1)
            raise PipelineError(
                f"-S {key}: not a key of params.yaml{f'; did you mean {near[0]}?' if near else '.'}"
            )
        if item.is_sweep_override():
            distributions[key] = _distribution(key, item)
            if any(isinstance(c, str) and c[:1] == "[" for c in getattr(distributions[key], "choices", ())):
                as_text.add(key)
        else:
            fixed.append(f"{key}={compact(item.value())}")
    if not distributions:
        raise PipelineError(
            "the -S arguments search nothing; give at least one range, e.g. "
            "-S 'train.learning_rate=tag(log, interval(0.0003, 0.01))'."
        )
    return Space(fixed, distributions, as_text)


def _distribution(key: str, item: Any) -> Any:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = item.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(item.sweep_iterator())
        if not choices:
            raise PipelineError(f"-S {key}: the choice is empty; give at least two values.")
        if any(isinstance(c, list) for c in choices):  # e.g. train.cnn.blocks: Optuna's choices are scalars
            return CategoricalDistribution([compact(c) for c in choices])
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        values = list(item.sweep_iterator())
        if not values:
            raise PipelineError(f"-S {key}: the range holds no value; check start, stop and step.")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(value.step))
        return FloatDistribution(values[0], values[-1], step=float(value.step))
    if isinstance(value, IntervalSweep):
        low, high, log = value.start, value.end, "log" in value.tags
        if not low < high:
            raise PipelineError(
                f"-S {key}: interval({low}, {high}) is empty; the start must be below the end."
            )
        if log and low <= 0:
            raise PipelineError(f"-S {key}: a log interval must start above 0 (got {low}).")
        return FloatDistribution(low, high, log=log)
    raise PipelineError(
        f"-S {key}: {type(value).__name__} is not a search space; use choice, range or interval."
    )


def default_name(overrides: list[str], preset: Path | None) -> str:
    """The same command gives the same study name, so that running it again resumes it."""
    text = "\n".join([*overrides, preset.read_text() if preset else ""])
    return "tune-" + hashlib.sha256(text.encode()).hexdigest()[:6]


def tune(
    overrides: list[str],
    preset: Path | None = None,
    trials: int = 20,
    address: str | None = None,
    cpus_per_trial: float = 2,
    name: str | None = None,
    objective: str = "best_val_accuracy",
    storage: str | None = None,
    pruner: str = "median",
    root: Path = Path("."),
) -> int:
    """Run (or resume) the study, pull every completed trial here, print the best, write the
    best params as presets/tuned-NAME.yaml and the study's figures to tune/."""
    params = read_params(root / "params.yaml")
    keys = list(flatten(params))
    base = [a for a in set_args(preset) if a != "-S"] if preset else []
    space = parse_space(base + list(overrides), keys)  # -S after the preset wins, as in dvc exp run
    git_url, commit, remote = check_repository(root)
    name = name or default_name(list(overrides), preset)
    study = _study(name, storage or STORAGE, pruner, load_seed(root / "params.yaml"), trials, root)
    driver = Driver(study, space, objective, remote, root, default_epochs=params["train"]["epochs"])
    driver.run(trials, git_url, commit, address, cpus_per_trial)
    print(table(study))
    print(compute(study, cpus_per_trial))
    _write_results(study, space, name, root)
    failed = [t for t in study.trials if t.state.name == "FAIL" and not interrupted(t)]
    return 1 if failed else 0


def _study(name: str, storage: str, pruner: str, seed: int, trials: int, root: Path) -> Any:
    try:
        import optuna
    except ImportError:
        raise PipelineError("Optuna is not installed: pip install -e '.[ray]' (make setup does).") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        (root / storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    pruners = {
        # Stop a trial whose accuracy after an epoch (the second on) is below the median of the
        # completed trials' after the same epoch; the bar is set by 1 to 3 of them, by study size.
        "median": optuna.pruners.MedianPruner(n_startup_trials=max(1, min(3, trials // 8)), n_warmup_steps=1),
        "halving": optuna.pruners.SuccessiveHalvingPruner(),
        "hyperband": optuna.pruners.HyperbandPruner(),
        "none": optuna.pruners.NopPruner(),
    }
    # TPE learns from the finished trials once a few random ones have spread out.
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 3)))
    try:
        return optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            sampler=sampler,
            pruner=pruners[pruner],
            load_if_exists=True,
        )
    except Exception as exc:  # SQLAlchemy's and Optuna's own errors for a store it cannot use
        raise PipelineError(f"cannot open the study store {storage} ({type(exc).__name__}: {exc}).") from None


class Driver:
    """Asks Optuna for trials, runs each on Ray, passes their epochs to the pruner and tells
    Optuna how each ended; a completed trial is pulled into this repository first."""

    def __init__(
        self, study: Any, space: Space, objective: str, remote: str, root: Path, default_epochs: int
    ) -> None:
        self.study, self.space, self.objective, self.remote, self.root = study, space, objective, remote, root
        self.default_epochs = default_epochs  # params.yaml's train.epochs, for trials that do not set it
        self.live: dict[str, Any] = {}  # experiment name -> optuna trial, while it runs

    def run(self, trials: int, git_url: str, commit: str, address: str | None, cpus: float) -> None:
        from tqdm import tqdm

        for stale in self.study.get_trials(deepcopy=False, states=(self._state("RUNNING"),)):
            if not _driver_alive(stale.user_attrs.get("driver", "")):
                self.study.tell(stale.number, state=self._state("FAIL"))  # its driver died: run it again
        finished = sum(not interrupted(t) for t in self.study.trials)
        todo = max(0, trials - finished)
        if finished:
            print(f"fmnist tune: resuming study {self.study.study_name}: {finished} of {trials} trials done")
        if not todo:
            return
        ray = cluster.connect(address)
        task, board = cluster.trial_task(ray, run_trial, cpus)
        slots = max(1, int(sum(cluster.node_cpus(ray)) // cpus))
        pending: dict[Any, str] = {}
        bar = cluster.progress_bar(trials, finished)
        try:
            while todo or pending:
                while todo and len(pending) < slots:
                    exp = self._ask()
                    overrides = self.space.overrides(self.live[exp].params)
                    pending[task.remote(git_url, commit, exp, overrides, board, True)] = exp
                    todo -= 1
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1)
                started, reports = ray.get(board.read.remote())
                for exp, epoch, value in reports:
                    self._report(board, exp, epoch, value)
                for ref in done:
                    exp = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        result = {"ok": False, "error": _last_line(str(exc), type(exc).__name__)}
                    tqdm.write(self._finish(self.live.pop(exp), result), file=sys.stderr)
                    bar.update(1)
                states = [t.state.name for t in self.study.trials if not interrupted(t)]
                bar.set_postfix(
                    cluster.progress(
                        started,
                        list(pending.values()),
                        pruned=states.count("PRUNED"),
                        failed=states.count("FAIL"),
                    )
                )
        except KeyboardInterrupt:
            bar.close()
            cluster.cancel(ray, list(pending), "tune")
            for trial in self.live.values():
                self.study.tell(trial, state=self._state("FAIL"))  # no error: it runs again
            raise
        finally:
            bar.close()
            ray.shutdown()

    def _ask(self) -> str:
        """A new trial from the sampler; its experiment's name. Ctrl-C waits until the trial is
        registered here, so that it is cancelled with the others, not left running in the store."""
        with _ctrl_c_deferred():
            trial = self.study.ask(self.space.distributions)
            exp = f"{self.study.study_name}-{trial.number}"
            self.live[exp] = trial
            trial.set_user_attr("driver", f"{socket.gethostname()}:{os.getpid()}")
            trial.set_user_attr("experiment", exp)
        given = [
            o.split("=", 1)[1] for o in self.space.overrides(trial.params) if o.startswith("train.epochs=")
        ]
        epochs = int(given[-1]) if given else self.default_epochs
        trial.set_user_attr("max_epochs", epochs)  # what a pruned trial would have run
        return exp

    def _report(self, board: Any, exp: str, epoch: int, value: float) -> None:
        trial = self.live.get(exp)
        if trial is None or epoch in trial.user_attrs.get("reported", []):
            return  # a trial retried after its node was lost reports its epochs again
        trial.set_user_attr("reported", [*trial.user_attrs.get("reported", []), epoch])
        trial.report(value, epoch)
        if trial.should_prune():
            board.prune.remote(exp)

    def _finish(self, trial: Any, result: dict[str, Any]) -> str:
        """Tell Optuna how the trial ended; the line to print."""
        exp = trial.user_attrs["experiment"]
        epochs = result.get("epochs") or []
        trial.set_user_attr("epochs", len(epochs))
        for key in ("seconds", "epoch_seconds"):  # the compute the study took, and what pruning saved
            if result.get(key) is not None:
                trial.set_user_attr(key, round(result[key], 1))
        if epochs:
            trial.set_user_attr("last_val_accuracy", epochs[-1])
        if result.get("pruned"):
            self.study.tell(trial, state=self._state("PRUNED"))
            return f"{exp}: pruned after epoch {len(epochs) - 1} (validation accuracy {epochs[-1]:.4f})"
        if result.get("ok"):
            pulled = subprocess.run(
                [dvc_executable(), "exp", "pull", self.remote, exp],
                cwd=self.root,
                capture_output=True,
                text=True,
            )
            if pulled.returncode:
                result = {"ok": False, "error": _last_line(pulled.stderr, "dvc exp pull failed")}
        if not result.get("ok") or not epochs:
            trial.set_user_attr("error", result.get("error", "the trial logged no epoch"))
            self.study.tell(trial, state=self._state("FAIL"))
            return f"{exp}: failed: {trial.user_attrs['error']}"
        value = max(epochs) if self.objective == "best_val_accuracy" else epochs[-1]
        trial.set_user_attr("test_accuracy", result["metrics"].get("test.accuracy"))
        self.study.tell(trial, value)
        return (
            f"{exp}: {self.objective} {value:.4f} ({' '.join(f'{k}={v}' for k, v in trial.params.items())})"
        )

    @staticmethod
    def _state(name: str) -> Any:
        from optuna.trial import TrialState

        return TrialState[name]


def table(study: Any) -> str:
    """Markdown rows: completed trials best first, then pruned (with the epoch they reached and
    their last validation accuracy), then failed (with their error)."""
    trials = [t for t in study.trials if not interrupted(t)]
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    head = ["trial", "state", *keys, "objective", "epochs", "last val acc", "test acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}
    for t in sorted(trials, key=lambda t: (order.get(t.state.name, 3), -(t.value or 0))):
        attrs = t.user_attrs
        state = t.state.name.lower() if "error" not in attrs else f"failed: {attrs['error']}"
        cells = [attrs.get("experiment", str(t.number)), state, *(str(t.params.get(k, "")) for k in keys)]
        cells += [
            _fmt(t.value),
            str(attrs.get("epochs", "")),
            _fmt(attrs.get("last_val_accuracy")),
            _fmt(attrs.get("test_accuracy")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Ctrl-C inside the block takes effect at its end (main thread only, as signal handlers)."""
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _driver_alive(driver: str) -> bool:
    """Whether the driver process that runs a trial (HOST:PID) is still running. One on another
    host may be: its trial is left alone. No driver recorded: it died before it could say."""
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname():
        return bool(host)
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process of that id
        return True
    return True


def compute(study: Any, cpus: float) -> str:
    """CPU-minutes the study's trials took, and what running the pruned ones to the end would
    have added, from each pruned trial's own time per epoch."""
    trials = [t for t in study.trials if not interrupted(t) and "seconds" in t.user_attrs]
    spent = sum(t.user_attrs["seconds"] for t in trials) * cpus / 60
    pruned = [t for t in trials if t.state.name == "PRUNED" and t.user_attrs.get("epoch_seconds")]
    rest = sum(
        (t.user_attrs["max_epochs"] - t.user_attrs["epochs"]) * t.user_attrs["epoch_seconds"] for t in pruned
    )
    saved = rest * cpus / 60
    if not spent:
        return "fmnist tune: no trial ran"
    return (
        f"fmnist tune: {len(trials)} trials took {spent:.1f} CPU-minutes; the {len(pruned)} pruned ones, run "
        f"to the end, would have taken {saved:.1f} more ({saved / (spent + saved):.0%} saved by pruning)"
    )


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _write_results(study: Any, space: Space, name: str, root: Path) -> None:
    """The best params as a preset; the optimisation history, every trial's validation curve
    and the parameter importances as figures."""
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        print("fmnist tune: no trial completed; no preset or figures written", file=sys.stderr)
        return
    from ruamel.yaml import YAML

    best = study.best_trial
    tree: dict[str, Any] = {}
    for override in space.overrides(best.params):
        key, _, text = override.partition("=")
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = YAML(typ="safe").load(text)
    preset = root / "presets" / f"tuned-{name}.yaml"
    where = preset.relative_to(root)
    header = (
        f"# The best trial of study {name} ({best.user_attrs['experiment']}, validation accuracy "
        f"{best.value:.4f}).\n# python -m fmnist_dvc.experiments.presets run {where} -S seed=1,2,3 --queue\n"
    )
    atomic_write_text(preset, header + _yaml(tree))
    print(f"fmnist tune: best params written to {where}")
    _figures(study, root / OUT / name, len(complete))


def _yaml(tree: dict[str, Any]) -> str:
    import io

    from ruamel.yaml import YAML

    writer = YAML(typ="safe")
    writer.default_flow_style = None
    buffer = io.StringIO()
    writer.dump(tree, buffer)
    return buffer.getvalue()


def _figures(study: Any, prefix: Path, complete: int) -> None:
    from optuna.visualization import matplotlib as plots

    from fmnist_dvc.core.figures import save_png

    # Each trial's validation accuracy per epoch, pruned ones included: where the pruner cut.
    figures = [("history", plots.plot_optimization_history), ("curves", plots.plot_intermediate_values)]
    if complete >= 2:
        figures.append(("importances", plots.plot_param_importances))
    for label, draw in figures:
        try:
            with warnings.catch_warnings():  # "experimental" since Optuna 2.2; ours to follow, not the user's
                warnings.simplefilter("ignore")
                axes = draw(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances of a parameter that never varied
            print(f"fmnist tune: no {label} figure ({exc})", file=sys.stderr)
            continue
        path = Path(f"{prefix}-{label}.png")
        save_png(axes.get_figure(), path)
        print(f"fmnist tune: wrote {path}")
