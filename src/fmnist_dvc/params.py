"""Load and validate params.yaml: one typed section per stage, errors that name the key."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fmnist_dvc.errors import PipelineError

PARAMS_FILE = Path("params.yaml")


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


@dataclass(frozen=True)
class TrainParams:
    hidden_units: list[int]
    dropout: float
    learning_rate: float
    lr_drop_epoch: int
    lr_drop_factor: float
    epochs: int
    batch_size: int
    patience: int

    def check(self) -> None:
        _require(
            len(self.hidden_units) > 0 and all(u >= 1 for u in self.hidden_units),
            "train.hidden_units",
            "must be a non-empty list of positive integers",
            self.hidden_units,
        )
        _require(0 <= self.dropout < 1, "train.dropout", "must be in [0, 1)", self.dropout)
        _require(self.learning_rate > 0, "train.learning_rate", "must be > 0", self.learning_rate)
        _require(self.lr_drop_epoch >= 0, "train.lr_drop_epoch", "must be >= 0", self.lr_drop_epoch)
        _require(
            0 < self.lr_drop_factor <= 1, "train.lr_drop_factor", "must be in (0, 1]", self.lr_drop_factor
        )
        _require(self.epochs >= 1, "train.epochs", "must be >= 1", self.epochs)
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1", self.batch_size)
        _require(self.patience >= 1, "train.patience", "must be >= 1", self.patience)


Section = TypeVar("Section", DownloadParams, PreprocessParams, TrainParams)


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
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PipelineError(f"{path} is not valid YAML{where}; fix the syntax.") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path} must be a mapping of sections (download:, train:, ...).")
    return data


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
    data = read_params(path)
    raw = data.get(name)
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: section '{name}:' is missing or not a mapping.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean '{name}.{near[0]}'?" if near else f"valid keys: {', '.join(fields)}."
            raise PipelineError(f"{path}: unknown key '{name}.{key}'; {hint}")
    for key in fields:
        if key not in raw:
            raise PipelineError(f"{path}: key '{name}.{key}' is missing; add it to params.yaml.")
        value = raw[key]
        if isinstance(value, float) and not math.isfinite(value):
            raise PipelineError(f"{path}: {name}.{key} must be a finite number (got {value!r}).")
        if not _matches(value, hints[key]):
            raise PipelineError(f"{path}: {name}.{key} must be {_describe(hints[key])} (got {raw[key]!r}).")
    values = {k: float(v) if hints[k] is float else v for k, v in raw.items()}
    section = cls(**values)
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


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is list:
        plural = {int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(typing.get_args(hint)[0], 'values')}"
    names = {int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, str(hint))
