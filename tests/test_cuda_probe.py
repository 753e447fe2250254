"""TensorFlow's CUDA probe is quiet on a CPU-only machine; anything else it prints still shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fmnist_dvc.cuda_probe import probe_lines_removed
from tests.conftest import REPO_ROOT

PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
NO_DRIVER = (
    "I0000 00:00:1796301783.935818   30907 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.\n"
)
CUINIT = (
    "E0000 00:00:1796301794.159386   30907 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
OTHER = "E0000 00:00:1796301794.159386   30907 some_op.cc:12] something real went wrong\n"


def test_probe_lines_go_and_the_rest_stays() -> None:
    assert probe_lines_removed(PREAMBLE + NO_DRIVER + PREAMBLE + NO_DRIVER + CUINIT + OTHER) == OTHER
    # Without "no driver", a failing cuInit is news (a GPU machine with a broken driver): kept.
    assert probe_lines_removed(PREAMBLE + CUINIT + OTHER) == CUINIT + OTHER


def python(code: str, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


def test_tensorflow_starts_without_probe_errors() -> None:
    proc = python("import fmnist_dvc, tensorflow as tf; print(int(tf.constant(1) + 1))", [REPO_ROOT / "src"])
    assert proc.stdout == "2\n"
    assert "cuInit" not in proc.stderr and "cudart_stub" not in proc.stderr, proc.stderr


def test_other_output_during_the_import_still_shows(tmp_path: Path) -> None:
    # A stand-in tensorflow that writes the probe's lines and a real error straight to fd 2.
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\n"
        f"os.write(2, {(PREAMBLE + NO_DRIVER + OTHER).encode()!r})\n"
        "class config:\n"
        "    @staticmethod\n"
        "    def list_physical_devices(kind):\n"
        f"        os.write(2, {CUINIT.encode()!r})\n"
    )
    proc = python("import fmnist_dvc, tensorflow; print('imported')", [tmp_path, REPO_ROOT / "src"])
    assert proc.stdout == "imported\n"
    assert proc.stderr == OTHER
