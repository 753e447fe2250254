"""docs/bad-input.md as the tests' source of the expected messages.

The catalogue's table is the one place a bad-input message is written down: a test names its row
by the `id` column and checks the stage's output against the row's `message printed` column.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.helpers import REPO_ROOT, assert_one_line_error

DOC = REPO_ROOT / "docs" / "bad-input.md"


def _cells(line: str) -> list[str]:
    """A markdown table row's cells; `\\|` is a literal bar inside a cell."""
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def _rows() -> dict[str, dict[str, str]]:
    lines = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    header = _cells(lines[0])
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:  # past the header and its --- rule
        row = dict(zip(header, _cells(line), strict=True))
        assert row["id"] not in rows, f"{DOC.name}: id {row['id']!r} appears twice"
        rows[row["id"]] = row
    return rows


ROWS = _rows()


def cases(*params: tuple) -> list:
    """pytest params whose first value is a catalogue id, which is also the pytest id."""
    for case, *_ in params:
        assert case in ROWS, f"{DOC.name} has no row with id {case!r}"
    return [pytest.param(*values, id=values[0]) for values in params]


def message(case: str, **placeholders: object) -> str:
    """The first code span of the row's `message printed`, with <name> placeholders filled in."""
    found = re.search(r"`([^`]+)`", ROWS[case]["message printed"])
    assert found, f"{DOC.name}: row {case!r} shows no message in backticks"
    text = found.group(1)
    for name, value in placeholders.items():
        text = text.replace(f"<{name}>", str(value))
    assert not re.search(r"<\w+>", text), f"unfilled placeholder in {text!r}"
    return text


def assert_catalogued_error(proc: subprocess.CompletedProcess[str], case: str, **placeholders: object) -> str:
    """Exit 1 and one `error:` line that is the row's message (up to a trailing `...`)."""
    expected, line = message(case, **placeholders), assert_one_line_error(proc)
    if expected.endswith("..."):
        assert line.startswith(expected[:-3]), f"\n{line}\ndoes not start as {DOC.name} says:\n{expected}"
    else:
        assert line == expected, f"\n{line}\nis not what {DOC.name} says:\n{expected}"
    return line
