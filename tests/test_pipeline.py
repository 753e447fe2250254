"""End to end: the real pipeline under real DVC in a temporary git repository, on a real subset.

The main/short project is built once per test run (conftest's `two_branches`, which
test_collaboration shares) with what each command printed; this module forces a rerun of main
in its own copy, then checks those records and the repository left behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.browser import plots_without_chart, rendered_dom, script_errors
from tests.dvcrepo import BIN, copy_project, dvc, exp_runs, lock_without_timing, run, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(two_branches: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Branch main: a small run (2,000 images, 2 epochs), then forced to run again; branch short:
    the same with 1 epoch, checked out."""
    built, record = two_branches
    repo = copy_project(built, tmp_path_factory.mktemp("e2e") / "repo")
    run(["git", "checkout", "-q", "main"], repo)
    dvc("checkout", cwd=repo)
    timeless_lock, metrics = lock_without_timing(repo), (repo / "metrics/evaluate.json").read_bytes()
    forced, second = forced_repro_meets_a_second(repo)
    record = {
        **record,
        "repo": repo,
        "forced": forced,
        "second": second,
        "forced_same_lock": lock_without_timing(repo) == timeless_lock,
        "forced_same_metrics": (repo / "metrics/evaluate.json").read_bytes() == metrics,
    }
    run(["git", "checkout", "-q", "--force", "short"], repo)  # drop the forced run's timings
    dvc("checkout", "--force", cwd=repo)
    return record


def forced_repro_meets_a_second(repo: Path) -> tuple[str, str]:
    """`dvc repro -f`, and while it trains a second `dvc repro` (which DVC must refuse, exit 255):
    what each printed."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "-f"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        rwlock, deadline = repo / ".dvc/tmp/rwlock", time.monotonic() + 300
        while not (rwlock.exists() and "/models" in rwlock.read_text()):  # train writes models/
            assert first.poll() is None and time.monotonic() < deadline, (
                "the forced repro never reached train"
            )
            time.sleep(0.1)
        second = dvc("repro", cwd=repo, expect=255)
    finally:
        out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out
    return out, second.stdout + second.stderr


def test_repro_builds_every_output(project: dict) -> None:
    repo = project["repo"]
    assert stages_run(project["first"]) == ["download", "preprocess", "train", "evaluate"]
    assert "Test accuracy:" in project["first"]
    labels = np.load(repo / "data/prepared/train_labels.npy", allow_pickle=False)
    assert labels.dtype == np.uint8 and len(labels) == 1800
    assert (repo / "models/model.keras").stat().st_size > 1_000_000
    main_metrics = json.loads(run(["git", "show", "main:metrics/evaluate.json"], repo).stdout)["test"]
    assert main_metrics["images"] == 10000
    assert 0.5 < main_metrics["accuracy"] <= 1.0  # 1,800 images, 2 epochs: well above chance (0.1)
    assert 0 < main_metrics["loss"] < np.log(10)  # better than a uniform guess


def test_cached_outputs_stay_out_of_git(project: dict) -> None:
    tracked = run(["git", "ls-files"], project["repo"]).stdout.split()
    assert not [f for f in tracked if f.startswith(("data/raw", "data/prepared", "models/"))]
    assert "metrics/evaluate.json" in tracked and "metrics/test/predictions.csv" in tracked


def test_second_repro_changes_nothing(project: dict) -> None:
    assert stages_run(project["noop"]) == []
    assert project["noop_kept_lock"] and project["noop_kept_model"]
    assert "Data and pipelines are up to date" in project["status"]


def test_forced_rerun_reproduces_every_output_byte_for_byte(project: dict) -> None:
    assert stages_run(project["forced"]) == ["download", "preprocess", "train", "evaluate"]
    # dvc.lock holds the md5 of data/prepared, models/ and every metrics file.
    assert project["forced_same_lock"] and project["forced_same_metrics"]


def test_a_second_repro_at_the_same_time_is_refused(project: dict) -> None:
    # It met the forced rerun above while that one trained; the forced one still finished.
    message = project["second"].lower()
    assert "lock" in message or "busy" in message, message


def test_changing_epochs_reruns_only_train_and_evaluate(project: dict) -> None:
    assert stages_run(project["short"]) == ["train", "evaluate"]


def test_queued_sweep_runs_each_experiment_with_its_own_metrics(project: dict) -> None:
    repo = project["repo"]
    # A grid of two tiny experiments on top of branch `short`: the seed MLP and a small CNN.
    dvc(
        "exp",
        "run",
        "--queue",
        "-S",
        "train.model=mlp,cnn",
        "-S",
        "train.cnn.blocks=[[8],[16]]",
        "-S",
        "train.batch_size=128",
        cwd=repo,
    )
    dvc("queue", "start", "-j", "2", cwd=repo)
    deadline = time.monotonic() + 900
    while True:
        status = dvc("queue", "status", cwd=repo).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.monotonic() < deadline, f"queue still busy after 15 minutes:\n{status}"
        time.sleep(5)
    # A failed run would still show the baseline's git-tracked metrics: check the state too.
    states = re.findall(r"^\S+\s+(\S+)\s+.*\s(Success|Failed|Queued|Running)\s*$", status, re.M)
    assert sorted(state for _, state in states) == ["Success", "Success"], status
    runs = exp_runs(json.loads(dvc("exp", "show", "--json", cwd=repo).stdout))
    assert sorted(r["name"] for r in runs) == sorted(name for name, _ in states)
    assert [r["error"] for r in runs] == [None, None]
    models = sorted(r["params"]["params.yaml"]["data"]["train"]["model"] for r in runs)
    assert models == ["cnn", "mlp"]
    accuracies = {
        r["params"]["params.yaml"]["data"]["train"]["model"]: r["metrics"]["metrics/evaluate.json"]["data"][
            "test"
        ]["accuracy"]
        for r in runs
    }
    assert accuracies["mlp"] != accuracies["cnn"]
    assert accuracies["mlp"] > 0.5  # (after 1 epoch the CNN's batch-norm statistics are barely warm)
    table = dvc("exp", "show", "--md", cwd=repo).stdout
    assert "test.accuracy" in table and "train.model" in table
    # The accuracy-against-minutes figure reads both experiments' dvclive logs from DVC's cache.
    names = sorted(r["name"] for r in runs)
    figure = repo / "minutes.png"
    run([str(BIN / "python"), "-m", "fmnist_dvc.experiments.budget_plot", *names, "-o", str(figure)], repo)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run(
        [str(BIN / "python"), "-m", "fmnist_dvc.experiments.budget_plot", "no-such-exp"], repo, expect=1
    )
    assert bad.stderr.strip().startswith("error: no-such-exp: cannot read metrics/time/epochs.tsv")


def test_metrics_and_params_diff_between_branches(project: dict) -> None:
    repo = project["repo"]
    metrics = json.loads(dvc("metrics", "diff", "main", "short", "--json", cwd=repo).stdout)
    accuracy = metrics["metrics/evaluate.json"]["test.accuracy"]
    assert accuracy["old"] != accuracy["new"]
    assert accuracy["diff"] == pytest.approx(accuracy["new"] - accuracy["old"])
    assert "train/accuracy" not in json.dumps(metrics)  # validation curves are plots, not metrics
    params = json.loads(dvc("params", "diff", "main", "short", "--json", cwd=repo).stdout)
    assert params == {"params.yaml": {"train.epochs": {"old": 2, "new": 1, "diff": -1}}}
    text = dvc("metrics", "diff", "main", "short", cwd=repo).stdout
    assert "test.accuracy" in text


def test_plots_diff_renders_both_revisions_offline(project: dict, tmp_path: Path) -> None:
    repo = project["repo"]
    dvc("plots", "diff", "main", "short", "-o", str(tmp_path / "diff"), cwd=repo)
    page = tmp_path / "diff" / "index.html"
    source = page.read_text()
    assert '"rev": "main"' in source and '"rev": "short"' in source
    assert not re.search(r"<script[^>]+src=", source)  # nothing fetched from a CDN
    dom = rendered_dom(page)
    assert script_errors(dom) == ""
    assert plots_without_chart(source, dom) == []
    assert len(re.findall(r'<div id = "', source)) == 6  # the Vega plots
    images = re.findall(r'<img src="static/(\w+?)_metrics_', source)
    assert sorted(images) == ["main"] * 3 + ["short"] * 3  # each PNG plot, from both revisions


def test_render_check_catches_a_page_whose_scripts_fail(project: dict, tmp_path: Path) -> None:
    """Negative control: without vega-embed the same checks must report every plot."""
    repo = project["repo"]
    dvc("plots", "show", "-o", str(tmp_path / "show"), cwd=repo)
    page = tmp_path / "show" / "index.html"
    source = page.read_text()
    broken = re.sub(r"<!-- vega-embed [\d.]+ -->\n<script>.*?</script>", "", source, count=1, flags=re.S)
    assert broken != source
    page.write_text(broken)
    dom = rendered_dom(page)
    assert "vegaEmbed is not defined" in script_errors(dom)
    assert len(plots_without_chart(broken, dom)) == 6


def test_a_missing_plot_file_is_named_and_the_rest_still_render(project: dict, tmp_path: Path) -> None:
    repo = project["repo"]
    # A git-tracked plot file: DVC would read a missing DVC-cached one (metrics/train) from its cache.
    lost = repo / "metrics/test/predictions.csv"
    saved = lost.read_bytes()
    lost.unlink()
    try:
        proc = run(
            [str(BIN / "python"), "-m", "fmnist_dvc.experiments.plots", "show", "-o", str(tmp_path / "p")],
            repo,
            expect=1,
        )
    finally:
        lost.write_bytes(saved)
    for plot in ("confusion", "confusion_normalized"):
        assert f"error: plot '{plot}' (workspace): metrics/test/predictions.csv is missing" in proc.stderr
    page = tmp_path / "p" / "index.html"
    source = page.read_text()
    dom = rendered_dom(page)
    assert set(plots_without_chart(source, dom)) <= {"confusion", "confusion_normalized"}
    assert 'id = "loss"' in source and 'id = "f1_per_class"' in source
    assert "loss" not in plots_without_chart(source, dom)


def test_report_compares_the_workspace_with_a_revision_in_markdown(project: dict, tmp_path: Path) -> None:
    repo = project["repo"]  # on branch short: 1 epoch, against main's 2
    out = tmp_path / "report.md"
    run(
        [
            str(BIN / "python"),
            "-m",
            "fmnist_dvc.experiments.report",
            "main",
            "-o",
            str(out),
            "--plots-dir",
            str(tmp_path / "p"),
        ],
        repo,
    )
    text = out.read_text()
    main_sha = run(["git", "rev-parse", "--short", "main"], repo).stdout.strip()
    assert f"vs `main` (`{main_sha}`)" in text
    metrics = text.split("### Metrics")[1].split("### Params")[0]
    assert re.search(r"\| metrics/evaluate\.json\s*\| test\.accuracy\s*\|", metrics), metrics
    params = text.split("### Params")[1].split("### Plots")[0]
    assert re.search(r"\| params\.yaml\s*\| train\.epochs\s*\| 2\s*\| 1\s*\|", params), params
    assert (tmp_path / "p" / "index.html").is_file()
    bad = run([str(BIN / "python"), "-m", "fmnist_dvc.experiments.report", "no-such-branch"], repo, expect=1)
    assert bad.stderr.strip().splitlines() == [
        "error: git cannot find revision 'no-such-branch'; check the name (git branch -a, git log)."
    ]
