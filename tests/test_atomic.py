"""Outputs are replaced whole or not at all, even when the writer is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fmnist_dvc.core.atomic import atomic_dir, atomic_write_bytes

# A writer that fills the new output slowly and reports how far it got, to be killed midway.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fmnist_dvc.core.atomic import atomic_dir, atomic_write_bytes

    target, kind = Path(sys.argv[1]), sys.argv[2]
    if kind == "dir":
        with atomic_dir(target) as tmp:
            for i in range(1000):
                (tmp / f"part{i}.txt").write_text("new")
                print(i, flush=True)
                time.sleep(0.01)
    else:  # rewrite a 4 MB file over and over: the kill lands at some point of some write
        for i in range(1000):
            atomic_write_bytes(target, bytes([i % 256]) * 4_000_000)
            print(i, flush=True)
    """
)


def _kill_midway(target: Path, kind: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), kind],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    assert proc.stdout is not None
    for _ in range(20):  # 20 steps in: well inside the write
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_killed_directory_writer_leaves_the_old_output_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    _kill_midway(target, "dir")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert (target / "old.txt").read_text() == "old"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out"]
    assert leftovers and all(name.startswith(".out.tmp-") for name in leftovers)  # SIGKILL runs no cleanup
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # scratch of the killed run removed
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_killed_file_writer_leaves_one_whole_version(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    _kill_midway(target, "file")
    data = target.read_bytes()
    assert len(data) == 4_000_000 and data == data[:1] * len(data)  # one complete write, not a mix


def test_a_failing_block_keeps_the_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]


def test_file_is_replaced_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"
