"""Build the page template that lets `dvc plots show/diff` render with no internet.

dvc-render's default page pulls Vega from a CDN. It fills a page template by plain text
replacement, and a template without the `{scripts}` placeholder gets no CDN tags at all, so
we inline the very versions it pins, taken from the npm registry and checked against pinned
hashes. The template also shows any script error on the page, where a person (or a test
driving a headless browser) can see it.

Usage: python -m fmnist_dvc.offline_plots build/plots-template.html
"""

from __future__ import annotations

import base64
import hashlib
import html
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fmnist_dvc.atomic import atomic_write_text
from fmnist_dvc.errors import PipelineError, exit_code


@dataclass(frozen=True)
class Bundle:
    package: str
    version: str
    integrity: str  # npm's sha512 of the published tarball
    member: str  # the browser build inside it


# The versions dvc-render's VegaRenderer loads from its CDN.
BUNDLES: tuple[Bundle, ...] = (
    Bundle(
        "vega",
        "5.20.2",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
        "package/build/vega.min.js",
    ),
    Bundle(
        "vega-lite",
        "5.2.0",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
        "package/build/vega-lite.min.js",
    ),
    Bundle(
        "vega-embed",
        "6.18.2",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
        "package/build/vega-embed.min.js",
    ),
)

ERROR_PANEL_ID = "plot-errors"

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>fmnist-dvc plots</title>
<script>
// Script errors (a bad spec, a library that failed to load) are shown on the page.
function reportPlotError(message) {{
  var panel = document.getElementById("{panel}");
  if (!panel) {{
    panel = document.createElement("pre");
    panel.id = "{panel}";
    panel.style.color = "#b00020";
    document.body.insertBefore(panel, document.body.firstChild);
  }}
  panel.textContent += "script error: " + message + "\\n";
}}
window.addEventListener("error", function (e) {{ reportPlotError(e.message); }});
window.addEventListener("unhandledrejection", function (e) {{ reportPlotError(String(e.reason)); }});
</script>
{libraries}
<style>
body {{ font-family: sans-serif; }}
table {{ border-spacing: 15px; }}
</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def npm_pack(bundle: Bundle, dest: Path) -> Path:
    """Download one package tarball with npm (no shell) and check its pinned hash."""
    npm = shutil.which("npm")
    if npm is None:
        raise PipelineError(
            "npm not found; install Node.js and npm (Debian: apt-get install npm) to build the "
            "offline plot template."
        )
    spec = f"{bundle.package}@{bundle.version}"
    proc = subprocess.run(
        [npm, "pack", spec, "--pack-destination", str(dest), "--silent"],
        capture_output=True,
        text=True,
        check=False,
    )
    tarball = dest / f"{bundle.package}-{bundle.version}.tgz"
    if proc.returncode != 0 or not tarball.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"'npm pack {spec}' failed ({last}); check that the npm registry is reachable.")
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != bundle.integrity:
        raise PipelineError(f"{tarball.name} does not match its pinned sha512; refusing to use it.")
    return tarball


def read_member(tarball: Path, member: str) -> str:
    with tarfile.open(tarball, "r:gz") as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise PipelineError(f"{tarball.name} has no {member}.")
        return extracted.read().decode("utf-8")


def build_template(out: Path) -> Path:
    """Write the template with all three libraries inline (about 820 KB)."""
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for bundle in BUNDLES:
            code = read_member(npm_pack(bundle, Path(tmp)), bundle.member)
            # A literal "</script" inside the code would end the tag early.
            code = code.replace("</script", "<\\/script")
            label = f"<!-- {html.escape(bundle.package)} {bundle.version} -->"
            scripts.append(f"{label}\n<script>{code}</script>")
    page = PAGE.format(panel=ERROR_PANEL_ID, libraries="\n".join(scripts))
    atomic_write_text(out, page)
    return out


def main(out: Path = Path("build/plots-template.html")) -> None:
    build_template(out)
    print(f"wrote {out}: vega, vega-lite and vega-embed inline for offline 'dvc plots show/diff'")


if __name__ == "__main__":
    sys.exit(exit_code(main, *(Path(arg) for arg in sys.argv[1:2])))
