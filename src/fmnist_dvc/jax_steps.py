"""Training steps run in groups on JAX: one compiled call trains `group` batches.

Keras on JAX calls its compiled train step once per batch from Python, even with
`steps_per_execution`; at the seed MLP's batch of 32 that call costs about a sixth of the
step. Here the same `model.train_step` runs under `jax.lax.scan` over `group` stacked batches,
so the arithmetic and its order stay the same (the weights match the per-batch loop bit for
bit: tests/test_backend.py) and Python is entered once per group. Used for the MLP only: XLA on
CPU ran the CNN's convolutions about 15x slower inside the scanned loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import keras
import numpy as np

GROUP = 64  # batches per compiled call: 32 gains nearly as much, 1 is Keras' own loop


def install_grouped_steps(model: keras.Model) -> None:
    """Make `model.fit` train through `grouped_train_function` (JAX backend, compiled model)."""
    model.train_function = grouped_train_function(model, GROUP)


def grouped_train_function(model: keras.Model, group: int) -> Callable[[Any, Iterator], tuple[Any, Any]]:
    """A drop-in for Keras' JAX train function: (state, batch iterator) -> (logs, state).

    Like Keras' own, it takes up to `model.steps_per_execution` batches per call. Runs of
    `group` same-shaped batches go through one scanned call; what is left (an execution's
    tail, an epoch's short last batch) goes one batch per call through the plain step.
    """
    step = model.train_step

    def scanned(state: Any, stacked: Any) -> tuple[Any, Any]:
        def body(carry: Any, batch: Any) -> tuple[Any, Any]:
            logs, carry = step(carry, batch)
            return carry, logs

        state, logs = jax.lax.scan(body, state, stacked)
        return jax.tree.map(lambda values: values[-1], logs), state  # the metrics after the last batch

    scanned_step = jax.jit(scanned, donate_argnums=0)
    single_step = jax.jit(step, donate_argnums=0)

    def train_function(state: Any, iterator: Iterator) -> tuple[Any, Any]:
        batches = [next(iterator)]  # StopIteration here ends the epoch, as in Keras
        while len(batches) < model.steps_per_execution:
            batch = next(iterator, None)
            if batch is None:
                break
            batches.append(batch)
        logs, start = None, 0
        while start + group <= len(batches) and _same_shapes(batches[start : start + group]):
            chunk = batches[start : start + group]
            logs, state = scanned_step(state, jax.tree.map(lambda *parts: np.stack(parts), *chunk))
            start += group
        for batch in batches[start:]:
            logs, state = single_step(state, batch)
        return logs, state

    return train_function


def _same_shapes(batches: list[Any]) -> bool:
    shapes = [tuple(np.shape(leaf) for leaf in jax.tree.leaves(batch)) for batch in batches]
    return all(shape == shapes[0] for shape in shapes)
