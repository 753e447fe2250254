"""`dvc plots show/diff` plus a plain list of every plot that could not be drawn.

DVC still renders the other plots when one data file is missing or malformed, but its
page and summary only say "failed to load some plots". Its JSON output names the file, so
we run DVC once for the page and once for the JSON, and print one line per failure.
With --open we open the page ourselves: on a machine without a browser (a server, a
container) that says where the page is and succeeds, where DVC's --open exits 1.

Usage: python -m fmnist_dvc.experiments.plots show [DVC ARGS...] [--open]
       python -m fmnist_dvc.experiments.plots diff REV [REV] [DVC ARGS...] [--open]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import webbrowser

from fmnist_dvc.core.errors import PipelineError, exit_code
from fmnist_dvc.experiments.dvc_command import dvc_executable


def plot_errors(dvc_args: list[str]) -> list[str]:
    """One sentence per plot DVC could not load, naming the plot, revision and file."""
    proc = subprocess.run(
        [dvc_executable(), "plots", *dvc_args, "--json"], capture_output=True, text=True, check=False
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise PipelineError(
            f"'dvc plots {' '.join(dvc_args)} --json' failed: {proc.stderr.strip()}"
        ) from None
    lines = []
    for err in report.get("errors") or []:
        source = err.get("source") or _declared_files(err.get("name", ""))
        what = (
            "is missing" if err.get("type") == "FileNotFoundError" else f"cannot be read ({err.get('msg')})"
        )
        rev = err.get("rev")
        lines.append(f"plot '{err.get('name')}' ({rev}): {source} {what}; {_remedy(rev)}")
    return lines


def _remedy(rev: str | None) -> str:
    """The workspace's data is rebuilt here; another revision's was made elsewhere: fetch it."""
    if rev == "workspace":
        return "run 'dvc repro' to rebuild it or fix the file."
    return (
        "fetch that revision's data from a DVC remote: 'dvc fetch --all-branches --type plots' "
        f"for a branch or commit, 'dvc exp pull origin {rev}' for an experiment."
    )


def _declared_files(plot_id: str) -> str:
    """The data file(s) dvc.yaml declares for a plot id, for errors DVC reports without one."""
    from dvc.dvcfile import load_file
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo() as repo:
            plots = load_file(repo, "dvc.yaml").resolver.resolve_plots()
    except (DvcException, OSError):
        return "its data"
    for entry in plots:
        if isinstance(entry, dict) and plot_id in entry:
            y = (entry[plot_id] or {}).get("y")
            if isinstance(y, dict):
                return ", ".join(y)
    return "its data"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("show", "diff"):
        print(__doc__.strip().splitlines()[-2].strip(), file=sys.stderr)
        return 2
    return exit_code(_command, args)


def _command(args: list[str]) -> int:
    dvc_args = [a for a in args if a != "--open"]
    page = subprocess.run(
        [dvc_executable(), "plots", *dvc_args], stdout=subprocess.PIPE, text=True, check=False
    )
    print(page.stdout, end="")
    errors = plot_errors(dvc_args)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    uri = re.findall(r"^file://\S+", page.stdout, re.M)
    if "--open" in args and page.returncode == 0 and uri:
        open_page(uri[-1])
    return 1 if errors or page.returncode else 0


def open_page(uri: str) -> None:
    """Show the page in a browser, or say where it is when this machine has none."""
    if not webbrowser.open(uri):
        print(f"plots: no browser to open here; open {uri} in one (on another machine: copy its folder).")


if __name__ == "__main__":
    sys.exit(main())
