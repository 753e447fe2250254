"""jax_steps' guard: on a Keras it was not checked on, or one whose internals moved, the grouped
steps stay off with a warning, so a Keras upgrade cannot change a model without a word.

Nothing is trained: one child process (Keras picks its backend at import, and this one runs
on TensorFlow) builds a small model on JAX and installs the steps under each broken contract.
Whether the grouped steps give Keras' own bits is tests/test_backend.py's job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

# Each case breaks one thing on a fresh model, installs the grouped steps and reports what
# fit() would call and which warnings came.
CASES = """
import json
import warnings

import keras

from fmnist_dvc.train import jax_steps


def model():
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    net.compile(optimizer="adam", loss="mse", steps_per_execution=4)
    return net


def last_of_two(step):  # a loop that stops after two batches
    def loop(state, iterator):
        logs, state = step(state, next(iterator))
        return step(state, next(iterator))
    return loop


def rebuild(net):
    return lambda force=False: setattr(net, "train_function", "keras' own")


breakages = {
    "as tested": lambda net: None,
    "newer keras": lambda net: setattr(keras, "__version__", "3.16.0"),
    "older keras": lambda net: setattr(keras, "__version__", "3.14.0"),
    "loop helper gone": lambda net: setattr(net, "_make_function", None),
    "step signature": lambda net: setattr(net, "train_step", lambda data: None),
    "loop returns early": lambda net: setattr(net, "_make_function", last_of_two),
    "set function rebuilt": lambda net: setattr(net, "make_train_function", rebuild(net)),
}
version = keras.__version__
report = {}
for case, breakage in breakages.items():
    keras.__version__ = version
    net = model()
    breakage(net)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax_steps.install_grouped_steps(net)
    report[case] = {
        "train": type(net.train_function).__name__,
        "test": type(net.test_function).__name__,
        "warnings": [
            str(w.message) for w in caught if issubclass(w.category, jax_steps.KerasContractWarning)
        ],
    }
print("REPORT", json.dumps(report))
"""


@pytest.fixture(scope="module")
def report() -> dict:
    pytest.importorskip("jax", reason="the optional JAX backend is not installed: pip install -e '.[jax]'")
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", CASES], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line.removeprefix("REPORT "))


def test_the_tested_keras_gets_the_grouped_steps_silently(report: dict) -> None:
    # Positive control: without it every fallback below could pass on a guard that always trips.
    assert report["as tested"] == {"train": "GroupedSteps", "test": "GroupedSteps", "warnings": []}


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("newer keras", "Keras 3.16.0 is not one of the versions checked"),
        ("older keras", "Keras 3.14.0 is not one of the versions checked"),
        ("loop helper gone", "keras.Model._make_function is missing"),
        ("step signature", "keras.Model.train_step takes (data), not (state, data)"),
        ("loop returns early", "Keras' step loop ran 2 of 4 batches a call"),
        ("set function rebuilt", "replace a function already set"),
    ],
)
def test_a_changed_keras_contract_warns_and_keeps_keras_own_loop(report: dict, case: str, named: str) -> None:
    outcome = report[case]
    # None: fit() and evaluate() build Keras' own functions, as without jax_steps.
    assert (outcome["train"], outcome["test"]) == ("NoneType", "NoneType"), outcome
    assert len(outcome["warnings"]) == 1, outcome
    assert named in outcome["warnings"][0]
    assert "training with Keras' own loop" in outcome["warnings"][0]
