"""The optimizer, its per-step learning-rate schedule, and how many steps Keras runs per call."""

from __future__ import annotations

import keras

from fmnist_dvc.train.params import TrainParams


def learning_rate(
    params: TrainParams, steps_per_epoch: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's per-step learning rate (a resumed run picks it up from the step count).

    - step: `learning_rate` for epochs 0..lr_drop_epoch-1 (0-based), then x `lr_drop_factor`;
    - one_cycle: linear warm-up from 1/25 of the peak over `warmup_fraction` of all steps,
      then cosine down to 0;
    - cosine: cosine decay from the peak to 0.
    """
    if params.schedule == "step":
        # PiecewiseConstantDecay keeps values[0] while step <= boundary: the last step of the
        # epoch before the drop is the boundary.
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [params.lr_drop_epoch * steps_per_epoch - 1],
            [params.learning_rate, params.learning_rate * params.lr_drop_factor],
        )
    total = params.epochs * steps_per_epoch
    if params.schedule == "one_cycle":
        warmup = int(total * params.warmup_fraction)
        return keras.optimizers.schedules.CosineDecay(
            params.learning_rate / 25,
            decay_steps=total - warmup,
            warmup_target=params.learning_rate,
            warmup_steps=warmup,
        )
    return keras.optimizers.schedules.CosineDecay(params.learning_rate, decay_steps=total)


def compile_model(model: keras.Model, params: TrainParams, steps_per_epoch: int) -> None:
    lr = learning_rate(params, steps_per_epoch)
    ema = {"use_ema": True, "ema_momentum": params.ema} if params.ema else {}
    if params.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=params.weight_decay, **ema)
    elif params.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=lr, momentum=params.momentum, nesterov=True, weight_decay=params.weight_decay, **ema
        )
    else:
        optimizer = keras.optimizers.Adam(learning_rate=lr, **ema)
    if params.bn_bias_lr != 1:
        faster_bn_biases(optimizer, params.bn_bias_lr)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
        metrics=["accuracy"],
        # Several batches per call into TensorFlow: at batch 32 the per-call overhead, not the
        # arithmetic, sets the pace. The same ops run in the same order, so the weights match.
        steps_per_execution=execution_steps(steps_per_epoch, params.steps_per_execution),
    )


def faster_bn_biases(optimizer: keras.optimizers.Optimizer, factor: float) -> None:
    """Scale the learning rate of BatchNorm biases (`beta`) by `factor`, and nothing else's.

    Keras has no per-variable learning rate. Its optimizers update each variable through
    `update_step(gradient, variable, learning_rate)`, so this instance's is wrapped: the class,
    and with it the saved model's config, stays Keras' own. Weight decay, applied apart from the
    step, is unchanged.
    """
    plain = optimizer.update_step

    def update_step(gradient, variable, learning_rate):  # Keras calls it per variable
        if variable.name.split(":")[0].endswith("beta"):
            learning_rate = learning_rate * factor
        return plain(gradient, variable, learning_rate)

    optimizer.update_step = update_step


def execution_steps(steps_per_epoch: int, limit: int) -> int:
    """The largest divisor of `steps_per_epoch` not above `limit`.

    Keras runs whole executions: one that does not end with the epoch runs on into the next
    epoch's batches before the epoch-end callbacks (learning-rate step, validation, early
    stopping) fire, which would change the result.
    """
    return max(d for d in range(1, min(limit, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
