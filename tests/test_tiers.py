"""The two tiers: `make test` runs the test modules that are not marked slow, `make test-all` all.

A module of the slow tier marks itself: `pytestmark = pytest.mark.slow`, after its imports. So
that a new module which needs the slow tier cannot land in the fast one unmarked, a module that
is not marked must use none of the slow-only tools. Read from each module's source with `ast`
(comments and docstrings do not count), a module uses one when

- it imports one of SLOW_ONLY_IMPORTS, anywhere in the module (at the top or inside a function),
  or imports a tests.* module that does, at any depth (test_backend imports test_resume, which
  imports tests.dvcrepo);
- one of its functions (a test or a fixture) takes a parameter named after one of
  SLOW_ONLY_FIXTURES, or it passes one's name to `pytest.mark.usefixtures` or
  `request.getfixturevalue`.

The tier is a module's: a module that needs any of these is marked slow as a whole. The rule
does not look at what a module runs (test_dvc_yaml runs `dvc repro` on a two-file project in the
fast tier): whole pipelines under DVC go through tests.dvcrepo, and that import is what it finds.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO_ROOT

TESTS = REPO_ROOT / "tests"

# What only the slow tier may use, and why.
SLOW_ONLY_IMPORTS = {
    "tests.dvcrepo": "the pipeline under real DVC in a scratch git repository",
    "tests.s3": "S3 remotes on moto's server",
    "tests.browser": "pages rendered in headless Chromium",
    "moto": "an S3 server",
    "ray": "a Ray cluster",
}
SLOW_ONLY_FIXTURES = {
    "two_branches": "conftest's main/short project, built by `dvc repro` and `dvc exp run`",
    "s3_endpoint": "conftest's moto S3 server",
}
FIXTURE_CALLS = {"usefixtures", "getfixturevalue"}


def _tree(module: str) -> ast.Module | None:
    """The parsed source of a tests.* module (None for any other module)."""
    if not module.startswith("tests."):
        return None
    path = TESTS / f"{module.removeprefix('tests.')}.py"
    return ast.parse(path.read_text(), filename=str(path)) if path.is_file() else None


def _imports(tree: ast.Module) -> set[str]:
    """Every module the source imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "tests":  # from tests import dvcrepo
                found.update(f"tests.{alias.name}" for alias in node.names)
    return found


def _slow_only_import(name: str) -> str | None:
    return next((m for m in SLOW_ONLY_IMPORTS if name == m or name.startswith(f"{m}.")), None)


def slow_only_uses(module: str, tree: ast.Module | None = None) -> list[str]:
    """What `module` (e.g. "tests.test_pipeline"; `tree`: its source parsed, if not the file's)
    uses of the slow-only tools, each with how."""
    tree = tree or _tree(module)
    assert tree is not None, module
    uses: list[str] = []
    # The imports, and those of the tests.* modules imported, breadth first.
    seen, queue = {module}, [(module, tree)]
    while queue:
        importer, source = queue.pop(0)
        for name in sorted(_imports(source)):
            hit = _slow_only_import(name)
            if hit:
                via = "" if importer == module else f" (through {importer})"
                uses.append(f"imports {name}{via}: {SLOW_ONLY_IMPORTS[hit]}")
            elif name not in seen and (imported := _tree(name)) is not None:
                seen.add(name)
                queue.append((name, imported))
    # The slow-only fixtures, taken as parameters or asked for by name.
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in FIXTURE_CALLS:
            names = [a.value for a in node.args if isinstance(a, ast.Constant)]
        uses.extend(
            f"uses the fixture {n}: {SLOW_ONLY_FIXTURES[n]}" for n in names if n in SLOW_ONLY_FIXTURES
        )
    return sorted(set(uses))


def marked_slow(path: Path) -> bool:
    """The module assigns pytest.mark.slow (alone or in a list) to `pytestmark` at its top level."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return any(ast.unparse(n) == "pytest.mark.slow" for n in ast.walk(node.value))
    return False


def test_no_module_of_the_fast_tier_uses_what_only_the_slow_tier_may() -> None:
    fast = [p for p in sorted(TESTS.glob("test_*.py")) if not marked_slow(p)]
    offending = {p.name: uses for p in fast if (uses := slow_only_uses(f"tests.{p.stem}"))}
    assert offending == {}, "mark these modules `pytestmark = pytest.mark.slow` (after the imports)"


def test_the_rule_sees_the_slow_tiers_tools() -> None:
    # The names it looks for still exist...
    for module in SLOW_ONLY_IMPORTS:
        if module.startswith("tests."):
            assert (TESTS / f"{module.removeprefix('tests.')}.py").is_file(), module
    conftest = ast.parse((TESTS / "conftest.py").read_text())
    defined = {n.name for n in conftest.body if isinstance(n, ast.FunctionDef)}
    assert set(SLOW_ONLY_FIXTURES) <= defined
    # ...and it finds them where the slow tier uses them: directly, through another test module,
    # and as fixtures, whether taken as a parameter or asked for by name.
    assert any(u.startswith("imports tests.browser:") for u in slow_only_uses("tests.test_pipeline"))
    assert any("(through tests.test_resume)" in u for u in slow_only_uses("tests.test_backend"))
    assert any(u.startswith("imports ray") for u in slow_only_uses("tests.test_sweep"))
    collaboration = slow_only_uses("tests.test_collaboration")
    assert any(u.startswith("uses the fixture s3_endpoint") for u in collaboration)
    probe = ast.parse(
        "import pytest\n"
        "from tests import s3\n"
        "@pytest.mark.usefixtures('two_branches')\n"
        "def test_a(request):\n"
        "    'In a docstring: two_branches, tests.browser. In a comment: import ray.'\n"
        "    request.getfixturevalue('s3_endpoint')  # import ray\n"
    )
    assert [u.split(":")[0] for u in slow_only_uses("tests.test_probe", probe)] == [
        "imports tests.s3",
        "uses the fixture s3_endpoint",
        "uses the fixture two_branches",
    ]
    assert marked_slow(TESTS / "test_pipeline.py") and not marked_slow(TESTS / "test_tiers.py")
