"""The params base: each stage's params.yaml section is a model of this kind in the stage's own
package, and its faults become one line that names the key.

Strict pydantic models: YAML's `yes` is not 1, nor '32' 32; an int is taken as a float.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.yamlfile import read_mapping

PARAMS_FILE = Path("params.yaml")
Section = TypeVar("Section", bound="Params")


def exact_int(value: Any) -> Any:
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
