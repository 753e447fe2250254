"""params.yaml as one typed section per stage, and its faults as one line that names the key.

Strict pydantic models: YAML's `yes` is not 1, nor '32' 32; an int is taken as a float.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from fmnist_dvc.errors import PipelineError
from fmnist_dvc.tta import Tta
from fmnist_dvc.yamlfile import read_mapping

PARAMS_FILE = Path("params.yaml")
Section = TypeVar("Section", bound="Params")


def _exact_int(value: Any) -> Any:
    """An int Literal alone takes True as 1 and 3.0 as 3."""
    if type(value) is not int:
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


Unit = Annotated[float, Field(ge=0, lt=1)]  # [0, 1): dropouts, momenta, smoothing
AtLeast1 = Annotated[int, Field(ge=1)]


class Params(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    def replace(self: Section, **changes: Any) -> Section:
        """A copy with `changes`, validated again (pydantic's model_copy would not check them)."""
        return type(self).model_validate({**dict(self), **changes})


class SeedParams(Params):
    model_config = ConfigDict(extra="ignore")  # the top level: the sections are their stages' own
    seed: Annotated[int, Field(ge=0, lt=2**32, description="NumPy and TensorFlow take 0 to 2**32 - 1")]


class DownloadParams(Params):
    sources: Annotated[list[str], Field(min_length=1)]
    timeout: Annotated[float, Field(gt=0)]  # seconds
    retries: AtLeast1


class PreprocessParams(Params):
    val_fraction: Annotated[float, Field(gt=0, lt=1)]
    train_limit: Annotated[int | None, Field(ge=20, description="null = all images")]


class EvaluateParams(Params):
    tta: Tta


class ExportParams(Params):
    formats: Annotated[list[Literal["onnx", "tflite"]], Field(min_length=1)]
    min_agreement: Annotated[float, Field(ge=0, le=1, description="share of test images")]
    max_abs_diff: Annotated[float, Field(ge=0)]


class MlpParams(Params):
    hidden_units: Annotated[list[AtLeast1], Field(min_length=1)]
    dropout: Unit


class CnnParams(Params):
    blocks: Annotated[
        list[Annotated[list[AtLeast1], Field(min_length=1)]],
        Field(min_length=1, max_length=3, description="28x28 images halve to 7x7 after two poolings"),
    ]
    kernel_size: Annotated[Literal[1, 3, 5, 7], BeforeValidator(_exact_int)]
    batch_norm: bool
    head: Literal["gap", "flatten"]
    dense_units: list[AtLeast1]
    dropout: Unit
    bn_momentum: Unit
    pool: Literal["after_block", "after_conv"]


class Toggle(Params):  # an augmentation: on or off, and its own settings
    enabled: bool


class TranslateParams(Toggle):
    pixels: Annotated[int, Field(ge=0, le=8)]


class EraseParams(Toggle):
    size: Annotated[int, Field(ge=1, le=28)]
    probability: Annotated[float, Field(ge=0, le=1)]


class ZoomParams(Toggle):
    factor: Annotated[float, Field(ge=0, lt=0.5)]


class AugmentParams(Params):
    flip: Toggle
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


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file as a mapping, or one sentence saying what is wrong with it."""
    where = "run from the repository root, where params.yaml lives"
    return read_mapping(path, where, "sections (download:, train:, ...)")


def load_seed(path: Path = PARAMS_FILE) -> int:
    """The one top-level seed every random choice derives from."""
    return load_section("", SeedParams, path).seed


def load_section(name: str, cls: type[Section], path: Path = PARAMS_FILE) -> Section:
    """Read one section ("" for the top level) into its class: unknown, missing or mistyped keys
    are errors."""
    data = read_params(path)
    try:
        return cls.model_validate(data.get(name) if name else data)
    except ValidationError as exc:
        raise PipelineError(_one_line(exc, name, cls, path)) from None


_UNKNOWN = ("extra_forbidden", "invalid_key")


def _one_line(exc: ValidationError, section: str, cls: type, path: Path) -> str:
    """One error as one line that names the full key and what to do. An unknown key goes first:
    a misspelt key is also a missing one, and the spelling is the fault to point at."""
    error = min(exc.errors(include_url=False), key=lambda e: e["type"] not in _UNKNOWN)
    ctx = error.get("ctx") or {}
    loc = [*error["loc"], *([ctx["field"]] if "field" in ctx else [])]  # a cross-key rule names its key
    key = ".".join(map(str, [section, *loc] if section else loc))
    owner = cls  # the section that holds loc[-1]
    for part in loc[:-1]:
        field = owner.model_fields.get(part)
        if not (field and isinstance(field.annotation, type) and issubclass(field.annotation, Params)):
            break
        owner = field.annotation
    if error["type"] in _UNKNOWN:
        valid = list(owner.model_fields)
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        guess = f"did you mean '{'.'.join([*key.split('.')[:-1], near[0]])}'? " if near else ""
        return f"{path}: unknown key '{key}'; {guess}valid keys: {', '.join(valid)}."
    if error["type"] == "missing":
        return f"{path}: key '{key}' is missing; add it to params.yaml."
    if error["type"] == "model_type":
        return f"{path}: '{key}:' is missing or not a mapping."
    rule = re.sub(r"^(Input|List) should", "should", error["msg"].replace(" after validation", ""))
    field = owner.model_fields.get(loc[-1])
    hint = field.description if field else None
    got = f"got {ctx.get('value', error['input'])!r}"
    return f"{path}: {key} {rule} ({f'{hint}; ' if hint else ''}{got}); fix it in params.yaml."
