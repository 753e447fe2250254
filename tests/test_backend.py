"""train.backend and train.threads: what runs where, and the errors when it cannot.

The JAX runs happen in child processes (two): Keras picks its backend once, at import, and this
test process runs on TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.model_io import load_model
from fmnist_dvc.core.params import load_section
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.train.loop import train
from fmnist_dvc.train.params import TrainParams
from tests.catalogue import assert_catalogued_error
from tests.helpers import REPO_ROOT, stage_args, write_params
from tests.test_resume import SEED, _outputs

pytestmark = pytest.mark.slow

# train() on the backend params.yaml names, chosen as stages/train.py chooses it (use_backend
# before Keras is imported; KERAS_BACKEND is not set for it). With `crash`, ROOT/grouped, 2
# batches per compiled call (fmnist_dvc.train.jax_steps), crashes after its first epoch (exit 3).
# Without, a new process runs ROOT/grouped again, resuming from the snapshot on disk, then
# ROOT/keras from the start on Keras' own loop (a step per call). Each of those two prints the
# backend Keras reports, the type of its trained weights and its batch counts; the grouped
# model's predictions for the test split are saved for this process to compare.
WORKER = """
import sys
from pathlib import Path

from fmnist_dvc.train.backend import use_backend
from fmnist_dvc.core.params import load_section
from fmnist_dvc.train.params import TrainParams

params_file, data, root, mode = sys.argv[1:]
params = load_section("train", TrainParams, Path(params_file))
use_backend(params.backend)

import jax
import keras
import numpy as np

from fmnist_dvc.train import jax_steps
from fmnist_dvc.train.dataset import make_dataset
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.train.loop import train
from tests.test_resume import Crash, CrashAfterEpoch


def run(name, extra=()):
    out = Path(root) / name / "out"
    keras.backend.clear_session()
    model = train(params, 3, Path(data), out / "models", out / "live",
                  snapshot_dir=out.parent / "resume", extra_callbacks=list(extra))
    print(name, "keras backend:", keras.backend.backend())
    print(name, "weights are jax.Array:", all(isinstance(w.value, jax.Array) for w in model.weights))
    for split in ("train", "test"):
        counts = getattr(model, f"{split}_function")
        print(name, split, "batches grouped", getattr(counts, "grouped", "-"),
              "single", getattr(counts, "single", "-"))
    return model


jax_steps.GROUP = 2
if mode == "crash":
    try:
        run("grouped", [CrashAfterEpoch(0)])
    except Crash:
        sys.exit(3)
    sys.exit("the grouped run did not crash")
model = run("grouped")
x, y = load_split(Path(data), "test")
np.save(Path(root) / "grouped" / "predictions.npy", model.predict(make_dataset(x, y, 100), verbose=0))
jax_steps.install_grouped_steps = lambda model: None
run("keras")
"""


def test_jax_backend_trains_reproducibly_resumes_and_its_model_loads_in_tensorflow(
    prepared: Path, tmp_path: Path
) -> None:
    pytest.importorskip("jax", reason="the optional JAX backend is not installed: pip install -e '.[jax]'")
    params_file = write_params(
        tmp_path,
        {
            "train.backend": "jax",
            "train.epochs": 2,
            "train.lr_drop_epoch": 1,
            "train.batch_size": 56,
            "train.steps_per_execution": 5,
        },
    )
    # 800 images make 15 batches an epoch, the last one short, in 3 executions of 5. With 2 per
    # compiled call each execution is two scanned calls and one plain step: 4 + 1 batches each,
    # 12 + 3 an epoch. The 200 validation images make 4 batches, the last short: one scanned
    # call and two plain steps. The grouped run crashes after epoch 1 and is started again, so
    # its second process trains one epoch; Keras' own loop (a step per call) trains both.
    # The two end with the same bits, model file and logs, validation logs included.
    env = {
        **{key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"},
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
    }
    for mode, code in (("crash", 3), ("rest", 0)):
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(params_file), str(prepared), str(tmp_path), mode],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == code, proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("resuming after epoch 1 of 2") == 1, out  # the grouped run; Keras' loop starts afresh
    assert "grouped train batches grouped 12 single 3" in out
    assert "grouped test batches grouped 2 single 2" in out
    assert "keras train batches grouped - single -" in out and "keras test batches grouped - single -" in out
    for name in ("grouped", "keras"):  # train.backend alone switched it: Keras says so,
        assert f"{name} keras backend: jax" in out  # and the weights it trained are JAX arrays
        assert f"{name} weights are jax.Array: True" in out, out
    assert _outputs(tmp_path / "grouped" / "out") == _outputs(tmp_path / "keras" / "out")

    # The model file is Keras', not JAX's: TensorFlow (evaluate, fmnist predict) reads it and
    # predicts what JAX predicted, up to float rounding.
    model = load_model(tmp_path / "grouped" / "out" / "models" / "model.keras")
    x, _ = load_split(prepared, "test")
    tf_probs = model.predict(x.astype("float32"), verbose=0)
    np.testing.assert_allclose(tf_probs, np.load(tmp_path / "grouped" / "predictions.npy"), atol=1e-5)

    # And it really is another backend: the same run (same params file, seed and data) with only
    # train.backend changed gives other weights. TensorFlow's runs are bit-reproducible
    # (tests/test_training.py), so had the switch done nothing, these would be equal.
    tf_params = load_section("train", TrainParams, params_file).replace(backend="tensorflow")
    tf_model = train(tf_params, 3, prepared, tmp_path / "tf" / "models", tmp_path / "tf" / "live")
    pairs = list(zip(tf_model.get_weights(), model.get_weights(), strict=True))
    assert all(a.shape == b.shape for a, b in pairs)
    assert any(a.tobytes() != b.tobytes() for a, b in pairs)


def test_jax_backend_without_jax_installed_is_one_line(tmp_path: Path, prepared: Path) -> None:
    write_params(tmp_path, {"train.backend": "jax"})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prepared").symlink_to(prepared)
    # sys.modules["jax"] = None is how Python blocks an import: `import jax` raises ImportError.
    blocked = (
        "import runpy, sys; sys.modules['jax'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", blocked, str(REPO_ROOT / "stages" / "train.py"), *stage_args("train")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert_catalogued_error(proc, "jax-not-installed")
    assert not (tmp_path / "models").exists()


def test_a_backend_or_thread_count_this_process_cannot_give_is_an_error(
    prepared: Path, tmp_path: Path
) -> None:
    # This process runs Keras on TensorFlow with one intra-op thread (tests/conftest.py), and
    # once TensorFlow has run an op the count is fixed. (JAX need not be installed for this.)
    tf.constant(1.0).numpy()
    with pytest.raises(PipelineError, match="Keras already runs on 'tensorflow'"):
        train(SEED.replace(backend="jax"), 0, prepared, tmp_path / "m", tmp_path / "l")
    other = SEED.threads + 1
    with pytest.raises(PipelineError, match=rf"train\.threads is {other} but TensorFlow already runs with"):
        train(SEED.replace(threads=other), 0, prepared, tmp_path / "m", tmp_path / "l")
    assert not (tmp_path / "m").exists() and not (tmp_path / "l").exists()
