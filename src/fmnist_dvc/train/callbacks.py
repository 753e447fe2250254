"""Callbacks that put the learning rate in dvclive's logs and time each epoch for metrics/time/."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras

from fmnist_dvc.core.atomic import atomic_dir


class LogLearningRate(keras.callbacks.Callback):
    """Put the learning rate each epoch started with in its logs (dvclive plots it)."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = self._rate


class TrainingClock(keras.callbacks.Callback):
    """Minutes from the start of `train` to each epoch's end, for `metrics/time/`.

    Kept out of dvclive's logs on purpose: those stay byte-identical from run to run (dvc.lock
    records their hash), while wall-clock time never does. A resumed run counts from its restart.
    """

    def __init__(self, start: float) -> None:
        super().__init__()
        self.start = start
        self.rows: list[tuple[int, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.rows.append((epoch, (time.perf_counter() - self.start) / 60))

    def write(self, time_dir: Path) -> None:
        seconds = time.perf_counter() - self.start
        with atomic_dir(time_dir) as tmp:
            (tmp / "train.json").write_text(
                json.dumps({"train": {"seconds": round(seconds, 1), "epochs_run": len(self.rows)}}, indent=2)
                + "\n"
            )
            lines = ["step\tminutes", *(f"{e}\t{m:.4f}" for e, m in self.rows)]
            (tmp / "epochs.tsv").write_text("\n".join(lines) + "\n")
