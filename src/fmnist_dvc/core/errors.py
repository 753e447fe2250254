"""One error type for faults a user can fix, and the one edge that turns it into an exit code."""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class PipelineError(Exception):
    """A fault in the user's input or environment; the message says what to do."""


def exit_code(command: Callable[..., int | None], *args: Any, **kwargs: Any) -> int:
    """Run `command(*args, **kwargs)` and return the process's exit code: its own (None is 0), or 1 for
    a PipelineError, printed as one `error:` line on stderr, or 130 for Ctrl-C.

    Every command (the stages, `fmnist`, the `make` helpers) ends here, so all report faults
    alike; anything else is a bug in our code, so it keeps its traceback.
    """
    try:
        return command(*args, **kwargs) or 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Every file we write is written atomically (fmnist_dvc.core.atomic).
        print("error: interrupted; no partial output was written.", file=sys.stderr)
        return 130


def run_stage(main: Callable[..., None]) -> None:
    """Run a stage's main(path, ...), each parameter a path taken from the command line.

    dvc.yaml's `cmd:` passes the paths, so dvc.yaml is the one place they are written.
    Errors become exit codes as for every command (exit_code).
    """
    script = Path(sys.argv[0])
    parser = argparse.ArgumentParser(
        prog=script.name,
        description=sys.modules[main.__module__].__doc__,
        epilog="`dvc repro` passes these paths, from dvc.yaml's vars.",
    )
    for name in inspect.signature(main).parameters:
        parser.add_argument(name, type=Path)
    paths = vars(parser.parse_args())
    start = time.perf_counter()
    code = exit_code(main, **paths)
    if code:
        sys.exit(code)
    print(f"{script.stem}: finished in {time.perf_counter() - start:.1f} s")
