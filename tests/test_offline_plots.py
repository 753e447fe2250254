import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_render.vega import VegaRenderer

from fmnist_dvc.experiments.offline_plots import build_template, bundled_versions
from tests.browser import plots_without_chart, rendered_dom, script_errors, vega_plot_ids
from tests.dvcrepo import TEMPLATE, new_project, use_offline_template

pytestmark = pytest.mark.slow


def test_template_inlines_vega_vega_lite_and_vega_embed(tmp_path: Path) -> None:
    page = build_template(tmp_path / "template.html").read_text()
    versions = bundled_versions()
    assert list(versions) == ["vega", "vega-lite", "vega-embed"]
    for name, version in versions.items():
        assert f"<!-- {name} {version} -->" in page
    # The labels name code that is there: each library's version string, and vega-embed's global.
    assert f'"{versions["vega"]}"' in page
    assert f'"{versions["vega-lite"]}.' in page
    assert "https://vega.github.io/editor/" in page  # vega-embed's "Open in Vega Editor" action
    assert "window.vegaEmbed=" in page.replace(" ", "")  # dvc-render's divs call vegaEmbed(...)
    # dvc-render writes vega-lite v5 specs (and would load a 5.x from its CDN): the bundle's
    # vega-lite must be a 5.x too.
    pinned = re.search(r"npm/vega-lite@(\d+)\.", VegaRenderer.SCRIPTS)
    assert pinned is not None and versions["vega-lite"].split(".")[0] == pinned.group(1)
    assert page.count("{plot_divs}") == 1
    assert "{scripts}" not in page  # so dvc-render adds no CDN tags
    assert not re.search(r"<script[^>]+src=", page)
    assert page.count("<script>") == 2  # the error panel's, then the one library bundle
    assert 700_000 < len(page.encode()) < 1_200_000


def plots_show(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "plots", "show"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_clone_without_setup_draws_dvcs_ordinary_page(tmp_path: Path) -> None:
    """Only `make setup` points DVC at the template (.dvc/config.local): the committed config
    must not, or `dvc plots show` fails in a fresh clone where build/ does not exist."""
    repo = new_project(tmp_path / "repo")  # the committed files, then what `make setup` adds
    (repo / ".dvc/config.local").unlink()
    shutil.rmtree(repo / "build")
    (repo / "dvc.yaml").write_text("plots:\n  - scores.csv:\n      x: step\n      y: score\n")
    (repo / "scores.csv").write_text("step,score\n0,0.5\n1,0.7\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    proc = plots_show(repo)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"<script[^>]+src=", (repo / "dvc_plots/index.html").read_text())  # DVC's CDN page
    # With setup's two pieces back, the same command draws the offline page.
    build_template(repo / TEMPLATE)
    use_offline_template(repo)
    assert plots_show(repo).returncode == 0
    page = repo / "dvc_plots/index.html"
    source = page.read_text()
    assert not re.search(r"<script[^>]+src=", source)
    # The page draws its chart in a browser with the network blocked (tests/browser.py).
    dom = rendered_dom(page)
    assert script_errors(dom) == ""
    assert plots_without_chart(source, dom) == []
    assert len(vega_plot_ids(source)) == 1  # so "no plot without a chart" means one drawn
