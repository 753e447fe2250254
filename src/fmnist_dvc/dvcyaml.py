"""dvc.yaml as DVC reads it, with `${paths.x}` filled in from its own `vars:`.

dvc.yaml writes each path once, in `vars:`; tools and tests that look inside it (the files a
plot reads, the arguments a stage gets) need the same values DVC uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

VARIABLE = re.compile(r"\$\{\s*([\w.-]+)\s*\}")


def load_dvc_yaml(path: Path = Path("dvc.yaml")) -> dict[str, Any]:
    """The parsed file with every `${name.key}` replaced; KeyError names a variable it lacks.

    Only the inline mappings under `vars:` count: this project keeps no variables elsewhere.
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    context: dict[str, Any] = {}
    for item in data.get("vars") or []:
        if isinstance(item, dict):
            context.update(item)

    def lookup(match: re.Match[str]) -> str:
        node: Any = context
        for key in match.group(1).split("."):
            if not isinstance(node, dict) or key not in node:
                raise KeyError(f"{path}: ${{{match.group(1)}}} is not defined under vars:")
            node = node[key]
        return str(node)

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {fill(k): fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        return VARIABLE.sub(lookup, node) if isinstance(node, str) else node

    return fill(data)
