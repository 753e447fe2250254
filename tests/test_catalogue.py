"""docs/bad-input.md holds the bad-input messages the stage tests check (tests/catalogue.py):
every row must be one a test looks up, and show its message in a form the tests can read."""

from __future__ import annotations

from tests.catalogue import ROWS, message
from tests.conftest import REPO_ROOT

CHECKING_TESTS = ("test_bad_input.py", "test_stage_errors.py", "test_backend.py")


def test_every_catalogue_row_is_checked_by_a_test() -> None:
    sources = "".join((REPO_ROOT / "tests" / name).read_text() for name in CHECKING_TESTS)
    assert [case for case in ROWS if f'"{case}"' not in sources] == []


def test_every_row_shows_one_message_with_known_placeholders() -> None:
    for case, row in ROWS.items():
        assert row["exit"] in ("0", "1"), case
        text = message(case, mirror="/m", work="/w", port=1)
        assert text.startswith("error: ") == (row["exit"] == "1"), case
