"""The `dvc` command that the tooling runs: the project environment's own, found on PATH."""

from __future__ import annotations

import shutil

from fmnist_dvc.core.errors import PipelineError


def dvc_executable(path: str | None = None) -> str:
    """`dvc` on `path` (default: PATH)."""
    found = shutil.which("dvc", path=path)
    if found is None:
        raise PipelineError("dvc not found on PATH; activate the project's environment (.venv).")
    return found
