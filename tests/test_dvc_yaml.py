"""dvc.yaml must cover every module and params key a stage really uses, or DVC skips needed reruns,
and no code the stage does not use, or DVC reruns it for nothing."""

import ast
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT, resolved_dvc_yaml

PIPELINE = resolved_dvc_yaml()["stages"]
PATHS = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["vars"][0]["paths"]


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


def covers(dep: str, module: str) -> bool:
    return module == dep or module.startswith(dep.rstrip("/") + "/")


@pytest.mark.parametrize("stage", list(PIPELINE))
def test_stage_depends_on_the_code_it_imports_and_no_other(stage: str) -> None:
    script = f"stages/{stage}.py"
    deps = [d for d in PIPELINE[stage]["deps"] if d.startswith("src/")]
    used = package_modules_used(REPO_ROOT / script)
    assert [m for m in sorted(used) if not any(covers(d, m) for d in deps)] == [], f"{stage}: not in deps"
    assert [d for d in deps if not any(covers(d, m) for m in used)] == [], f"{stage}: deps it never imports"
    assert all((REPO_ROOT / d).is_dir() or d.endswith("__init__.py") for d in deps), "packages, not files"
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


def reduced_project(folder: Path, stages: dict[str, dict]) -> None:
    """A git + DVC project whose stages run `true`, reproduced once, so that `changed` tells
    which of them DVC would run again. DVC's Python API: no process start per status."""
    from dvc.repo import Repo

    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    Repo.init(str(folder)).close()
    with Repo(str(folder)) as repo:
        repo.reproduce()


def changed(folder: Path) -> set[str]:
    """The stages DVC would run again; then runs them, so the next call starts clean."""
    from dvc.repo import Repo

    with Repo(str(folder)) as repo:
        stages = set(repo.status())
        repo.reproduce()
    return stages


def test_a_typo_key_in_a_section_makes_dvc_rerun_its_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real params lists under real DVC: stages reduced to `true`, then one typo per section."""
    monkeypatch.chdir(tmp_path)  # DVC's API, as its command, works on the current directory's project
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    reduced_project(
        tmp_path, {name: {"cmd": "true", "params": stage["params"]} for name, stage in PIPELINE.items()}
    )
    for section in PIPELINE:
        params[section]["typo_key"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert changed(tmp_path) == set(PIPELINE)


def test_editing_code_reruns_exactly_the_stages_that_import_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real code deps under real DVC: stages reduced to `true` with their script and package
    deps, the sources copied; then one module edited at a time, the status read after each."""
    monkeypatch.chdir(tmp_path)  # DVC's API, as its command, works on the current directory's project
    for folder in ("src", "stages"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / ".dvcignore", tmp_path)
    code = {
        name: [d for d in stage["deps"] if d.startswith(("src/", "stages/"))]
        for name, stage in PIPELINE.items()
    }
    reduced_project(tmp_path, {name: {"cmd": "true", "deps": deps} for name, deps in code.items()})

    def edit(module: str) -> set[str]:
        path = tmp_path / "src/fmnist_dvc" / module
        with path.open("a") as f:
            f.write("# edited\n")
        cache = path.parent / "__pycache__"  # what running the code leaves beside it
        cache.mkdir(exist_ok=True)
        (cache / f"{path.stem}.cpython-311.pyc").write_bytes(b"bytecode")
        return changed(tmp_path)

    # Tooling no stage runs, and bytecode caches beside the sources: nothing reruns.
    assert edit("experiments/report.py") == set()
    assert edit("ship/predict.py") == set()
    # A stage's own package reruns that stage alone; core/ reruns every stage.
    assert edit("evaluate/figures.py") == {"evaluate"}
    assert edit("train/resume.py") == {"train"}
    assert edit("data/idx.py") == {"download", "preprocess"}
    assert edit("core/errors.py") == set(PIPELINE)


def test_resume_fingerprints_the_code_the_train_stage_depends_on() -> None:
    """A snapshot is valid for the code DVC would rerun training for, no more and no less."""
    from fmnist_dvc.train.resume import training_code

    deps = [REPO_ROOT / d for d in PIPELINE["train"]["deps"] if d.startswith("src/")]
    expected = {p for d in deps for p in ([d] if d.suffix == ".py" else d.glob("*.py"))}
    assert set(training_code()) == expected


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
