import re
from pathlib import Path

from dvc_render.vega import VegaRenderer

from fmnist_dvc.offline_plots import BUNDLES, build_template


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
