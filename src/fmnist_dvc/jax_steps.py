"""Training and validation steps run in groups on JAX: one compiled call runs `group` batches.

Keras on JAX calls its compiled step once per batch from Python, even with
`steps_per_execution`; at the seed MLP's batch of 32 that call costs about a sixth of a
training step, and a larger share of the lighter validation step. Here the same
`model.train_step` (and `model.test_step`) runs under `jax.lax.scan` over `group` stacked
batches, so the arithmetic and its order stay the same, and Python is entered once per group.
XLA compiles the scanned body on its own, so equal bits are not promised by construction; they
were equal to Keras' per-batch loop in the test (tests/test_backend.py) and in the full-size
runs (same digest, same logs). Not used for models with convolutions (below).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import keras
import numpy as np

GROUP = 64  # batches per compiled call at most: 32 gains nearly as much, 1 is Keras' own loop


def install_grouped_steps(model: keras.Model) -> None:
    """Make `model.fit` train and validate through GroupedSteps (JAX backend).

    Left out where it cannot gain: a model Keras runs eagerly or without jit, one batch per
    execution (`train.steps_per_execution` 1), or a model with convolutions (the CNN), which
    XLA ran about 15x slower inside the scanned loop.
    """
    group = min(GROUP, model.steps_per_execution)
    convolutional = any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    if group > 1 and model.jit_compile and not model.run_eagerly and not convolutional:
        model.train_function = GroupedSteps(model, model.train_step, group)
        model.test_function = GroupedSteps(model, model.test_step, group)


class GroupedSteps:
    """A drop-in for Keras' JAX train or test function: (state, batch iterator) -> (logs, state).

    Like Keras' own, it takes up to `model.steps_per_execution` batches per call. Runs of
    `group` same-shaped batches go through one scanned call; what is left (an execution's
    tail, an epoch's short last batch) goes one batch per call through the plain step. At
    batch 32 that is 3 x 64 of each training execution of 211 batches in groups and 19 one by
    one, and 2 x 64 of the 188 validation batches and 60 one by one: a second compiled length
    for those would cost more start-up than it saves. `step` is `model.train_step` or
    `model.test_step`: both map (state, batch) to (logs, state). `grouped` and `single` count
    the batches each way.
    """

    def __init__(self, model: keras.Model, step: Callable[[Any, Any], tuple[Any, Any]], group: int) -> None:
        self.model, self.group = model, group
        self.grouped = self.single = 0

        def scanned(state: Any, stacked: Any) -> tuple[Any, Any]:
            def body(carry: Any, batch: Any) -> tuple[Any, Any]:
                logs, carry = step(carry, batch)
                return carry, logs

            state, logs = jax.lax.scan(body, state, stacked)
            return jax.tree.map(lambda values: values[-1], logs), state  # metrics after the last batch

        self._scanned_step = jax.jit(scanned, donate_argnums=0)
        self._single_step = jax.jit(step, donate_argnums=0)

    def __call__(self, state: Any, iterator: Iterator) -> tuple[Any, Any]:
        batches = [next(iterator)]  # StopIteration here ends the epoch, as in Keras
        while len(batches) < self.model.steps_per_execution:
            batch = next(iterator, None)
            if batch is None:
                break
            batches.append(batch)
        logs, start, group = None, 0, self.group
        while start + group <= len(batches) and _same_shapes(batches[start : start + group]):
            stacked = jax.tree.map(lambda *parts: np.stack(parts), *batches[start : start + group])
            logs, state = self._scanned_step(state, stacked)
            start += group
        for batch in batches[start:]:
            logs, state = self._single_step(state, batch)
        self.grouped += start
        self.single += len(batches) - start
        return logs, state


def _same_shapes(batches: list[Any]) -> bool:
    shapes = [tuple(np.shape(leaf) for leaf in jax.tree.leaves(batch)) for batch in batches]
    return all(shape == shapes[0] for shape in shapes)
