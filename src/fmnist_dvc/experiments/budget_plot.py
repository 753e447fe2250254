"""Accuracy against training minutes, a line per experiment, read from the experiments' dvclive logs.

    python -m fmnist_dvc.experiments.budget_plot EXP [EXP ...] [-o docs/accuracy-vs-minutes.png]

An EXP is a DVC experiment name (or any git revision) whose outputs are in the local DVC cache
(`dvc exp pull` / `dvc pull` first for others' runs). Its dvclive logs give the validation
accuracy at each epoch's end, metrics/time/epochs.tsv the minutes since training began, and
metrics/evaluate.json the final test accuracy (with test-time augmentation where evaluate.tta
is on), drawn as a marker. Experiments named PRESET-sSEED (plus any -suffix) share a colour.
The 10- and 30-minute budgets of the cnn-fast and cnn-long presets are marked.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path

import pandas as pd

from fmnist_dvc.core.errors import PipelineError, exit_code
from fmnist_dvc.core.figures import plt, save_png

LOGS = "metrics/train/plots/metrics"
BUDGETS = {10: "cnn-fast budget", 30: "cnn-long budget"}
BUDGET_GID = "budget"  # marks the budget lines, dashed like a group's second run


def read_run(rev: str) -> tuple[pd.DataFrame, dict]:
    """Per-epoch (minutes, val accuracy) and the test metrics of one revision."""
    import dvc.api
    from dvc.exceptions import DvcException

    def read(path: str) -> str:
        try:
            with dvc.api.open(path, rev=rev) as f:
                return f.read()
        except (DvcException, FileNotFoundError) as exc:
            raise PipelineError(
                f"{rev}: cannot read {path} ({type(exc).__name__}); check the name with 'dvc exp show', "
                "fetch its outputs with 'dvc exp pull' or 'dvc pull', and train with this version's code "
                "(older runs logged no minutes)."
            ) from None

    minutes = pd.read_csv(io.StringIO(read("metrics/time/epochs.tsv")), sep="\t")
    accuracy = pd.read_csv(io.StringIO(read(f"{LOGS}/eval/accuracy.tsv")), sep="\t")
    curve = minutes[["step", "minutes"]].merge(accuracy[["step", "accuracy"]], on="step")
    return curve, json.loads(read("metrics/evaluate.json"))["test"]


def group(name: str) -> str:
    """cnn-fast-s2 (or cnn-fast-s2-rerun) -> cnn-fast: runs of one recipe share a colour."""
    return re.sub(r"-s\d+(-[\w-]+)?$", "", name)


def figure(runs: dict[str, tuple[pd.DataFrame, dict]]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    colours = {g: f"C{i}" for i, g in enumerate(dict.fromkeys(group(n) for n in runs))}
    seen: dict[str, int] = {}
    for name, (curve, test) in runs.items():
        g = group(name)
        style = ("-", "--", ":", "-.")[seen.setdefault(g, 0) % 4]
        seen[g] += 1
        ax.plot(
            curve.minutes, curve.accuracy, color=colours[g], ls=style, lw=1.3, label=f"{name} (validation)"
        )
        final = test.get("tta_accuracy", test["accuracy"])
        ax.plot(curve.minutes.iloc[-1], final, marker="*", ms=11, color=colours[g], ls="none")
    # The first epoch starts far below the rest: let the axis show the part where runs differ.
    later = [a for curve, _ in runs.values() for a in curve.accuracy.iloc[1:]]
    if later:
        ax.set_ylim(bottom=min(later) - 0.01)
    for minutes, label in BUDGETS.items():
        if ax.get_xlim()[1] >= minutes * 0.8:
            ax.axvline(minutes, color="grey", ls="--", lw=1, gid=BUDGET_GID)
            ax.text(minutes, ax.get_ylim()[1], f"{label} ", rotation=90, ha="right", va="top", color="grey")
    ax.plot([], [], marker="*", ms=11, color="black", ls="none", label="test accuracy at the end (TTA)")
    ax.set_xlabel("Minutes since training began")
    ax.set_ylabel("Accuracy")
    ax.set_title("Validation accuracy per epoch against training time (first epoch may be below the axis)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmnist_dvc.experiments.budget_plot", description=__doc__.split("\n")[0]
    )
    parser.add_argument("revs", nargs="+", metavar="EXP")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/accuracy-vs-minutes.png"))
    return exit_code(_command, parser.parse_args(argv))


def _command(args: argparse.Namespace) -> None:
    runs = {rev: read_run(rev) for rev in args.revs}
    save_png(figure(runs), args.output)
    print(f"budget_plot: wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
