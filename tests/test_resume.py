"""Resuming an interrupted training run: the result must match an uninterrupted one exactly.

Here the interruption is an exception raised after an epoch's snapshot; tests/test_pipeline.py
kills a real `dvc repro` with SIGKILL instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import keras
import pytest

from fmnist_dvc.core.params import load_section
from fmnist_dvc.train.loop import train
from fmnist_dvc.train.params import TrainParams
from fmnist_dvc.train.resume import STATE
from tests.dvcrepo import BIN, dvc, lock_without_timing, new_project, run, set_params, stages_run
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

SEED = load_section("train", TrainParams, REPO_ROOT / "params.yaml")


class Crash(Exception):
    pass


class CrashAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            raise Crash


def _outputs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(params: TrainParams, data: Path, out: Path, crash_after: int | None = None) -> None:
    keras.backend.clear_session()
    extra = [CrashAfterEpoch(crash_after)] if crash_after is not None else []
    train(
        params,
        3,
        data,
        out / "models",
        out / "live",
        snapshot_dir=out.parent / "resume",
        extra_callbacks=extra,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "mlp", "epochs": 4, "lr_drop_epoch": 2},  # step schedule, dropout
        # Nesterov SGD with a weight moving average: the snapshot holds the averages swapped in.
        {
            "model": "mlp",
            "epochs": 4,
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "weight_decay": 0.0005,
            "schedule": "cosine",
            "ema": 0.9,
        },
        # One-cycle AdamW with augmentation; a huge rate makes early stopping end it early.
        {
            "model": "cnn",
            "cnn": SEED.cnn.replace(blocks=[[4], [8]]),
            "optimizer": "adamw",
            "weight_decay": 0.01,
            "schedule": "one_cycle",
            "learning_rate": 3.0,
            "epochs": 12,
            "patience": 1,
            "augment": SEED.augment.replace(flip=SEED.augment.flip.replace(enabled=True)),
        },
    ],
    ids=["mlp-step", "mlp-sgd-ema", "cnn-onecycle-earlystop"],
)
def test_a_resumed_run_ends_byte_identical_to_an_uninterrupted_one(
    prepared: Path, tmp_path: Path, overrides: dict
) -> None:
    params = SEED.replace(batch_size=64, **overrides)
    _run(params, prepared, tmp_path / "straight" / "out")
    assert not (tmp_path / "straight" / "resume").exists()  # removed once the outputs are written
    straight = _outputs(tmp_path / "straight" / "out")
    epochs_run = len(straight["live/plots/metrics/train/loss.tsv"].splitlines()) - 1
    if params.model == "cnn":
        assert epochs_run < params.epochs  # early stopping really ended it

    # Crash after epoch 2, or after the last epoch (before the outputs are written): the
    # resumed run then trains no more, and must still restore the best epoch's weights.
    for crash_after in (1, epochs_run - 1):
        interrupted = tmp_path / f"crash{crash_after}" / "out"
        with pytest.raises(Crash):
            _run(params, prepared, interrupted, crash_after=crash_after)
        state = json.loads((interrupted.parent / "resume" / STATE).read_text())
        assert state["epoch"] == crash_after
        assert not (interrupted / "models").exists() and not (interrupted / "live").exists()
        _run(params, prepared, interrupted)
        assert not (interrupted.parent / "resume").exists()
        assert _outputs(interrupted) == straight, f"crash after epoch {crash_after + 1}"


def test_a_snapshot_of_other_params_is_ignored(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    params = SEED.replace(batch_size=64, epochs=3)
    with pytest.raises(Crash):
        _run(params, prepared, tmp_path / "out", crash_after=0)
    _run(params.replace(learning_rate=0.002), prepared, tmp_path / "out")
    out = capsys.readouterr().out
    assert "it is from another run" in out and "resuming" not in out
    loss = (tmp_path / "out/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(loss) == 1 + 3  # all three epochs ran in the second run, none taken from the first


def test_dvc_repro_killed_during_training_resumes_and_ends_the_same(tmp_path: Path, debian_dir: Path) -> None:
    """kill -9 a real `dvc repro` mid-training; the next `dvc repro` picks up after the last
    finished epoch, and the model and its logs end byte-identical to a forced rerun of train."""
    repo = new_project(tmp_path / "repo")
    set_params(repo, {"preprocess.train_limit": 2000, "train.epochs": 5, "train.batch_size": 16})
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "small run"], repo)

    state = repo / "build/train-resume" / STATE
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with (tmp_path / "killed.log").open("w") as log:
        first = subprocess.Popen(
            [str(BIN / "dvc"), "repro"],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to kill the stage's python too
        )
        try:
            deadline = time.monotonic() + 300
            while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
                assert first.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "no epoch finished in time"
                time.sleep(0.05)
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # dvc and the stage's python with it
            first.wait()
    finished = json.loads(state.read_text())["epoch"] + 1
    assert finished < 5, "killed too late to test anything"
    assert not (repo / "models/model.keras").exists()

    resumed = dvc("repro", cwd=repo).stdout
    assert stages_run(resumed) == ["train", "evaluate"]
    assert f"train: resuming after epoch {finished} of 5" in resumed
    assert not state.parent.exists()
    lock = lock_without_timing(repo)

    # Train alone, forced: the same model and logs would make evaluate's outputs the same too.
    forced = dvc("repro", "-f", "--single-item", "train", cwd=repo).stdout
    assert stages_run(forced) == ["train"] and "resuming" not in forced
    assert lock_without_timing(repo) == lock  # md5 of the model and the training logs
    assert "Data and pipelines are up to date" in dvc("status", cwd=repo).stdout  # evaluate's deps too


def test_an_unusable_snapshot_is_ignored_and_training_starts_over(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    params = SEED.replace(batch_size=64, epochs=2)
    _run(params, prepared, tmp_path / "straight" / "out")
    with pytest.raises(Crash):
        _run(params, prepared, tmp_path / "broken" / "out", crash_after=0)
    variables = tmp_path / "broken" / "resume" / "variables.npz"
    variables.write_bytes(variables.read_bytes()[:1000])  # a damaged disk, say
    _run(params, prepared, tmp_path / "broken" / "out")
    out = capsys.readouterr().out
    assert "ignoring the unusable snapshot" in out and "resuming" not in out
    assert _outputs(tmp_path / "broken" / "out") == _outputs(tmp_path / "straight" / "out")
