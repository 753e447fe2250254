"""Read a YAML mapping (params.yaml, a preset) the way DVC writes it, or fail with one sentence."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fmnist_dvc.errors import PipelineError


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where 1e-05 (no dot) is a string; DVC's `-S` writes YAML 1.2,
    where it is a float. Read such numbers as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_mapping(path: Path, where: str, shape: str) -> dict[str, Any]:
    """The file's top-level mapping; `where` says where such files live, `shape` what they hold."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; {where}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} cannot be read ({exc}); check the file.") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path} is not valid YAML{_fault(exc)}; fix the syntax.") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path} must be a mapping of {shape}.")
    return data


def _fault(exc: yaml.YAMLError) -> str:
    """' at line 25: expected ',' or ']', but got ':' (while parsing a flow sequence at line 24)'"""
    mark, context_mark = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    text = f" at line {mark.line + 1}: {' '.join(str(getattr(exc, 'problem', '')).split())}"
    context = getattr(exc, "context", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        text += f" ({' '.join(str(context).split())} at line {context_mark.line + 1})"
    return text
