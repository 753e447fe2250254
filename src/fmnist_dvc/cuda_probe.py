"""Keep TensorFlow's CUDA probe quiet on a machine without CUDA, and only there.

On import, and again when it first lists devices, TensorFlow looks for a GPU and writes to
file descriptor 2, past Python and past TF_CPP_MIN_LOG_LEVEL: "Could not find cuda drivers"
(before its log is set up, so no level hides it) and "failed call to cuInit" as an ERROR.
On a CPU-only install that is expected, yet every command would start with an error.
install() makes the first `import tensorflow` run with stderr captured, lists the devices
(the cuInit probe) while still captured, then passes every captured line on except those,
and drops the cuInit failure only where TensorFlow said it found no CUDA driver.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

NO_DRIVER = re.compile(r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine")
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
CUINIT_FAILED = re.compile(r"\] failed call to cuInit: ")


def probe_lines_removed(text: str) -> str:
    """`text` less the probe's lines; the cuInit failure goes only if no driver was found."""
    no_driver = NO_DRIVER.search(text) is not None
    kept = [
        line
        for line in text.splitlines(keepends=True)
        if not (
            NO_DRIVER.search(line)
            or line.rstrip("\n") == ABSL_PREAMBLE
            or (no_driver and CUINIT_FAILED.search(line))
        )
    ]
    return "".join(kept)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, but runs its import as described above (once)."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module: ModuleType) -> None:
            with tempfile.TemporaryFile() as captured:
                sys.stderr.flush()
                saved = os.dup(2)
                os.dup2(captured.fileno(), 2)
                try:
                    exec_module(module)
                    module.config.list_physical_devices("GPU")
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, 2)
                    os.close(saved)
                    captured.seek(0)
                    sys.stderr.write(probe_lines_removed(captured.read().decode(errors="replace")))
                    sys.stderr.flush()

        spec.loader.exec_module = quiet_exec  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Quiet the probe of a TensorFlow not imported yet (a no-op once it is)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
