"""Training and validation steps run in groups on JAX: one compiled call runs `group` batches.

Keras on JAX calls its compiled step once per batch from Python, even with
`steps_per_execution`; at the seed MLP's batch of 32 that call costs about a sixth of a
training step, and a larger share of the lighter validation step. Here the same
`model.train_step` (and `model.test_step`) runs under `jax.lax.scan` over `group` stacked
batches, so the arithmetic and its order stay the same, and Python is entered once per group.
XLA compiles the scanned body on its own, so equal bits are not promised by construction; they
were equal to Keras' per-batch loop in the test (tests/test_backend.py) and in the full-size
runs (same digest, same logs). Not used for models with convolutions (below).

This stands in for Keras internals (`model.train_function`, `model.test_function`), so it runs
only on the Keras versions it was checked on and only while the contract it relies on holds
(`contract_problem`); otherwise it warns (KerasContractWarning) and leaves Keras' own loop in
place, so that a Keras upgrade can make training slower but never silently different.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import keras
import numpy as np

GROUP = 64  # batches per compiled call at most: 32 gains nearly as much, 1 is Keras' own loop
# Keras releases the grouped steps run on: from the first, up to but not including the second.
# 3.15.1 was checked bit for bit against Keras' own loop (tests/test_backend.py); later 3.15
# patch releases are trusted to keep the internals. Widen it only after that test passes.
TESTED_KERAS = ((3, 15, 1), (3, 16))


class KerasContractWarning(UserWarning):
    """The grouped steps are off: this Keras may not run them as it runs its own loop."""


def contract_problem(model: keras.Model) -> str | None:
    """What, in this Keras, differs from what GroupedSteps relies on; None if nothing does.

    The version range stands for what cannot be checked without training (that fit and
    evaluate call `model.train_function` / `model.test_function` as (state, iterator) ->
    (logs, state)). Checked here: the attributes exist; `train_step` / `test_step` take
    (state, data) and are used as they are (not so with Flax NNX or a keras.distribution, where
    Keras wraps them its own way); and Keras' loop takes `steps_per_execution` batches a call,
    returns the last one's logs and ends an epoch on StopIteration, as GroupedSteps does.
    install_grouped_steps also checks that Keras keeps a function already set. Cheap: nothing
    is compiled or trained.
    """
    version = keras.__version__
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    low, high = TESTED_KERAS
    if not low <= numbers < high:
        tested = f"{'.'.join(map(str, low))} up to (not including) {'.'.join(map(str, high))}"
        return f"Keras {version} is not one of the versions checked ({tested})"
    for name in ("train_function", "test_function"):  # setting them would pass silently
        if not hasattr(model, name):
            return f"keras.Model has no attribute {name!r}"
    for name in ("train_step", "test_step", "make_train_function", "make_test_function", "_make_function"):
        if not callable(getattr(model, name, None)):
            return f"keras.Model.{name} is missing"
    for name in ("train_step", "test_step"):
        parameters = list(inspect.signature(getattr(model, name)).parameters)
        if parameters != ["state", "data"]:
            return f"keras.Model.{name} takes ({', '.join(parameters)}), not (state, data)"
    if keras.config.is_nnx_enabled():
        return "Flax NNX is enabled"
    if keras.distribution.distribution() is not None:
        return "a keras.distribution is set"
    return _loop_problem(model)


def _loop_problem(model: keras.Model) -> str | None:
    """How Keras' own per-execution loop differs from the one GroupedSteps copies, if it does."""

    def step(state: int, batch: int) -> tuple[dict[str, int], int]:
        return {"batch": batch}, state + 1

    n = model.steps_per_execution
    batches = iter(range(n + 1))
    try:
        logs, steps = model._make_function(step)(0, batches)
        left = next(batches, None)
    except Exception as exc:
        return f"Keras' step loop failed on a plain step ({type(exc).__name__}: {exc})"
    if (logs, steps, left) != ({"batch": n - 1}, n, n):
        return f"Keras' step loop ran {steps} of {n} batches a call and returned the logs {logs}"
    try:
        model._make_function(step)(0, iter(()))
    except StopIteration:
        return None  # an exhausted iterator ends the epoch, as GroupedSteps expects
    return "Keras' step loop no longer ends an epoch with StopIteration"


def install_grouped_steps(model: keras.Model) -> None:
    """Make `model.fit` train and validate through GroupedSteps (JAX backend).

    Left out where it cannot gain: a model Keras runs eagerly or without jit, one batch per
    execution (`train.steps_per_execution` 1), or a model with convolutions (the CNN), which
    XLA ran about 15x slower inside the scanned loop. Where this Keras breaks the contract
    (`contract_problem`), it warns and changes nothing.
    """
    group = min(GROUP, model.steps_per_execution)
    convolutional = any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    if group > 1 and model.jit_compile and not model.run_eagerly and not convolutional:
        problem = contract_problem(model)
        if problem is not None:
            _fall_back(model, problem)
            return
        model.train_function = GroupedSteps(model, model.train_step, group)
        model.test_function = GroupedSteps(model, model.test_step, group)
        # fit() and evaluate() build their functions this way: they must keep ours.
        model.make_train_function()
        model.make_test_function()
        kept = (model.train_function, model.test_function)
        if not all(isinstance(function, GroupedSteps) for function in kept):
            _fall_back(model, "Keras' make_train_function/make_test_function replace a function already set")


def _fall_back(model: keras.Model, problem: str) -> None:
    """Warn, and leave (or put back) Keras' own loop: None makes fit() and evaluate() build it."""
    if isinstance(model.train_function, GroupedSteps) or isinstance(model.test_function, GroupedSteps):
        model.train_function = model.test_function = None
    warnings.warn(
        f"fmnist_dvc.train.jax_steps: {problem}; training with Keras' own loop instead of the grouped "
        "steps (same arithmetic, slower on JAX). See TESTED_KERAS in src/fmnist_dvc/train/jax_steps.py.",
        KerasContractWarning,
        stacklevel=3,
    )


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
