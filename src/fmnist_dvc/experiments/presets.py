"""Named parameter sets (presets/*.yaml) turned into `dvc exp run -S` arguments.

A preset holds only the keys it changes, nested as in params.yaml. Running it through
`dvc exp run` (not by editing params.yaml) keeps every preset run a DVC experiment whose
params and metrics `dvc exp show` lists side by side.

Usage: python -m fmnist_dvc.experiments.presets args presets/cnn-fast.yaml
       python -m fmnist_dvc.experiments.presets run presets/cnn-fast.yaml [dvc exp run options...]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_dvc.core.errors import exit_code
from fmnist_dvc.core.yamlfile import read_mapping
from fmnist_dvc.experiments.dvc_command import dvc_executable


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"cnn": {"dropout": 0.3}}} -> {"train.cnn.dropout": 0.3}; lists stay whole."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def set_args(preset: Path) -> list[str]:
    """`-S key=value` pairs; values in compact JSON, which DVC reads back as YAML."""
    tree = read_mapping(preset, "presets live in presets/*.yaml", "sections like params.yaml")
    args = []
    for key, value in flatten(tree).items():
        args += ["-S", f"{key}={compact(value)}"]
    return args


def compact(value: Any) -> str:
    """JSON without spaces (one shell word), floats in positional notation (5e-05 -> 0.00005)."""
    if isinstance(value, float):
        return np.format_float_positional(value, trim="-")
    if isinstance(value, list):
        return "[" + ",".join(compact(v) for v in value) + "]"
    return json.dumps(value)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] not in ("args", "run"):
        print("\n".join(line.strip() for line in __doc__.strip().splitlines()[-2:]), file=sys.stderr)
        return 2
    return exit_code(_command, args[0], Path(args[1]), args[2:])


def _command(action: str, preset: Path, dvc_args: list[str]) -> int:
    s_args = set_args(preset)
    if action == "args":
        print("\n".join(s_args))
        return 0
    return subprocess.run([dvc_executable(), "exp", "run", *s_args, *dvc_args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
