"""params.yaml's train section: the model, its augmentation and the optimisation."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from fmnist_dvc.core.params import AtLeast1, Params, Unit, exact_int


class MlpParams(Params):
    hidden_units: Annotated[list[AtLeast1], Field(min_length=1)]
    dropout: Unit


class CnnParams(Params):
    blocks: Annotated[
        list[Annotated[list[AtLeast1], Field(min_length=1)]],
        Field(min_length=1, max_length=3, description="28x28 images halve to 7x7 after two poolings"),
    ]
    kernel_size: Annotated[Literal[1, 3, 5, 7], BeforeValidator(exact_int)]
    batch_norm: bool
    head: Literal["gap", "flatten"]
    dense_units: list[AtLeast1]
    dropout: Unit
    bn_momentum: Unit
    pool: Literal["after_block", "after_conv"]
    residual: bool
    whiten: Annotated[
        Literal[0, 2, 3], BeforeValidator(exact_int), Field(description="0 = off; else the patch size")
    ]

    @model_validator(mode="after")
    def _residual_needs_one_width_per_block(self) -> CnnParams:
        if self.residual and any(len(set(block)) > 1 for block in self.blocks):
            message = "adds a block's first and last convolutions, so each block needs one width"
            raise PydanticCustomError("residual_widths", message, {"field": "residual", "value": self.blocks})
        return self


class Toggle(Params):  # an augmentation: on or off, and its own settings
    enabled: bool


class TranslateParams(Toggle):
    pixels: Annotated[int, Field(ge=0, le=8)]


class EraseParams(Toggle):
    size: Annotated[int, Field(ge=1, le=28)]
    probability: Annotated[float, Field(ge=0, le=1)]


class ZoomParams(Toggle):
    factor: Annotated[float, Field(ge=0, lt=0.5)]


class FlipParams(Toggle):
    mode: Annotated[
        Literal["random", "alternate"], Field(description="alternate: each image flips every other epoch")
    ]


class AugmentParams(Params):
    flip: FlipParams
    translate: TranslateParams
    erase: EraseParams
    zoom: ZoomParams

    @property
    def any_enabled(self) -> bool:
        return any(section.enabled for _, section in self)


class TrainParams(Params):
    model: Literal["mlp", "cnn"]
    mlp: MlpParams
    cnn: CnnParams
    augment: AugmentParams
    optimizer: Literal["adam", "adamw", "sgd"]
    learning_rate: Annotated[float, Field(gt=0)]
    weight_decay: Annotated[float, Field(ge=0)]
    momentum: Unit
    ema: Annotated[Unit, Field(description="0 = off")]
    bn_bias_lr: Annotated[float, Field(gt=0, description="BatchNorm biases' learning rate, x the others'")]
    schedule: Literal["step", "one_cycle", "cosine"]
    lr_drop_epoch: Annotated[int, Field(ge=0)]
    lr_drop_factor: Annotated[float, Field(gt=0, le=1)]
    warmup_fraction: Unit
    label_smoothing: Unit
    epochs: AtLeast1
    batch_size: AtLeast1
    patience: AtLeast1
    steps_per_execution: AtLeast1
    threads: Annotated[int, Field(ge=0, description="0 = one per CPU core")]
    backend: Literal["tensorflow", "jax"]

    @model_validator(mode="after")
    def _weight_decay_needs_a_decoupled_optimizer(self) -> TrainParams:
        if self.weight_decay and self.optimizer not in ("adamw", "sgd"):  # adam: compile_model drops it
            message = "applies only to optimizers adamw and sgd; set it to 0 or choose one of them"
            raise PydanticCustomError(
                "weight_decay_unused", message, {"field": "weight_decay", "value": self.weight_decay}
            )
        return self

    @model_validator(mode="after")
    def _bn_bias_lr_needs_batch_norm(self) -> TrainParams:
        if self.bn_bias_lr != 1 and (self.model != "cnn" or not self.cnn.batch_norm):
            message = "speeds up BatchNorm biases, which only model cnn with cnn.batch_norm has; set it to 1"
            raise PydanticCustomError(
                "bn_bias_lr_unused", message, {"field": "bn_bias_lr", "value": self.bn_bias_lr}
            )
        return self
