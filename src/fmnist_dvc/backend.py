"""Choosing Keras' backend (`train.backend`), which has to happen before Keras is imported."""

from __future__ import annotations

import os
import sys

from fmnist_dvc.errors import PipelineError


def use_backend(name: str) -> None:
    """Make Keras run on `name` ("tensorflow" or "jax") in this process.

    Keras reads KERAS_BACKEND once, at import, so a process that has already imported it keeps
    its backend: that is an error here rather than a run on a backend nobody asked for.
    """
    if name == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            raise PipelineError(
                "params.yaml: train.backend is 'jax' but JAX is not installed; "
                "run pip install -e '.[jax]' or set train.backend: tensorflow."
            ) from None
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ["KERAS_BACKEND"] = name
        return
    current = keras.backend.backend()
    if current != name:
        raise PipelineError(
            f"params.yaml: train.backend is {name!r} but Keras already runs on {current!r} in this "
            f"process; start a fresh process with KERAS_BACKEND={name} (the train stage does)."
        )
