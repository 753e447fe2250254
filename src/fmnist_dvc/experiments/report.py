"""A markdown comparison of the workspace with a git revision, ready for a pull-request comment.

Made of DVC's own tables (`dvc metrics diff --md`, `dvc params diff --md`) and the page of
`dvc plots diff`, so it works in any CI that can run DVC and post a markdown file.

Usage: python -m fmnist_dvc.experiments.report REV [-o report.md] [--plots-dir dvc_plots]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from fmnist_dvc.core.atomic import atomic_write_text
from fmnist_dvc.core.errors import PipelineError, exit_code
from fmnist_dvc.experiments.dvc_command import dvc_executable
from fmnist_dvc.experiments.plots import plot_errors


def build_report(rev: str, plots_dir: Path) -> str:
    """The report's markdown; writes the plots page to `plots_dir/index.html` on the way."""
    rev_sha = _git("rev-parse", "--short", "--verify", f"{rev}^{{commit}}", what=f"revision '{rev}'")
    head_sha = _git("rev-parse", "--short", "HEAD", what="HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", what="the workspace") != ""
    metrics = _dvc("metrics", "diff", rev, "--md")
    params = _dvc("params", "diff", rev, "--md")
    _dvc("plots", "diff", rev, "-o", str(plots_dir))
    missing = plot_errors(["diff", rev])  # DVC draws the page even when some data is missing
    workspace = f"workspace (`{head_sha}`{' + uncommitted changes' if dirty else ''})"
    return "\n".join(
        [
            f"## fmnist-dvc: {workspace} vs `{rev}` (`{rev_sha}`)",
            "",
            "### Metrics",
            "",
            _table_or(metrics, "No metric changed."),
            "",
            "### Params",
            "",
            _table_or(params, "No parameter changed."),
            "",
            "### Plots",
            "",
            f"`dvc plots diff {rev}` drew both revisions in `{plots_dir / 'index.html'}`: open it in a "
            "browser, or publish that directory as a CI artifact and link it here.",
            *(
                [
                    "",
                    "Not drawn (data missing):",
                    "",
                    *[f"- {line}" for line in missing],
                ]
                if missing
                else []
            ),
            "",
        ]
    )


def _table_or(markdown: str, sentence: str) -> str:
    """DVC's markdown table, or `sentence` where DVC printed only the header (nothing differs)."""
    rows = [line for line in markdown.strip().splitlines() if line.startswith("|")]
    return markdown.strip() if len(rows) > 2 else sentence


def _git(*args: str, what: str) -> str:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise PipelineError("git not found on PATH; install git.") from None
    if proc.returncode != 0:
        raise PipelineError(f"git cannot find {what}; check the name (git branch -a, git log).")
    return proc.stdout.strip()


def _dvc(*args: str) -> str:
    proc = subprocess.run([dvc_executable(), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        raise PipelineError(f"'dvc {' '.join(args)}' failed: {(errors or [proc.stderr.strip()])[-1]}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("rev", help="git revision to compare the workspace with, e.g. main")
    parser.add_argument("-o", "--output", type=Path, help="write the markdown here (default: print it)")
    parser.add_argument("--plots-dir", type=Path, default=Path("dvc_plots"))
    return exit_code(_command, parser.parse_args(argv))


def _command(args: argparse.Namespace) -> None:
    text = build_report(args.rev, args.plots_dir)
    if args.output is None:
        print(text)
    else:
        atomic_write_text(args.output, text)
        print(f"report: wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
