"""One error type for faults a user can fix, and the edge that turns it into an exit."""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path


class PipelineError(Exception):
    """A fault in the user's input or environment; the message says what to do."""


def run_stage(main: Callable[..., None]) -> None:
    """Run a stage's main(path, ...), each parameter a path taken from the command line.

    dvc.yaml's `cmd:` passes the paths, so dvc.yaml is the one place they are written.
    A PipelineError becomes one line on stderr and exit 1; anything else is a bug in our
    code, so it keeps its traceback.
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
    try:
        main(**paths)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was written.", file=sys.stderr)
        sys.exit(130)
    print(f"{script.stem}: finished in {time.perf_counter() - start:.1f} s")
