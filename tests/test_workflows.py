"""The GitHub Actions workflows cannot run here: lint them, and hold their commands to the
project's own (the ones the Makefile defines and the other tests run)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT, require

WORKFLOWS = sorted(p for p in (REPO_ROOT / ".github/workflows").iterdir() if p.suffix in (".yml", ".yaml"))
MAKE_TARGETS = set(re.findall(r"^([a-z-]+):", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE))


def run_commands(workflow: Path) -> list[str]:
    """The `run:` of every step of every job, in order."""
    jobs = yaml.safe_load(workflow.read_text())["jobs"].values()
    return [step["run"] for job in jobs for step in job.get("steps", []) if "run" in step]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_workflow_runs_only_make_targets_the_makefile_has(workflow: Path) -> None:
    for command in run_commands(workflow):
        for target in re.findall(r"\bmake ([a-z-]+)", command):
            assert target in MAKE_TARGETS, f"{workflow.name} runs 'make {target}', which the Makefile lacks"


def test_test_workflow_lints_and_tests_every_push_and_pull_request() -> None:
    workflow = REPO_ROOT / ".github/workflows/test.yml"
    loaded = yaml.safe_load(workflow.read_text())
    triggers = loaded.get("on", loaded.get(True))  # PyYAML reads the bare key `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    if isinstance(triggers, dict):  # no branch or path filters: every push, every pull request
        assert triggers["push"] is None and triggers["pull_request"] is None, triggers
    commands = run_commands(workflow)
    assert "make lint" in commands and "make test" in commands


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_workflow_matches_github_schema(workflow: Path) -> None:
    # SchemaStore's workflow schema, vendored inside check-jsonschema: no network needed.
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", workflow],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_workflow_passes_zizmor(workflow: Path) -> None:
    # Expressions, permissions, injection, credentials and actions pinned by commit.
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent))
    require(None if zizmor else "zizmor is missing: pip install -e '.[dev]'")
    proc = subprocess.run([zizmor, "--offline", "--no-progress", workflow], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_report_workflow_runs_the_commands_developers_run() -> None:
    steps = yaml.safe_load((REPO_ROOT / ".github/workflows/pr-report.yml").read_text())["jobs"]["report"][
        "steps"
    ]
    commands = [step["run"] for step in steps if "run" in step]
    targets = set(re.findall(r"^([a-z-]+):", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE))
    for command in commands:
        for target in re.findall(r"\bmake ([a-z-]+)", command):
            assert target in targets, f"the workflow runs 'make {target}', which the Makefile lacks"
    assert commands[:1] == ["make setup"] and ".venv/bin/dvc repro" in commands
    report = next(c for c in commands if c.startswith("make report REV="))
    assert "origin/${GITHUB_BASE_REF}" in report
    # It posts the file the Makefile's report target writes.
    written = re.search(r"^report:.*\n\t.*-o (\S+)", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    assert written is not None and any(
        c.endswith(f" {written.group(1)}") for c in commands if "cml comment" in c
    )
