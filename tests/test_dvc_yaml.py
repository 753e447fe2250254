"""dvc.yaml must name every module and params key a stage really uses, or DVC skips needed reruns."""

import ast
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, resolved_dvc_yaml

PIPELINE = resolved_dvc_yaml()["stages"]
PATHS = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["vars"][0]["paths"]
DVC = str(Path(sys.executable).parent / "dvc")


def package_modules_used(script: Path) -> set[str]:
    """Every src/fmnist_dvc file a script imports, directly or through other package modules."""
    seen: set[str] = set()
    todo = [script]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if not name.startswith("fmnist_dvc"):
                    continue
                parts = name.split(".")
                # Importing a.b runs a/__init__.py first, so every enclosing package counts too.
                candidates = [Path("src", *parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
                candidates.append(Path("src", *parts[:-1], f"{parts[-1]}.py"))
                for rel in candidates:
                    if (REPO_ROOT / rel).is_file() and str(rel) not in seen:
                        seen.add(str(rel))
                        todo.append(REPO_ROOT / rel)
    return seen


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_stage_depends_on_every_module_it_imports(stage: str) -> None:
    script = f"stages/{stage}.py"
    deps = {d for d in PIPELINE[stage]["deps"] if d.startswith("src/")}
    used = package_modules_used(REPO_ROOT / script)
    assert used == deps, f"{stage}: dvc.yaml deps differ from imports"
    assert script in PIPELINE[stage]["deps"]


def path_of(entry: str | dict) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_stage_gets_the_paths_dvc_tracks_as_arguments(stage: str) -> None:
    # dvc.yaml writes each path once (vars:); the script hard-codes none.
    cmd = shlex.split(PIPELINE[stage]["cmd"])
    assert cmd[:3] == ["PYTHONPATH=src", "python", f"stages/{stage}.py"]
    tracked = {path_of(p) for p in PIPELINE[stage]["deps"] + PIPELINE[stage]["outs"]}
    untracked = [arg for arg in cmd[3:] if arg not in tracked]
    # The resume snapshots are no output: DVC would delete them before the rerun that needs them.
    assert untracked == ([PATHS["resume"]] if stage == "train" else [])
    script = (REPO_ROOT / f"stages/{stage}.py").read_text()
    assert 'Path("' not in script and "data/" not in script and "metrics/" not in script


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_stage_depends_on_its_whole_params_section(stage: str) -> None:
    # The whole section, not a list of keys: a typo'd key beside a real one must rerun the
    # stage, whose validation then rejects it, instead of being skipped as unrelated.
    script = (REPO_ROOT / f"stages/{stage}.py").read_text()
    assert f'"{stage}"' in script  # the section it loads
    expected = {stage, "seed"} if "load_seed()" in script else {stage}
    assert set(PIPELINE[stage]["params"]) == expected


def test_a_typo_key_in_a_section_makes_dvc_rerun_its_stage(tmp_path: Path) -> None:
    """The real params lists under real DVC: stages reduced to `true`, then one typo per section."""
    stages = {name: {"cmd": "true", "params": stage["params"]} for name, stage in PIPELINE.items()}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "repro", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    for section in PIPELINE:
        params[section]["typo_key"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    status = subprocess.run(
        [DVC, "status", "--json"], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    assert set(json.loads(status)) == set(PIPELINE)


def cached_outputs() -> list[str]:
    outs = []
    for stage in PIPELINE.values():
        for out in stage.get("outs", []):
            if isinstance(out, str) or next(iter(out.values())).get("cache", True) is not False:
                outs.append(path_of(out))
    return outs


@pytest.mark.parametrize("out", cached_outputs())
def test_cached_outputs_are_git_ignored_before_any_run(out: str) -> None:
    # DVC writes these .gitignore entries only when a stage succeeds; committed up front, a
    # failed run followed by `git add -A` cannot put the data into git.
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", out], cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, f"{out} is not in a committed .gitignore"
