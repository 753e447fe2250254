"""Seeding, the input pipeline and the training loop behind the train stage."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from fmnist_dvc.atomic import atomic_dir
from fmnist_dvc.backend import use_backend
from fmnist_dvc.dataset import (
    as_arrays,
    batches_per_epoch,
    make_dataset,
    make_training_dataset,
    numpy_batches,
)
from fmnist_dvc.errors import PipelineError
from fmnist_dvc.model_io import MODEL_FILE, save_model
from fmnist_dvc.models import build_model
from fmnist_dvc.params import TrainParams
from fmnist_dvc.resume import EpochSnapshot, ResumableEarlyStopping, find_snapshot, fingerprint, restore
from fmnist_dvc.splits import load_split


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic, so reruns match bit for bit."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def set_threads(threads: int) -> None:
    """Pin TensorFlow's intra-op thread count (0 = one per CPU core) before its first op.

    The count decides how sums are split between threads, so it changes the weights: pinned, a
    run does not depend on the machine's core count. One thread is also the fastest for the seed
    MLP at batch 32, whose matrices are too small to share out (README, "Performance").
    """
    # TensorFlow's own TF_NUM_INTRAOP_THREADS sets the count too, unseen by tf.config (the tests use it).
    current = tf.config.threading.get_intra_op_parallelism_threads() or int(
        os.environ.get("TF_NUM_INTRAOP_THREADS", "0")
    )
    if current == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow has started: the count is fixed for this process
        raise PipelineError(
            f"params.yaml: train.threads is {threads} but TensorFlow already runs with {current} "
            "(0 = one per core) in this process; train in a fresh process (the train stage does)."
        ) from None


def learning_rate(
    params: TrainParams, steps_per_epoch: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's per-step learning rate (a resumed run picks it up from the step count).

    - step: `learning_rate` for epochs 0..lr_drop_epoch-1 (0-based), then x `lr_drop_factor`;
    - one_cycle: linear warm-up from 1/25 of the peak over `warmup_fraction` of all steps,
      then cosine down to 0;
    - cosine: cosine decay from the peak to 0.
    """
    if params.schedule == "step":
        # PiecewiseConstantDecay keeps values[0] while step <= boundary: the last step of the
        # epoch before the drop is the boundary.
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [params.lr_drop_epoch * steps_per_epoch - 1],
            [params.learning_rate, params.learning_rate * params.lr_drop_factor],
        )
    total = params.epochs * steps_per_epoch
    if params.schedule == "one_cycle":
        warmup = int(total * params.warmup_fraction)
        return keras.optimizers.schedules.CosineDecay(
            params.learning_rate / 25,
            decay_steps=total - warmup,
            warmup_target=params.learning_rate,
            warmup_steps=warmup,
        )
    return keras.optimizers.schedules.CosineDecay(params.learning_rate, decay_steps=total)


def compile_model(model: keras.Model, params: TrainParams, steps_per_epoch: int) -> None:
    lr = learning_rate(params, steps_per_epoch)
    ema = {"use_ema": True, "ema_momentum": params.ema} if params.ema else {}
    if params.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=params.weight_decay, **ema)
    elif params.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=lr, momentum=params.momentum, nesterov=True, weight_decay=params.weight_decay, **ema
        )
    else:
        optimizer = keras.optimizers.Adam(learning_rate=lr, **ema)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
        metrics=["accuracy"],
        # Several batches per call into TensorFlow: at batch 32 the per-call overhead, not the
        # arithmetic, sets the pace. The same ops run in the same order, so the weights match.
        steps_per_execution=execution_steps(steps_per_epoch, params.steps_per_execution),
    )


def execution_steps(steps_per_epoch: int, limit: int) -> int:
    """The largest divisor of `steps_per_epoch` not above `limit`.

    Keras runs whole executions: one that does not end with the epoch runs on into the next
    epoch's batches before the epoch-end callbacks (learning-rate step, validation, early
    stopping) fire, which would change the result.
    """
    return max(d for d in range(1, min(limit, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


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


def train(
    params: TrainParams,
    seed: int,
    data_dir: Path,
    model_dir: Path,
    live_dir: Path,
    snapshot_dir: Path | None = None,
    time_dir: Path | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> keras.Model:
    """Fit the model from params; write `model_dir/model.keras` and dvclive's per-epoch logs.

    dvclive logs training metrics as train/*, and Keras' val_* (the validation split) as
    eval/*. It declares nothing itself (dvcyaml=False): dvc.yaml owns every plot.
    With `time_dir`, the wall-clock minutes at each epoch's end and the whole call's seconds go
    there (`epochs.tsv`, `train.json`): the only outputs that differ between identical runs.
    With `snapshot_dir`, each finished epoch is saved there and a killed run picks up after
    the last one (see fmnist_dvc.resume); the directory is removed once the outputs are written.
    """
    clock = TrainingClock(time.perf_counter())
    use_backend(params.backend)
    set_threads(params.threads)
    set_seed(seed)
    x_train, y_train = load_split(data_dir, "train")
    x_val, y_val = load_split(data_dir, "val")
    steps = batches_per_epoch(len(y_train), params.batch_size)
    model = build_model(params)
    compile_model(model, params, steps_per_epoch=steps)
    run_id = fingerprint(params, seed, data_dir) if snapshot_dir is not None else ""
    snapshot = find_snapshot(snapshot_dir, run_id) if snapshot_dir is not None else None

    with tempfile.TemporaryDirectory(prefix="fmnist-live-") as work:
        work_live = Path(work) / "live"
        work_live.mkdir()
        early_state, first_epoch, end_epoch = None, 0, params.epochs
        if snapshot is not None:
            early_state = restore(snapshot, model, work_live)
            if early_state is None:
                snapshot = None
        if snapshot is not None:
            first_epoch = snapshot.epoch + 1
            if snapshot.stop_training:  # early stopping had ended it: only the ending is left
                end_epoch = first_epoch
            print(f"train: resuming after epoch {first_epoch} of {params.epochs} from {snapshot_dir}/")
        train_ds = make_training_dataset(
            x_train, y_train, params.batch_size, seed, end_epoch, first_epoch, params.augment
        )
        callbacks: list[keras.callbacks.Callback] = []
        if params.ema:
            # Validation, early stopping and the snapshot see the averaged weights, and the
            # saved model holds them (Keras swaps them in at each epoch's end).
            swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
            # A snapshot was taken with the averages swapped in: resume in that state. (Keras
            # keeps this flag private; tests/test_resume.py fails if its meaning changes.)
            swap._ema_weights_in_model = snapshot is not None
            callbacks.append(swap)
        live = Live(dir=str(work_live), dvcyaml=False, save_dvc_exp=False, report=None, resume=True)
        live.step = first_epoch
        early_stopping = ResumableEarlyStopping(
            early_state, monitor="val_loss", patience=params.patience, restore_best_weights=True, verbose=1
        )
        callbacks += [early_stopping, LogLearningRate(), DVCLiveCallback(live=live), clock]
        if snapshot_dir is not None:  # after dvclive: a snapshot holds the epoch's logs too
            callbacks.append(EpochSnapshot(snapshot_dir, run_id, early_stopping, work_live))
        if keras.backend.backend() == "jax":
            from fmnist_dvc.jax_steps import install_grouped_steps  # JAX is an optional extra

            install_grouped_steps(model)
            # Keras on JAX slices NumPy arrays itself, but draws tf.data batches one at a time
            # through eager TensorFlow: the same batches either way.
            train_input, validation = numpy_batches(train_ds), as_arrays(x_val, y_val)
        else:
            train_input, validation = train_ds, make_dataset(x_val, y_val, params.batch_size)
        model.fit(
            train_input,
            validation_data=validation,
            validation_batch_size=params.batch_size,  # for the arrays; a dataset has its own
            initial_epoch=first_epoch,
            epochs=end_epoch,
            steps_per_epoch=steps,
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=[*callbacks, *extra_callbacks],
            verbose=1 if sys.stdout.isatty() else 2,  # a live bar in a terminal, a line per epoch in logs
        )
        save_model(model, Path(model_dir) / MODEL_FILE)
        with atomic_dir(live_dir) as tmp:
            shutil.copytree(work_live, tmp, dirs_exist_ok=True)
        if time_dir is not None:
            clock.write(time_dir)
    if snapshot_dir is not None:
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    return model
