"""Open the HTML report in headless Chromium (offline) and check every plot is drawn.

Uses Debian's chromium at /usr/bin/chromium through Playwright's sync API; nothing is
downloaded, and every request that is not for a file:// URL is aborted, so the test also proves
the report is self-contained.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multilens.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _route(blocked: list[str]) -> Callable[[Any], None]:
    """A route handler that lets file:// through and aborts (and records) everything else."""

    def handle(route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    return handle


def test_report_renders_every_plot_offline(
    tmp_path: Path, summary: dict[str, Any], manifest: dict[str, Any], n_figures: int
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium; .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    # one broken figure: it must become a note, not a console error, and not stop the others
    summary["phases"][1]["result"]["figures"].append({"key": "broken", "title": "Broken", "data": []})
    html_path = write_report(tmp_path, summary, manifest)["html"]

    page_errors: list[str] = []
    console_errors: list[str] = []
    dialogs: list[str] = []
    blocked: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.route("**/*", _route(blocked))
            page.goto(html_path.as_uri(), wait_until="load")
            page.wait_for_function(
                "n => document.querySelectorAll('.ml-plot .main-svg').length >= n", arg=n_figures, timeout=60_000
            )
            plots = page.eval_on_selector_all(
                ".ml-plot",
                """els => els.map(e => ({key: e.dataset.key, svg: !!e.querySelector('.main-svg'),
                    plotly: e.classList.contains('js-plotly-plot'),
                    traces: e.querySelectorAll('.trace').length, height: e.getBoundingClientRect().height}))""",
            )
            notes = page.locator(".plot-note").count()
            log_axes = page.eval_on_selector_all(
                ".ml-plot",
                "els => els.filter(e => e.layout && (e.layout.xaxis.type === 'log' || e.layout.yaxis.type === 'log'))"
                ".length",
            )
            error_bars = page.locator(".ml-plot g.errorbar").count()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()

    assert page_errors == []
    assert console_errors == []
    assert dialogs == []  # the planted <script>alert(...)</script> strings never run
    assert blocked == []  # nothing tried to reach the network
    assert len(plots) == n_figures
    for plot in plots:
        assert plot["svg"] and plot["plotly"] and plot["traces"] >= 1 and plot["height"] > 100, plot
    assert notes == 1
    assert log_axes >= 3 and error_bars > 0


def test_tables_download_as_csv_and_checks_filter(tmp_path: Path, summary: dict[str, Any], manifest: dict[str, Any]):
    """The verdict strip links to stable anchors; a table's CSV button downloads its rows; the filter hides rows."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium; .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    html_path = write_report(tmp_path, summary, manifest)["html"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            page.route("**/*", _route([]))
            page.goto(html_path.as_uri(), wait_until="load")
            hrefs = page.eval_on_selector_all(".strip a", "els => els.map(e => e.getAttribute('href'))")
            assert "#gates" in hrefs
            for h in hrefs:
                assert page.locator(h).count() == 1, h  # every link of the strip lands on an element
            with page.expect_download() as dl:
                page.locator("#gates button[data-dl=csv]").first.click()
            text = Path(dl.value.path()).read_text()
            assert text.splitlines()[0].startswith("gate,phase,rule")
            assert len(text.splitlines()) == 1 + len(summary["gates"])
            details = page.locator("details.passed").first
            details.locator("summary").click()
            rows = details.locator("tbody tr")
            n = rows.count()
            details.locator("input.filter").fill("zzz-no-such-check")
            assert n >= 1 and sum(rows.nth(i).is_visible() for i in range(n)) == 0
        finally:
            browser.close()
