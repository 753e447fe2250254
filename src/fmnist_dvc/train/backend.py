"""Choosing Keras' backend (`train.backend`), which has to happen before Keras is imported."""

from __future__ import annotations

import os
import sys

from fmnist_dvc.core.errors import PipelineError


def use_backend(name: str) -> None:
    """Make Keras run on `name` ("tensorflow" or "jax") in this process.

    Keras reads KERAS_BACKEND once, at import, so a process that has already imported it keeps
    its backend: that is an error here rather than a run on a backend nobody asked for.
    """
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        raise PipelineError(
            f"params.yaml: train.backend is {name!r} but Keras already runs on "
            f"{keras.backend.backend()!r} in this process; start a fresh process with "
            f"KERAS_BACKEND={name} (the train stage does)."
        )
    if name == "jax":
        try:
            import jax  # noqa: F401
        except Exception as exc:  # not installed, or a jaxlib that does not match jax
            raise PipelineError(
                "params.yaml: train.backend is 'jax' but JAX is not installed"
                + ("" if isinstance(exc, ImportError) else f" properly ({exc})")
                + "; run pip install -e '.[jax]' or set train.backend: tensorflow."
            ) from None
    if keras is None:
        os.environ["KERAS_BACKEND"] = name
