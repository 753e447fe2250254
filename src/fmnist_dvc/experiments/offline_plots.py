"""Build the page template that lets `dvc plots show/diff` render with no internet.

dvc-render's default page pulls vega, vega-lite and vega-embed from a CDN. It fills a page
template by plain text replacement, and a template without the `{scripts}` placeholder gets no
CDN tags at all, so we inline the libraries instead. They come from vl-convert-python, a PyPI
package installed with the project, whose `javascript_bundle()` holds all three (and what they
import) in one browser script: setup needs no npm. The template also shows any script error on
the page, where a person (or a test driving a headless browser) can see it.

The versions are vl-convert's, newer than the ones dvc-render pins for its CDN (vega 5.20.2,
vega-lite 5.2.0, vega-embed 6.18.2); with vl-convert-python 1.9: vega 6.2.0, vega-lite 5.21
(the newest 5.x it ships: dvc-render writes vega-lite v5 specs) and vega-embed 7.0.2. The page
names them in comments and the build prints them. pyproject.toml pins vl-convert-python to the
minor release whose bundle tests/test_pipeline.py saw render in Chromium.

Usage: python -m fmnist_dvc.experiments.offline_plots build/plots-template.html
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

import vl_convert

from fmnist_dvc.core.atomic import atomic_write_text
from fmnist_dvc.core.errors import PipelineError, exit_code

# dvc-render's specs declare the vega-lite v5 schema: compile them with the newest vega-lite 5.
VEGA_LITE = "5.21"

# dvc-render's page calls `vegaEmbed('#id', spec)` from its own inline scripts, so the bundle
# must leave vegaEmbed (and, for anyone debugging in the console, vega and vegaLite) global.
SNIPPET = "window.vegaEmbed = vegaEmbed;\nwindow.vega = vega;\nwindow.vegaLite = vegaLite;\n"

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


def bundled_versions() -> dict[str, str]:
    """The versions in vl-convert's bundle, by npm package name: the installed
    vl-convert-python decides them, so the page records them."""
    supported = vl_convert.get_vegalite_versions()
    if VEGA_LITE not in supported:
        raise PipelineError(
            f"vl-convert-python {vl_convert.__version__} has no vega-lite {VEGA_LITE} (it has "
            f"{', '.join(supported)}); reinstall the version pyproject.toml pins (make setup)."
        )
    return {
        "vega": vl_convert.get_vega_version(),
        "vega-lite": VEGA_LITE,
        "vega-embed": vl_convert.get_vega_embed_version(),
    }


def library_script(versions: dict[str, str]) -> str:
    """One <script> with vega, vega-lite and vega-embed, labelled with their versions."""
    code = vl_convert.javascript_bundle(snippet=SNIPPET, vl_version=versions["vega-lite"])
    # A literal "</script" inside the code would end the tag early.
    code = code.replace("</script", "<\\/script")
    labels = [f"<!-- bundled by vl-convert-python {html.escape(vl_convert.__version__)} -->"]
    # vega-embed's label comes last, right before the script (test_pipeline's negative control
    # removes the library by it).
    labels += [f"<!-- {name} {html.escape(version)} -->" for name, version in versions.items()]
    # The bundle is an ES module's code: run it strict, as modules are, and inside a function so
    # its minified top-level names (n, t...) stay out of the global scope that dvc-render's
    # inline scripts (`var spec = ...`) share. A module script would run too late: deferred
    # until after those inline scripts.
    return "\n".join(labels) + f'\n<script>(function () {{\n"use strict";\n{code}\n}})();</script>'


def build_template(out: Path) -> Path:
    """Write the template with all three libraries inline (about 900 KB)."""
    page = PAGE.format(panel=ERROR_PANEL_ID, libraries=library_script(bundled_versions()))
    atomic_write_text(out, page)
    return out


def main(out: Path = Path("build/plots-template.html")) -> None:
    build_template(out)
    listed = ", ".join(f"{name} {version}" for name, version in bundled_versions().items())
    print(f"wrote {out}: {listed} inline for offline 'dvc plots show/diff'")


if __name__ == "__main__":
    sys.exit(exit_code(main, *(Path(arg) for arg in sys.argv[1:2])))
