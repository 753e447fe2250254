"""Render a page in headless Chromium and return the DOM after its scripts ran."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.helpers import require

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",  # the machine has no internet: don't try
    # Block the network outright, so a page that still reaches for a CDN fails here even on a
    # machine with internet (CI's): no host resolves, and no proxy stands in for one.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--no-proxy-server",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=15000",  # let Vega finish drawing before the DOM is taken
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require(None if found else "chromium not found; install it with 'apt-get install chromium'")
    assert found is not None
    return found


def rendered_dom(page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def vega_plot_ids(page_source: str) -> list[str]:
    """Ids of the Vega plot containers dvc-render wrote (each holds a vegaEmbed script)."""
    return re.findall(r'<div id = "([^"]+)">\s*<script type = "text/javascript">', page_source)


def plots_without_chart(page_source: str, dom: str) -> list[str]:
    """Vega plots in which the browser drew no <canvas> or <svg> chart."""
    ids = vega_plot_ids(page_source)
    starts = sorted((dom.find(f'<div id="{i}"'), i) for i in ids)
    missing = [i for pos, i in starts if pos < 0]
    found = [(pos, i) for pos, i in starts if pos >= 0]
    for n, (pos, plot_id) in enumerate(found):
        end = found[n + 1][0] if n + 1 < len(found) else len(dom)
        body = dom[pos:end]
        if "<canvas" not in body and "<svg" not in body:
            missing.append(plot_id)
    return missing


def script_errors(dom: str) -> str:
    """What the page template's error panel caught ('' when nothing went wrong)."""
    match = re.search(r'<pre id="plot-errors"[^>]*>(.*?)</pre>', dom, re.S)
    return match.group(1) if match else ""
