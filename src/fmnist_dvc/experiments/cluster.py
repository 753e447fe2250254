"""Ray for `fmnist sweep` and `fmnist tune`: joining a cluster (or starting one here), a board
the trials post to, and a warning when a trial asks for more than any node has."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from fmnist_dvc.core.errors import PipelineError

LOOPBACK = "127.0.0.1"


def connect(address: str | None) -> Any:
    """Ray, initialised: the cluster at `address`, or a new one on this machine's cores."""
    local = not address or address.split(":")[0] in (LOOPBACK, "localhost")
    if local:
        # Ray's switch for clusters on one machine: its nodes' addresses (and the servers'
        # bind addresses) stay 127.0.0.1 instead of the machine's network address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise PipelineError("Ray is not installed: pip install -e '.[ray]' (make setup does).") from None
    kwargs: dict[str, Any] = {"log_to_driver": False}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(include_dashboard=False, num_cpus=os.cpu_count())
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise PipelineError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return ray


def node_cpus(ray: Any) -> list[float]:
    """The CPUs of each live node of the cluster."""
    return [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]]


def too_big(ray: Any, cpus: float) -> str | None:
    """A sentence when no node of the cluster can run a trial of `cpus` CPUs, else None."""
    largest = max(node_cpus(ray), default=0.0)
    if cpus <= largest:
        return None
    return (
        f"each trial asks for {cpus:g} CPUs (--cpus-per-trial) but the largest node has {largest:g}: "
        f"waiting for a node that big (an autoscaling cluster may add one); Ctrl-C and pass "
        f"--cpus-per-trial {largest:g} to run on these nodes."
    )


class Board:
    """A Ray actor the trials post to: that they started (so the driver tells running trials
    from trials waiting for a node), each epoch's validation accuracy, and whether to stop."""

    def __init__(self) -> None:
        self.started: set[str] = set()
        self.reports: list[tuple[str, int, float]] = []
        self.stop: set[str] = set()

    def start(self, name: str) -> None:
        self.started.add(name)

    def report(self, name: str, epoch: int, value: float) -> bool:
        """Record one epoch; True once the driver has pruned the trial."""
        self.reports.append((name, epoch, value))
        return name in self.stop

    def prune(self, name: str) -> None:
        self.stop.add(name)

    def pruned(self, name: str) -> bool:
        return name in self.stop

    def read(self) -> tuple[set[str], list[tuple[str, int, float]]]:
        """The trials started so far and the reports since the last read."""
        reports, self.reports = self.reports, []
        return set(self.started), reports


def trial_task(ray: Any, function: Any, cpus: float) -> tuple[Any, Any]:
    """`function` as a Ray task of `cpus` CPUs, and a Board for its trials. Says at once when no
    node is big enough for a trial (Ray would only wait, silently)."""
    from tqdm import tqdm

    warning = too_big(ray, cpus)
    if warning:
        tqdm.write(f"warning: {warning}", file=sys.stderr)
    # On the driver's own node: a lost worker node must not take the board with it.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    board = ray.remote(Board).options(num_cpus=0, scheduling_strategy=here).remote()
    # A node that dies takes its trial with it: Ray runs it again elsewhere (from the start:
    # its resume snapshot was on that node). A trial's own failure is a result, not a retry.
    return ray.remote(function).options(num_cpus=cpus, max_retries=3, retry_exceptions=False), board


def progress(started: set[str], pending: list[str], **more: int) -> dict[str, int]:
    """The progress bar's counts: trials running, and trials waiting for a node."""
    running = sum(name in started for name in pending)
    return {"running": running, "waiting": len(pending) - running, **more}


def cancel(ray: Any, refs: list[Any], command: str) -> None:
    """Ctrl-C: Ray raises KeyboardInterrupt inside each running trial, which stops its DVC run
    and removes its clone; wait for that, since the trials die with this driver."""
    print(f"fmnist {command}: interrupted; cancelling {len(refs)} trials ...", file=sys.stderr)
    for ref in refs:
        ray.cancel(ref)
    ray.wait(refs, num_returns=len(refs), timeout=60)


def progress_bar(total: int, initial: int = 0) -> Any:
    """The trials' bar on stderr: redrawn each second in a terminal; in a log file when a count
    changes, else every 30 s (set_postfix alone would redraw it at every call)."""
    from tqdm import tqdm

    class TrialBar(tqdm):
        drawn = 0.0

        def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
            before = self.postfix
            super().set_postfix(ordered_dict, refresh=False, **kwargs)
            now = time.monotonic()
            if refresh and (self.postfix != before or now - self.drawn >= self.mininterval):
                self.drawn = now
                self.refresh()

    every = 1.0 if sys.stderr.isatty() else 30.0
    return TrialBar(
        total=total, initial=initial, desc="trials", unit="trial", file=sys.stderr, mininterval=every
    )
