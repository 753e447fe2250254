"""Load and validate params.yaml: one typed section per stage, errors that name the key."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fmnist_dvc.errors import PipelineError

PARAMS_FILE = Path("params.yaml")


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where 1e-05 (no dot) is a string; DVC's `-S` writes YAML 1.2,
    where it is a float. Read such numbers as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass(frozen=True)
class DownloadParams:
    sources: list[str]
    timeout: float
    retries: int

    def check(self) -> None:
        _require(len(self.sources) > 0, "download.sources", "must list at least one source")
        _require(self.timeout > 0, "download.timeout", "must be > 0 seconds", self.timeout)
        _require(self.retries >= 1, "download.retries", "must be >= 1", self.retries)


@dataclass(frozen=True)
class PreprocessParams:
    val_fraction: float
    train_limit: int | None

    def check(self) -> None:
        _require(
            0 < self.val_fraction < 1,
            "preprocess.val_fraction",
            "must be between 0 and 1 (exclusive)",
            self.val_fraction,
        )
        if self.train_limit is not None:
            _require(
                self.train_limit >= 20,
                "preprocess.train_limit",
                "must be null (all images) or >= 20",
                self.train_limit,
            )


TTA_CHOICES = ("none", "flip", "flip_translate")


@dataclass(frozen=True)
class EvaluateParams:
    tta: str

    def check(self) -> None:
        _require_choice("evaluate.tta", self.tta, TTA_CHOICES)


MODELS = ("mlp", "cnn")
CNN_HEADS = ("gap", "flatten")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("step", "one_cycle", "cosine")
BACKENDS = ("tensorflow", "jax")


@dataclass(frozen=True)
class MlpParams:
    hidden_units: list[int]
    dropout: float

    def check(self) -> None:
        _require(
            len(self.hidden_units) > 0 and all(u >= 1 for u in self.hidden_units),
            "train.mlp.hidden_units",
            "must be a non-empty list of positive integers",
            self.hidden_units,
        )
        _require(0 <= self.dropout < 1, "train.mlp.dropout", "must be in [0, 1)", self.dropout)


@dataclass(frozen=True)
class CnnParams:
    blocks: list[list[int]]
    kernel_size: int
    batch_norm: bool
    head: str
    dense_units: list[int]
    dropout: float
    bn_momentum: float

    def check(self) -> None:
        _require_choice("train.cnn.head", self.head, CNN_HEADS)
        _require(0 <= self.bn_momentum < 1, "train.cnn.bn_momentum", "must be in [0, 1)", self.bn_momentum)
        _require(
            len(self.blocks) > 0 and all(len(b) > 0 and min(b) >= 1 for b in self.blocks),
            "train.cnn.blocks",
            "must be a non-empty list of non-empty lists of filter counts",
            self.blocks,
        )
        _require(
            len(self.blocks) <= 3,
            "train.cnn.blocks",
            "may hold at most 3 blocks (28x28 images halve to 7x7 after two poolings)",
            self.blocks,
        )
        _require(
            self.kernel_size in (1, 3, 5, 7),
            "train.cnn.kernel_size",
            "must be 1, 3, 5 or 7",
            self.kernel_size,
        )
        _require(
            all(u >= 1 for u in self.dense_units),
            "train.cnn.dense_units",
            "must list positive integers",
            self.dense_units,
        )
        _require(0 <= self.dropout < 1, "train.cnn.dropout", "must be in [0, 1)", self.dropout)


@dataclass(frozen=True)
class FlipParams:
    enabled: bool


@dataclass(frozen=True)
class TranslateParams:
    enabled: bool
    pixels: int

    def check(self) -> None:
        _require(0 <= self.pixels <= 8, "train.augment.translate.pixels", "must be in 0-8", self.pixels)


@dataclass(frozen=True)
class EraseParams:
    enabled: bool
    size: int
    probability: float

    def check(self) -> None:
        _require(1 <= self.size <= 28, "train.augment.erase.size", "must be in 1-28", self.size)
        _require(
            0 <= self.probability <= 1,
            "train.augment.erase.probability",
            "must be in [0, 1]",
            self.probability,
        )


@dataclass(frozen=True)
class ZoomParams:
    enabled: bool
    factor: float

    def check(self) -> None:
        _require(0 <= self.factor < 0.5, "train.augment.zoom.factor", "must be in [0, 0.5)", self.factor)


@dataclass(frozen=True)
class AugmentParams:
    flip: FlipParams
    translate: TranslateParams
    erase: EraseParams
    zoom: ZoomParams

    @property
    def any_enabled(self) -> bool:
        return any(getattr(self, f.name).enabled for f in dataclasses.fields(self))


@dataclass(frozen=True)
class TrainParams:
    model: str
    mlp: MlpParams
    cnn: CnnParams
    augment: AugmentParams
    optimizer: str
    learning_rate: float
    weight_decay: float
    momentum: float
    ema: float
    schedule: str
    lr_drop_epoch: int
    lr_drop_factor: float
    warmup_fraction: float
    label_smoothing: float
    epochs: int
    batch_size: int
    patience: int
    steps_per_execution: int
    threads: int
    backend: str

    def check(self) -> None:
        _require_choice("train.model", self.model, MODELS)
        _require_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _require_choice("train.schedule", self.schedule, SCHEDULES)
        _require(self.learning_rate > 0, "train.learning_rate", "must be > 0", self.learning_rate)
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0", self.weight_decay)
        _require(
            self.optimizer in ("adamw", "sgd") or self.weight_decay == 0,
            "train.weight_decay",
            "applies only to optimizers adamw and sgd; set it to 0 or choose one of them",
            self.weight_decay,
        )
        _require(0 <= self.momentum < 1, "train.momentum", "must be in [0, 1)", self.momentum)
        _require(0 <= self.ema < 1, "train.ema", "must be in [0, 1) (0 = off)", self.ema)
        _require(self.lr_drop_epoch >= 0, "train.lr_drop_epoch", "must be >= 0", self.lr_drop_epoch)
        _require(
            0 < self.lr_drop_factor <= 1, "train.lr_drop_factor", "must be in (0, 1]", self.lr_drop_factor
        )
        _require(
            0 <= self.warmup_fraction < 1, "train.warmup_fraction", "must be in [0, 1)", self.warmup_fraction
        )
        _require(
            0 <= self.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)", self.label_smoothing
        )
        _require(self.epochs >= 1, "train.epochs", "must be >= 1", self.epochs)
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1", self.batch_size)
        _require(self.patience >= 1, "train.patience", "must be >= 1", self.patience)
        _require(
            self.steps_per_execution >= 1,
            "train.steps_per_execution",
            "must be >= 1",
            self.steps_per_execution,
        )
        _require(self.threads >= 0, "train.threads", "must be >= 0 (0 = one per CPU core)", self.threads)
        _require_choice("train.backend", self.backend, BACKENDS)


Section = TypeVar("Section")


def _require(ok: bool, key: str, rule: str, value: Any = dataclasses.MISSING) -> None:
    if not ok:
        got = "" if value is dataclasses.MISSING else f" (got {value!r})"
        raise PipelineError(f"params.yaml: {key} {rule}{got}; fix it in params.yaml.")


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Parse the whole params file, failing with a sentence instead of a YAML traceback."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(
            f"{path} not found; run from the repository root, where params.yaml lives."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} cannot be read ({exc}); check the file.") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path} is not valid YAML{_yaml_fault(exc)}; fix the syntax.") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path} must be a mapping of sections (download:, train:, ...).")
    return data


def _yaml_fault(exc: yaml.YAMLError) -> str:
    """' at line 25: expected ',' or ']', but got ':' (while parsing a flow sequence at line 24)'"""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return ""
    text = f" at line {mark.line + 1}"
    problem = getattr(exc, "problem", None)
    if problem:
        text += ": " + " ".join(str(problem).split())
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        text += f" ({' '.join(str(context).split())} at line {context_mark.line + 1})"
    return text


def _require_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PipelineError(
            f"params.yaml: {key} is {value!r}, not one of the valid choices: {', '.join(choices)}."
        )


def load_seed(path: Path = PARAMS_FILE) -> int:
    """The one top-level seed every random choice derives from."""
    data = read_params(path)
    if "seed" not in data:
        raise PipelineError(f"{path}: the top-level key 'seed' is missing; add e.g. 'seed: 42'.")
    seed = data["seed"]
    if not _matches(seed, int) or not 0 <= seed < 2**32:
        raise PipelineError(f"{path}: seed must be an integer from 0 to 2**32 - 1 (got {seed!r}).")
    return seed


def load_section(name: str, cls: type[Section], path: Path = PARAMS_FILE) -> Section:
    """Read one section into its dataclass: unknown, missing or mistyped keys are errors."""
    return _build(cls, read_params(path).get(name), name, path)


def _build(cls: type[Section], raw: Any, prefix: str, path: Path) -> Section:
    """Fill `cls` from a mapping, recursing into nested dataclass fields (train.cnn, ...)."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: '{prefix}:' is missing or not a mapping.")
    fields = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            guess = f"did you mean '{prefix}.{near[0]}'? " if near else ""
            raise PipelineError(
                f"{path}: unknown key '{prefix}.{key}'; {guess}valid keys: {', '.join(fields)}."
            )
    values = {}
    for key in fields:
        if key not in raw:
            raise PipelineError(f"{path}: key '{prefix}.{key}' is missing; add it to params.yaml.")
        value, hint = raw[key], hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{prefix}.{key}", path)
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise PipelineError(f"{path}: {prefix}.{key} must be a finite number (got {value!r}).")
        if not _matches(value, hint):
            raise PipelineError(f"{path}: {prefix}.{key} must be {_describe(hint)} (got {value!r}).")
        values[key] = float(value) if hint is float else value
    section = cls(**values)
    if hasattr(section, "check"):
        section.check()
    return section


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):  # YAML 'yes' must not pass as 1
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings"}.get(hint, "values")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is list:
        item = typing.get_args(hint)[0]
        if typing.get_origin(item) is list:
            return f"a list of lists of {_plural(typing.get_args(item)[0])}"
        return f"a list of {_plural(item)}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(hint, str(hint))
