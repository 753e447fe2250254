"""The training loop behind the train stage: the process set up, then one Keras `fit` that may
resume a killed run, with dvclive logging each epoch."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from fmnist_dvc.core.atomic import atomic_dir
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.model_io import MODEL_FILE, save_model
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.train.backend import use_backend
from fmnist_dvc.train.callbacks import LogLearningRate, TrainingClock
from fmnist_dvc.train.dataset import (
    as_arrays,
    batches_per_epoch,
    make_dataset,
    make_training_dataset,
    numpy_batches,
)
from fmnist_dvc.train.models import build_model, set_whitening
from fmnist_dvc.train.optimizer import compile_model
from fmnist_dvc.train.params import TrainParams
from fmnist_dvc.train.resume import EpochSnapshot, ResumableEarlyStopping, Start, resume_point, swap_ema


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
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow has started: the count is fixed for this process
        raise PipelineError(
            f"params.yaml: train.threads is {threads} but TensorFlow already runs with {current} "
            "(0 = its default) in this process; train in a fresh process (the train stage does)."
        ) from None


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
    the last one (see train.resume); the directory is removed once the outputs are written.
    """
    clock = TrainingClock(time.perf_counter())
    use_backend(params.backend)
    set_threads(params.threads)
    set_seed(seed)
    x_train, y_train = load_split(data_dir, "train")
    val = load_split(data_dir, "val")
    steps = batches_per_epoch(len(y_train), params.batch_size)
    model = build_model(params)
    set_whitening(model, x_train)
    compile_model(model, params, steps_per_epoch=steps)
    with tempfile.TemporaryDirectory(prefix="fmnist-live-") as work:
        work_live = Path(work) / "live"
        work_live.mkdir()
        start = resume_point(params, seed, data_dir, snapshot_dir, model, work_live)
        train_ds = make_training_dataset(
            x_train, y_train, params.batch_size, seed, start.end_epoch, start.first_epoch, params.augment
        )
        callbacks = _callbacks(params, seed, start, work_live, clock, snapshot_dir)
        train_input, validation = _inputs(model, train_ds, val, params.batch_size)
        model.fit(
            train_input,
            validation_data=validation,
            validation_batch_size=params.batch_size,  # for the arrays; a dataset has its own
            initial_epoch=start.first_epoch,
            epochs=start.end_epoch,
            steps_per_epoch=steps,
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=[*callbacks, *extra_callbacks],
            verbose=1 if sys.stdout.isatty() else 2,  # a live bar in a terminal, a line per epoch in logs
        )
        _write_outputs(model, model_dir, work_live, live_dir, clock, time_dir)
    if snapshot_dir is not None:
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    return model


def _callbacks(
    params: TrainParams,
    seed: int,
    start: Start,
    work_live: Path,
    clock: TrainingClock,
    snapshot_dir: Path | None,
) -> list[keras.callbacks.Callback]:
    """In the order they must run at each epoch's end: the weight averages swapped in, early
    stopping, the learning rate logged, dvclive, the clock, and last the snapshot of all of it.
    dvclive also keeps the recipe (its params.yaml): the model card is written from it."""
    callbacks: list[keras.callbacks.Callback] = []
    if params.ema:
        # Validation, early stopping and the snapshot see the averaged weights, and the saved
        # model holds them (Keras swaps them in at each epoch's end).
        callbacks.append(swap_ema(snapshot_taken=start.resumed))
    live = Live(dir=str(work_live), dvcyaml=False, save_dvc_exp=False, report=None, resume=True)
    live.step = start.first_epoch
    live.log_params({"seed": seed, "train": params.model_dump(mode="json")})
    early_stopping = ResumableEarlyStopping(
        start.early_stopping,
        monitor="val_loss",
        patience=params.patience,
        restore_best_weights=True,
        verbose=1,
    )
    callbacks += [early_stopping, LogLearningRate(), DVCLiveCallback(live=live), clock]
    if snapshot_dir is not None:  # after dvclive: a snapshot holds the epoch's logs too
        callbacks.append(EpochSnapshot(snapshot_dir, start.run_id, early_stopping, work_live))
    return callbacks


def _inputs(
    model: keras.Model, train_ds: tf.data.Dataset, val: tuple[np.ndarray, np.ndarray], batch_size: int
) -> tuple[object, object]:
    """The training and validation input for `fit`, in the form this backend draws fastest."""
    if keras.backend.backend() != "jax":
        return train_ds, make_dataset(*val, batch_size)
    from fmnist_dvc.train.jax_steps import install_grouped_steps  # JAX is an optional extra

    install_grouped_steps(model)
    # Keras on JAX slices NumPy arrays itself, but draws tf.data batches one at a time through
    # eager TensorFlow: the same batches either way.
    return numpy_batches(train_ds), as_arrays(*val)


def _write_outputs(
    model: keras.Model,
    model_dir: Path,
    work_live: Path,
    live_dir: Path,
    clock: TrainingClock,
    time_dir: Path | None,
) -> None:
    save_model(model, Path(model_dir) / MODEL_FILE)
    with atomic_dir(live_dir) as tmp:
        shutil.copytree(work_live, tmp, dirs_exist_ok=True)
    if time_dir is not None:
        clock.write(time_dir)
