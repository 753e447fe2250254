import re
import shutil
import subprocess
import sys
from pathlib import Path

from dvc_render.vega import VegaRenderer

from fmnist_dvc.offline_plots import BUNDLES, build_template
from tests.dvcrepo import TEMPLATE, new_project, use_offline_template


def test_template_inlines_the_versions_dvc_render_pins(tmp_path: Path) -> None:
    page = build_template(tmp_path / "template.html").read_text()
    for bundle in BUNDLES:
        # Same versions as the CDN tags dvc-render would otherwise insert.
        assert f"npm/{bundle.package}@{bundle.version}" in VegaRenderer.SCRIPTS
        assert f"<!-- {bundle.package} {bundle.version} -->" in page
    assert page.count("{plot_divs}") == 1
    assert "{scripts}" not in page  # so dvc-render adds no CDN tags
    assert not re.search(r"<script[^>]+src=", page)
    assert 700_000 < len(page.encode()) < 1_000_000


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
    assert not re.search(r"<script[^>]+src=", (repo / "dvc_plots/index.html").read_text())
