"""Tests of the HTML report: content, verdicts, escaping, offline-ness, broken figures, writing."""

from __future__ import annotations

import json
import math
import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import multilens.plots as F
import multilens.report as report
from multilens.report.html import fmt_num, fmt_seconds, render_html, safe_relative_href, script_json


class _Elements(HTMLParser):
    """Collects every start tag with its attributes and the text of every <script> element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


def _checks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for p in summary["phases"] for c in ((p["result"] or {}).get("checks", []))] + summary["cross_checks"]


def _check_row(page: str, name: str) -> str:
    """The HTML of the table row whose first cell is the check called ``name``."""
    match = re.search(r"<tr><td><strong>" + re.escape(escape(name)) + r"</strong></td>.*?</tr>", page)
    assert match, f"no row for check {name!r}"
    return match.group(0)


def test_every_estimate_and_check_name_appears(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    page = render_html(summary, manifest)
    estimates = [e for p in summary["phases"] for e in ((p["result"] or {}).get("estimates", []))]
    assert estimates and _checks(summary)
    for item in estimates + _checks(summary):
        assert escape(item["name"]) in page, item["name"]
    for gate in summary["gates"]:
        assert escape(gate["name"]) in page


def test_verdict_is_computed_from_passed_not_copied(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    checks = summary["phases"][0]["result"]["checks"]
    checks[0] |= {"passed": False, "verdict": "pass"}  # a stale verdict field must be ignored
    checks[1] |= {"passed": True, "verdict": "fail"}
    page = render_html(summary, manifest)
    assert ">fail</span>" in _check_row(page, checks[0]["name"])
    assert "badge-bad" in _check_row(page, checks[0]["name"])
    assert ">pass</span>" in _check_row(page, checks[1]["name"])
    assert ">not evaluated</span>" in _check_row(page, checks[2]["name"])
    assert ">not evaluated</span>" in _check_row(page, "calibration_vs_scaling")


def test_info_failures_and_warn_gates_are_amber_stop_gates_red(
    summary: dict[str, Any], manifest: dict[str, Any]
) -> None:
    page = render_html(summary, manifest)
    assert '<span class="badge badge-warn">fail</span>' in _check_row(page, "edge_of_stability")
    gate_rows = {g["name"]: _check_row(page, g["name"]) for g in summary["gates"]}
    assert "badge-ok" in gate_rows["fit_quality"]
    assert '<span class="badge badge-warn">fail</span>' in gate_rows["trace_converged"]
    assert '<span class="badge badge-bad">fail</span>' in gate_rows["robust_acc"]
    assert ">not evaluated</span>" in gate_rows["unmeasured"]
    assert "robust_acc" in page and escape("robustness.acc > 0.5") in page


def test_text_from_data_is_escaped_and_injects_no_script(
    summary: dict[str, Any], manifest: dict[str, Any], n_figures: int, hostile: dict[str, str]
) -> None:
    xss = hostile["xss"]
    page = render_html(summary, manifest)
    assert xss not in page
    assert escape(xss) in page  # the phase title, notes, names and reasons are shown, escaped
    assert f"Calibration {escape(xss)}" in page
    parsed = _parse(page)
    scripts = parsed.scripts
    # plotly.js, the plot helper, then exactly one multilensPlot(...) call per drawable figure
    assert len(scripts) == 2 + n_figures
    assert scripts[0].lstrip().startswith("/**") and "plotly.js" in scripts[0][:200]
    assert all(s.startswith('multilensPlot("ml-plot-') for s in scripts[2:])
    assert not any("alert(1)" in s for s in scripts)
    assert all(attrs == {} or set(attrs) <= {"type"} for tag, attrs in parsed.tags if tag == "script")


def test_script_embedded_json_cannot_close_the_script(
    summary: dict[str, Any], manifest: dict[str, Any], hostile: dict[str, str]
) -> None:
    breaker = hostile["breaker"]
    page = render_html(summary, manifest)
    assert breaker not in page
    assert "</script><script>alert(2)" not in page
    hostile = next(s for s in _parse(page).scripts if "alert(2)" in s)
    assert "<" not in hostile and "\u2028" not in hostile and "\u2029" not in hostile
    payload = hostile[hostile.index("{") : hostile.rindex(")")]
    spec = json.loads(payload)
    assert spec["data"][-1]["name"] == breaker  # the string survives intact for Plotly


def test_script_json_escapes_everything_dangerous() -> None:
    value = {
        "a": "</script><!-- x --> & \u2028\u2029 </SCRIPT>",
        "n": [1.0, float("nan"), float("inf")],
        "arr": np.arange(3),
    }
    text = script_json(value)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == {"a": value["a"], "n": [1.0, None, None], "arr": [0, 1, 2]}


def test_no_external_urls_and_plotly_inline(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    page = render_html(summary, manifest)
    parsed = _parse(page)
    for tag, attrs in parsed.tags:
        assert tag not in {"link", "iframe", "img", "object", "embed", "base"}, tag
        for key in ("src", "href", "action", "data", "srcset"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "javascript:")), (tag, key, value)
    from plotly.offline import get_plotlyjs

    plotly_js = get_plotlyjs()
    assert plotly_js in page  # inline, whole
    ours = page.replace(plotly_js, "")  # plotly.js itself mentions URLs in strings; our markup must not
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", ours, re.IGNORECASE)
    assert "http://" not in ours and "https://" not in ours
    assert "@import" not in ours and "@font-face" not in ours
    csp = next(a for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in (csp["content"] or "")


def test_each_figure_is_a_plot_div_with_its_key(
    summary: dict[str, Any], manifest: dict[str, Any], n_figures: int
) -> None:
    page = render_html(summary, manifest)
    divs = [a for t, a in _parse(page).tags if t == "div" and "ml-plot" in (a.get("class") or "").split()]
    keys = [f["key"] for p in summary["phases"] for f in ((p["result"] or {}).get("figures", []))]
    assert len(divs) == n_figures == len(keys) == 5
    assert [d["data-key"] for d in divs] == keys
    assert len({d["id"] for d in divs}) == len(divs)


@pytest.mark.parametrize(
    ("figure", "why"),
    [
        ({"key": "empty", "title": "Empty", "data": [], "layout": {}}, "it has no data"),
        ({"key": "nodata", "title": "No data", "layout": {}}, "it has no data"),
        ({"key": "nopoints", "title": "No points", "data": [{"x": [], "y": []}]}, "it has no data points"),
        ({"key": "badjson", "title": "Bad JSON", "data": "[{not json"}, "its data is not valid JSON"),
        ({"key": "badtrace", "title": "Bad trace", "data": [1, 2]}, "its data is not a list of Plotly traces"),
        ({"key": "badlayout", "title": "Bad layout", "data": [{"y": [1]}], "layout": "oops"}, "its layout is not"),
        ({"key": "object", "title": "Object", "data": [{"y": [object()]}]}, "its JSON is invalid"),
    ],
)
def test_broken_figure_shows_a_note_and_the_rest_renders(
    summary: dict[str, Any], manifest: dict[str, Any], figure: dict[str, Any], why: str
) -> None:
    summary["phases"][0]["result"]["figures"].insert(1, figure)
    page = render_html(summary, manifest)
    assert f'<div class="plot-note" data-key="{figure["key"]}">Plot not shown: {escape(why)}' in page
    assert escape(figure["title"]) in page
    assert page.count('class="ml-plot"') == 5  # every other figure still drawn
    for later in ("Robustness", "Cross-lens consistency", "Reproducibility checklist", "<details"):
        assert later in page
    assert page.rstrip().endswith("</html>")


def test_sections_and_layout(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    page = render_html(summary, manifest)
    order = ["Capstone smoke run", 'id="decision"', 'id="overview"', 'id="gates"', 'id="phase-0"', 'id="phase-4"',
             'id="consistency"', 'id="recommendations"', 'id="risks"', 'id="checklist"', 'id="artifacts"',
             'id="manifest"']  # fmt: skip
    positions = [page.index(s) for s in order]
    assert positions == sorted(positions)
    assert '<details class="manifest">' in page and "sha256:0f" in page and "multilens run --profile smoke" in page
    assert escape("ValueError: <bad> | boom") in page  # a failed phase's error is shown
    assert "This phase produced no result." in page
    assert "12 min 34 s" in page and "12345" in page and "smoke" in page
    assert "[0.27, 0.33]" in page and "95% bootstrap percentile" in page  # interval, level, method
    assert "90% lanczos over 3 seeds" in page and ">500<" in page  # n_iter
    assert "Use lr &lt;= 0.1 | measured" in page and "Sharp minima" in page and "digits only" in page


def test_artifact_links_are_relative_only(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    page = render_html(summary, manifest)
    assert '<a href="summary.json">' in page
    assert 'href="javascript:' not in page and "<code>javascript:alert(1)</code>" in page
    assert safe_relative_href("runs/a.json") == "runs/a.json"
    for bad in ("/etc/passwd", "https://x.org/a", "//x.org", "javascript:alert(1)", "C:\\x", ""):
        assert safe_relative_href(bad) is None, bad


def test_minimal_and_empty_inputs_render(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    page = render_html({}, {})
    assert page.startswith("<!DOCTYPE html>") and "No phases ran." in page and 'ml-plot"' not in page
    summary["phases"][0]["result"] = None
    summary["phases"][1]["metrics"] = None
    summary["gates"] = None
    assert "No gates were configured." in render_html(summary, manifest)


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "\u2014"), (0.012345678, "0.01235"), (1e-7, "1e-07"), (12345678.9, "1.235e+07"), (3, "3"),
     (2.0, "2"), (0.0, "0"), (True, "yes"), (math.nan, "NaN"), (-math.inf, "-inf"), (0.9987, "0.9987")],
)  # fmt: skip
def test_number_formatting(value: Any, text: str) -> None:
    assert fmt_num(value) == text


def test_seconds_formatting() -> None:
    assert [fmt_seconds(s) for s in (None, 1.234, 125, 3725)] == ["\u2014", "1.23 s", "2 min 05 s", "1 h 02 min"]


def test_write_report_is_atomic(
    tmp_path: Path, summary: dict[str, Any], manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run" / "report"
    paths = report.write_report(out, summary, manifest)
    assert paths == {"html": out / "report.html", "markdown": out / "report.md"}
    assert paths["html"].read_text(encoding="utf-8") == render_html(summary, manifest)
    assert paths["markdown"].read_text(encoding="utf-8").startswith("# Capstone smoke run")
    before = paths["html"].read_bytes()

    def boom(*_: Any) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "render_markdown", boom)
    summary["title"] = "changed"
    with pytest.raises(RuntimeError, match="render failed"):
        report.write_report(out, summary, manifest)
    assert paths["html"].read_bytes() == before  # nothing half-written, earlier report intact
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md"]  # no temp files left


def test_figure_builders_return_plain_json_figures() -> None:
    x = np.array([1.0, 10.0, 100.0])
    y = np.array([1.0, np.nan, 0.01])
    band = F.line_with_band("k", "t", x, y, y * 0.5, y * 2, name="m", xlog=True, ylog=True, xlabel="n")
    assert [t.get("fill") for t in band.data] == [None, "tonexty", None]
    assert band.data[-1]["y"] == [1.0, None, 0.01]
    assert band.layout["xaxis"]["type"] == "log" and band.layout["yaxis"]["type"] == "log"
    assert band.layout["xaxis"]["title"] == {"text": "n"}
    bars = F.bars("b", "bars", ["a", "b"], [2.0, 3.0], [1.5, 2.0], [2.5, 4.5])
    assert bars.layout["xaxis"]["type"] == "category"
    assert bars.data[0]["error_y"]["array"] == [0.5, 1.5] and bars.data[0]["error_y"]["arrayminus"] == [0.5, 1.0]
    err = F.line_with_errorbars("e", "err", [1, 2], [1.0, 2.0], [0.5, 1.0], [1.5, None])
    assert err.data[0]["error_y"]["array"] == [0.5, None]
    fit = F.scatter_with_curve("s", "fit", [1, 2], [1, 2], [0, 3], [0, 3], xlog=True)
    assert [t["mode"] for t in fit.data] == ["markers", "lines"] and fit.layout["showlegend"] is True
    for fig in (band, bars, err, fit):
        json.dumps(fig.to_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="equal lengths"):
        F.line_with_band("k", "t", [1, 2], [1, 2, 3])
