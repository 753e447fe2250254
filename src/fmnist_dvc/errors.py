"""One error type for faults a user can fix, and the edge that turns it into an exit."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path


class PipelineError(Exception):
    """A fault in the user's input or environment; the message says what to do."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a PipelineError becomes one line on stderr and exit 1.

    Anything else is a bug in our code, so it keeps its traceback.
    """
    start = time.perf_counter()
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was written.", file=sys.stderr)
        sys.exit(130)
    print(f"{Path(sys.argv[0]).stem}: finished in {time.perf_counter() - start:.1f} s")
