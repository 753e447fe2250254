"""Read a YAML mapping (params.yaml, a preset) as DVC reads it, or fail with one sentence.

DVC reads params.yaml with ruamel.yaml's safe loader (YAML 1.2), so `dvc exp run -S`,
`dvc params diff` and our validation see the same values: 1e-05 is a float, `yes` a string,
and a key given twice is an error rather than the last value silently winning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.constructor import DuplicateKeyError

from fmnist_dvc.core.errors import PipelineError


def read_mapping(path: Path, where: str, shape: str) -> dict[str, Any]:
    """The file's top-level mapping; `where` says where such files live, `shape` what they hold."""
    try:
        data = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; {where}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} cannot be read ({exc}); check the file.") from None
    except DuplicateKeyError as exc:
        key = re.search(r'duplicate key "(.*?)" with value', str(exc.problem))
        name = f"'{key.group(1)}'" if key else "a key"
        line = f" (again at line {exc.problem_mark.line + 1})" if exc.problem_mark else ""
        raise PipelineError(f"{path} gives {name} twice in one mapping{line}; keep one of them.") from None
    except YAMLError as exc:
        raise PipelineError(f"{path} is not valid YAML{_fault(exc)}; fix the syntax.") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path} must be a mapping of {shape}.")
    return data


def _fault(exc: YAMLError) -> str:
    """' at line 25: expected ',' or ']', but got ':' (while parsing a flow sequence at line 24)'"""
    mark, context_mark = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    text = f" at line {mark.line + 1}: {' '.join(str(getattr(exc, 'problem', '')).split())}"
    context = getattr(exc, "context", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        text += f" ({' '.join(str(context).split())} at line {context_mark.line + 1})"
    return text
