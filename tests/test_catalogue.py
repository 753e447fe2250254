"""docs/bad-input.md holds the bad-input messages the stage tests check (tests/catalogue.py):
every row must be one a test looks up, and show its message in a form the tests can read."""

from __future__ import annotations

import ast

from tests.catalogue import ROWS, message
from tests.helpers import REPO_ROOT

CHECKING_TESTS = ("test_bad_input.py", "test_stage_errors.py", "test_backend.py", "test_export.py")


def looked_up_ids(source: str) -> set[str]:
    """The catalogue ids a test module's code hands to tests/catalogue.py as string literals:
    the first value of each `cases(...)` param, the `case` of `assert_catalogued_error(proc, case)`
    and of `message(case)`. Read with ast, so an id in a comment, a docstring or any other string
    is not one a test checks."""

    def literal(node: ast.expr | None) -> list[str]:
        return [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []

    def argument(call: ast.Call, position: int) -> ast.expr | None:
        if len(call.args) > position:
            return call.args[position]
        return next((k.value for k in call.keywords if k.arg == "case"), None)

    found: set[str] = set()
    for call in ast.walk(ast.parse(source)):
        if not isinstance(call, ast.Call):
            continue
        func = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
        if func == "cases":
            for param in call.args:
                if isinstance(param, ast.Tuple) and param.elts:
                    found.update(literal(param.elts[0]))
        elif func == "assert_catalogued_error":
            found.update(literal(argument(call, 1)))
        elif func == "message":
            found.update(literal(argument(call, 0)))
    return found


def test_every_catalogue_row_is_checked_by_a_test() -> None:
    checked = set().union(*(looked_up_ids((REPO_ROOT / "tests" / n).read_text()) for n in CHECKING_TESTS))
    assert [case for case in ROWS if case not in checked] == []


def test_every_row_shows_one_message_with_known_placeholders() -> None:
    for case, row in ROWS.items():
        assert row["exit"] in ("0", "1"), case
        text = message(case, mirror="/m", work="/w", port=1)
        assert text.startswith("error: ") == (row["exit"] == "1"), case
