"""Resume a killed training run from its last finished epoch, ending as if it was never stopped.

After every epoch a snapshot replaces the previous one atomically: every model and optimizer
variable (dropout's random-generator state included, which Keras' own weight files leave out),
EarlyStopping's state and best weights, and dvclive's logs so far. The snapshot carries a
fingerprint of everything that shapes the run (params, seed, prepared data, the code training
runs, library versions); a snapshot from any other run is ignored, never half-applied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fmnist_dvc.core.atomic import atomic_dir
from fmnist_dvc.train.params import TrainParams

STATE = "state.json"
VARIABLES = "variables.npz"
BEST = "best_weights.npz"
LIVE = "live"
_SOURCES = Path(__file__).parents[1]  # src/fmnist_dvc
_EARLY_STOPPING_FIELDS = ("wait", "stopped_epoch", "best", "best_epoch")


def fingerprint(params: TrainParams, seed: int, data_dir: Path) -> str:
    """A digest of every input that shapes training: a snapshot is only valid for the same one."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"params": params.model_dump(), "seed": seed}, sort_keys=True).encode())
    versions = [("tensorflow", tf.__version__), ("keras", keras.__version__), ("numpy", np.__version__)]
    if keras.backend.backend() == "jax":
        import jax
        import jaxlib

        versions += [("jax", jax.__version__), ("jaxlib", jaxlib.__version__)]
    for package, version in versions:
        digest.update(f"{package}=={version}".encode())
    # TensorFlow's intra-op thread count changes its arithmetic (README, "Reproducibility"). With
    # train.threads 0 TensorFlow takes its own TF_NUM_INTRAOP_THREADS, else one per core.
    threads = params.threads or os.environ.get("TF_NUM_INTRAOP_THREADS") or os.cpu_count()
    digest.update(f"threads={threads}".encode())
    for path in sorted(Path(data_dir).glob("*.npy")):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for path in training_code():
        digest.update(str(path.relative_to(_SOURCES)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def training_code() -> list[Path]:
    """The modules training runs, as dvc.yaml's train stage lists them: the package root, core/
    and train/. Editing tooling (a report, a sweep) leaves a snapshot valid."""
    return [
        _SOURCES / "__init__.py",
        *sorted((_SOURCES / "core").glob("*.py")),
        *sorted(Path(__file__).parent.glob("*.py")),
    ]


@dataclass
class Start:
    """Where `fit` begins: epoch 0, or after the last epoch of this run's snapshot."""

    first_epoch: int
    end_epoch: int
    run_id: str  # the fingerprint, "" without snapshots
    early_stopping: dict[str, Any] | None = None  # the restored EarlyStopping state
    resumed: bool = False


def resume_point(
    params: TrainParams,
    seed: int,
    data_dir: Path,
    snapshot_dir: Path | None,
    model: keras.Model,
    live_dir: Path,
) -> Start:
    """Restore this run's snapshot from `snapshot_dir` into the compiled `model` and its logs into
    `live_dir`, if there is a usable one; say where training starts."""
    if snapshot_dir is None:
        return Start(0, params.epochs, "")
    run_id = fingerprint(params, seed, data_dir)
    snapshot = find_snapshot(snapshot_dir, run_id)
    early_state = restore(snapshot, model, live_dir) if snapshot is not None else None
    if snapshot is None or early_state is None:
        return Start(0, params.epochs, run_id)
    first = snapshot.epoch + 1
    print(f"train: resuming after epoch {first} of {params.epochs} from {snapshot_dir}/")
    # Early stopping had ended the run: only the ending (best weights, outputs) is left.
    end = first if snapshot.stop_training else params.epochs
    return Start(first, end, run_id, early_state, resumed=True)


def swap_ema(snapshot_taken: bool) -> keras.callbacks.SwapEMAWeights:
    """Keras' swap of the weight averages into the model at each epoch's end; a resumed run
    starts in the state its snapshot was taken in, with the averages in the model."""
    swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    # No public API sets this: the constructor takes only swap_on_epoch, and each public hook
    # that changes the flag also swaps the weights. tests/test_resume.py fails if its meaning
    # changes.
    swap._ema_weights_in_model = snapshot_taken
    return swap


@dataclass
class Snapshot:
    """What a resumed run starts from."""

    epoch: int  # the last finished epoch, 0-based
    stop_training: bool
    early_stopping: dict[str, Any]
    path: Path


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters and best weights survive a restart."""

    def __init__(self, resume_state: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resume_state = resume_state

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)  # resets every counter
        if self._resume_state:
            state = dict(self._resume_state)
            self.best_weights = state.pop("best_weights", None)
            for name in _EARLY_STOPPING_FIELDS:
                setattr(self, name, state[name])

    def state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)  # JSON keeps a float exactly
        return {
            "wait": int(self.wait),
            "stopped_epoch": int(self.stopped_epoch),
            "best": best,
            "best_epoch": int(self.best_epoch),
        }


class EpochSnapshot(keras.callbacks.Callback):
    """Replace the snapshot in `path` after each epoch; must come after the callbacks it saves."""

    def __init__(
        self, path: Path, run_id: str, early_stopping: ResumableEarlyStopping, live_dir: Path
    ) -> None:
        super().__init__()
        self.path, self.run_id = Path(path), run_id
        self.early_stopping, self.live_dir = early_stopping, Path(live_dir)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        state = {
            "fingerprint": self.run_id,
            "epoch": epoch,
            "stop_training": bool(self.model.stop_training),
            "early_stopping": self.early_stopping.state(),
        }
        with atomic_dir(self.path) as tmp:
            np.savez(tmp / VARIABLES, *[v.numpy() for v in _all_variables(self.model)])
            if self.early_stopping.best_weights is not None:
                np.savez(tmp / BEST, *self.early_stopping.best_weights)
            shutil.copytree(self.live_dir, tmp / LIVE)
            (tmp / STATE).write_text(json.dumps(state, indent=1) + "\n")


def find_snapshot(path: Path, run_id: str) -> Snapshot | None:
    """The snapshot in `path` if it belongs to this very run; otherwise None (and say why)."""
    state_file = Path(path) / STATE
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text())
        if state["fingerprint"] != run_id:
            print(f"train: ignoring {path}: it is from another run (params, data or code differ)")
            return None
        return Snapshot(
            int(state["epoch"]), bool(state["stop_training"]), dict(state["early_stopping"]), Path(path)
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"train: ignoring the unreadable snapshot in {path} ({err}); starting over", file=sys.stderr)
        return None


def restore(snapshot: Snapshot, model: keras.Model, live_dir: Path) -> dict[str, Any] | None:
    """Load the snapshot into a compiled `model` and its logs into `live_dir`, and return the
    EarlyStopping state to resume with; None (model untouched) if any part is unusable."""
    model.optimizer.build(model.trainable_variables)
    variables = _all_variables(model)
    try:
        with np.load(snapshot.path / VARIABLES, allow_pickle=False) as saved:
            arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        best = None
        if (snapshot.path / BEST).is_file():
            with np.load(snapshot.path / BEST, allow_pickle=False) as saved:
                best = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if not (snapshot.path / LIVE).is_dir():
            raise ValueError(f"{LIVE}/ is missing")
        shapes = [tuple(v.shape) for v in variables]
        if [a.shape for a in arrays] != shapes:
            raise ValueError(f"{len(arrays)} arrays that do not fit the model's {len(variables)} variables")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        print(f"train: ignoring the unusable snapshot in {snapshot.path} ({err}); starting over")
        return None
    for variable, array in zip(variables, arrays, strict=True):
        variable.assign(array)
    state = dict(snapshot.early_stopping)
    if best is not None:
        state["best_weights"] = best
    shutil.copytree(snapshot.path / LIVE, live_dir, dirs_exist_ok=True)
    return state


def _all_variables(model: keras.Model) -> list[keras.Variable]:
    # model.variables includes each dropout layer's seed-generator state; the optimizer's hold
    # its step count and moment estimates. Together they are everything the next epoch reads.
    return [*model.variables, *model.optimizer.variables]
