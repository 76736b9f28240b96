"""The self-contained HTML report of a protocol run.

:func:`render_html` turns the runner's ``summary`` and ``manifest`` dicts into one HTML page that
opens offline: Plotly's JavaScript is embedded inline, nothing is loaded from the network (a
Content-Security-Policy forbids it), every text that comes from a config or from data is
HTML-escaped, and figure JSON embedded in ``<script>`` is escaped so a string in the data cannot
close the script element. A figure that is malformed or empty renders as a note; the rest of the
report is unaffected.

The formatting helpers at the top (numbers, verdicts, intervals, counts) are shared with the
Markdown renderer so both reports say the same thing.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

# --------------------------------------------------------------------------------------------
# Shared formatting (also used by multilens.report.markdown)
# --------------------------------------------------------------------------------------------

DASH = "\u2014"  # shown for None / missing values


def as_list(value: Any) -> list[Any]:
    """``value`` as a list; None (or a non-sequence) gives an empty list."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return []


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` as a dict; None (or a non-mapping) gives an empty dict."""
    return dict(value) if isinstance(value, Mapping) else {}


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; ints stay exact, None is a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0.0:
        return "0"
    if x.is_integer() and abs(x) < 1e15 and len(str(int(x))) <= digits:
        return str(int(x))
    return f"{x:.{digits}g}"


def fmt_seconds(value: Any) -> str:
    """A wall time in seconds as "12.3 s", "4 min 05 s" or "1 h 02 min"."""
    if value is None:
        return DASH
    try:
        s = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(s):
        return DASH
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def to_text(value: Any) -> str:
    """Any JSON value as display text: numbers formatted, containers as compact JSON."""
    if value is None:
        return DASH
    if isinstance(value, (bool, int, float)):
        return fmt_num(value)
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return str(value)


def verdict(passed: Any) -> str:
    """The verdict of a check or gate, from ``passed`` only: pass / fail / not evaluated."""
    if passed is None:
        return "not evaluated"
    return "pass" if passed else "fail"


def check_counts(checks: Sequence[Any]) -> tuple[int, int, int]:
    """(passed, failed, not evaluated) among check dicts."""
    verdicts = [verdict(as_dict(c).get("passed")) for c in checks]
    return verdicts.count("pass"), verdicts.count("fail"), verdicts.count("not evaluated")


EVIDENCE_KINDS = ("agreement", "bound")


def split_checks(checks: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(evidence, sanity): agreement and bound checks count as evidence; sanity checks are self-tests."""
    ds = [as_dict(c) for c in checks]
    return [c for c in ds if c.get("kind") in EVIDENCE_KINDS], [c for c in ds if c.get("kind") not in EVIDENCE_KINDS]


def failed_first(checks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    order = {"fail": 0, "not evaluated": 1, "pass": 2}
    return sorted(checks, key=lambda c: order[verdict(c.get("passed"))])


def fmt_counts(counts: tuple[int, int, int]) -> str:
    """ "3 pass · 1 fail · 0 not evaluated" style summary of :func:`check_counts`."""
    n_pass, n_fail, n_ne = counts
    return f"{n_pass} pass \u00b7 {n_fail} fail \u00b7 {n_ne} not evaluated"


def fmt_interval(est: Mapping[str, Any]) -> str:
    """An estimate's interval as "[lo, hi]", or a dash when it has none."""
    lo, hi = est.get("ci_low"), est.get("ci_high")
    if lo is None and hi is None:
        return DASH
    return f"[{fmt_num(lo)}, {fmt_num(hi)}]"


def fmt_level_method(est: Mapping[str, Any]) -> str:
    """An estimate's interval level and method, e.g. "95% bootstrap percentile"."""
    if est.get("ci_low") is None and est.get("ci_high") is None:
        return est.get("method") or DASH
    level = est.get("level")
    pct = f"{fmt_num(100 * float(level), 3)}%" if isinstance(level, (int, float)) else ""
    return " ".join(p for p in (pct, str(est.get("method") or "")) if p) or DASH


def fmt_value_unit(est: Mapping[str, Any]) -> str:
    """An estimate's value with its unit."""
    value = fmt_num(est.get("value"))
    unit = est.get("unit") or ""
    return f"{value} {unit}" if unit and est.get("value") is not None else value


def fmt_n(est: Mapping[str, Any]) -> str:
    """An estimate's sample count; 0 is the "not given" default and shows as a dash."""
    n = est.get("n")
    return DASH if not n else fmt_num(n)


def fmt_converged(est: Mapping[str, Any]) -> tuple[str, str]:
    """(converged, iterations) display text of an iterative estimate."""
    conv = est.get("converged")
    return (DASH if conv is None else ("yes" if conv else "no")), fmt_num(est.get("n_iter"))


def fmt_rule(gate: Mapping[str, Any]) -> str:
    """A gate's rule, e.g. "r2 >= 0.9"."""
    return f"{gate.get('metric', '')} {gate.get('op', '')} {fmt_num(gate.get('threshold'))}".strip()


def phase_result(phase: Mapping[str, Any]) -> dict[str, Any]:
    """A phase's LensResult dict (empty when the phase has none)."""
    return as_dict(phase.get("result"))


# --------------------------------------------------------------------------------------------
# HTML building blocks
# --------------------------------------------------------------------------------------------

_BADGE_KIND = {
    "pass": "ok", "done": "ok", "complete": "ok", "holds": "ok", "mitigated": "ok", "closed": "ok", "yes": "ok",
    "fail": "bad", "failed": "bad", "missing": "bad", "violated": "bad", "triggered": "bad",
    "stopped": "warn", "partial": "warn", "warn": "warn", "open": "warn", "no": "warn",
}  # fmt: skip


def esc(value: Any) -> str:
    """HTML-escape any value's display text (quotes too, so it is safe in attributes)."""
    return html.escape(to_text(value), quote=True)


def badge(text: Any, kind: str | None = None) -> str:
    """A coloured verdict/status badge; the colour follows the text unless ``kind`` is given."""
    label = to_text(text)
    kind = kind or _BADGE_KIND.get(label.lower(), "neutral")
    return f'<span class="badge badge-{kind}">{esc(label)}</span>'


def table(columns: Sequence[Any], rows: Sequence[Sequence[str]], *, raw: bool = False, cls: str = "") -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they must already be safe HTML)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    inner = f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
    tools = (
        '<div class="dl"><button type="button" data-dl="csv">CSV</button>'
        '<button type="button" data-dl="json">JSON</button></div>'
    )
    return f'<div class="table-wrap">{tools}<table class="{cls}">{inner}</table></div>'


def _empty(text: str) -> str:
    return f'<p class="empty">{esc(text)}</p>'


def _section(anchor: str, title: str, body: str, cls: str = "") -> str:
    return f'<section id="{esc(anchor)}" class="{cls}"><h2>{esc(title)}</h2>{body}</section>'


def _key_values(items: Mapping[str, Any]) -> str:
    rows = [[esc(k), f"<code>{esc(v)}</code>" if isinstance(v, (dict, list)) else esc(v)] for k, v in items.items()]
    return table(["name", "value"], rows, raw=True, cls="kv")


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
_ARRAY_KEYS = ("x", "y", "z", "values", "r", "theta", "lat", "lon", "a", "b")


def jsonable(obj: Any) -> Any:
    """A plain-JSON copy of ``obj``: non-finite floats become None, arrays become lists.

    Raises TypeError for values JSON cannot represent (the caller shows a note instead).
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # NumPy arrays and scalars
        return jsonable(obj.tolist())
    raise TypeError(f"a value of type {type(obj).__name__} cannot be written as JSON")


def script_json(obj: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` are written as \\u escapes (so neither ``</script>`` nor ``<!--`` can
    appear), and so are U+2028/U+2029 (line terminators in older JavaScript).
    """
    text = json.dumps(jsonable(obj), allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def _trace_is_empty(trace: Mapping[str, Any]) -> bool:
    arrays = [trace[k] for k in _ARRAY_KEYS if k in trace]
    return bool(arrays) and all(isinstance(a, (list, tuple)) and len(a) == 0 for a in arrays)


def _figure_traces(fig: Mapping[str, Any]) -> tuple[list[Any] | None, str]:
    """The figure's traces, or (None, why they cannot be plotted)."""
    data = fig.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            return None, f"its data is not valid JSON ({exc})"
    if data is None or (isinstance(data, (list, tuple)) and len(data) == 0):
        return None, "it has no data"
    if not isinstance(data, (list, tuple)) or not all(isinstance(t, Mapping) for t in data):
        return None, "its data is not a list of Plotly traces"
    if all(_trace_is_empty(t) for t in data):
        return None, "it has no data points"
    return list(data), ""


def _titled(value: Any) -> Any:
    """Plotly.js >= 3 wants ``{"text": ...}`` titles; accept the old string shorthand."""
    return {"text": value} if isinstance(value, str) else value


def _normalize_layout(layout: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in layout.items():
        if k == "title":
            v = _titled(v)
        elif k.startswith(("xaxis", "yaxis")) and isinstance(v, Mapping) and "title" in v:
            v = dict(v) | {"title": _titled(v["title"])}
        out[k] = v
    return out


def figure_spec(fig: Mapping[str, Any]) -> tuple[str | None, str]:
    """(script-safe JSON of {data, layout, config}, "") or (None, why the figure cannot be drawn)."""
    traces, problem = _figure_traces(fig)
    if traces is None:
        return None, problem
    layout = fig.get("layout") or {}
    if not isinstance(layout, Mapping):
        return None, "its layout is not a JSON object"
    base = {
        "height": 340,
        "margin": {"l": 64, "r": 16, "t": 40, "b": 52},
        "font": {"family": _FONT, "size": 12},
        "hovermode": "closest",
        # Above the plotting area, so a legend never sits on the x-axis title.
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
    }
    config = {
        "responsive": True,
        "displaylogo": False,
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
        "toImageButtonOptions": {"filename": str(fig.get("key") or "figure")},
    }
    spec = {"data": traces, "layout": base | _normalize_layout(layout), "config": config}
    try:
        return script_json(spec), ""
    except (TypeError, ValueError) as exc:
        return None, f"its JSON is invalid ({exc})"


def figure_html(fig: Any, plot_id: str) -> str:
    """One figure: title, a ``div.ml-plot`` and the script that draws it (or a note)."""
    fig = as_dict(fig)
    key, title, caption = fig.get("key") or "", fig.get("title") or fig.get("key") or "figure", fig.get("caption") or ""
    cap = f'<div class="caption">{esc(caption)}</div>' if caption else ""
    spec, problem = figure_spec(fig)
    if spec is None:
        body = f'<div class="plot-note" data-key="{esc(key)}">Plot not shown: {esc(problem)}.</div>'
    else:
        body = (
            f'<div class="ml-plot" id="{esc(plot_id)}" data-key="{esc(key)}"></div>'
            f'<script>multilensPlot("{esc(plot_id)}", {spec});</script>'
        )
    return f'<figure class="plot"><figcaption><strong>{esc(title)}</strong>{cap}</figcaption>{body}</figure>'


# --------------------------------------------------------------------------------------------
# Result parts
# --------------------------------------------------------------------------------------------


def estimates_html(estimates: Sequence[Any]) -> str:
    """The estimates table: value, interval with level and method, stderr, n, convergence."""
    if not estimates:
        return ""
    rows = []
    for e in map(as_dict, estimates):
        conv, n_iter = fmt_converged(e)
        conv_html = badge(conv) if conv != DASH else DASH
        rows.append([
            f"<strong>{esc(e.get('name', ''))}</strong>", esc(fmt_value_unit(e)), esc(fmt_interval(e)),
            esc(fmt_level_method(e)), esc(fmt_num(e.get("stderr"))), esc(fmt_n(e)),
            conv_html, esc(n_iter), esc(e.get("note") or ""),
        ])  # fmt: skip
    cols = ["estimate", "value", "interval", "level \u00b7 method", "stderr", "n", "converged", "iterations", "note"]
    return "<h3>Estimates</h3>" + table(cols, rows, raw=True, cls="num")


def _checks_table(checks: Sequence[Mapping[str, Any]]) -> str:
    """Failed and not-evaluated checks shown; passing ones in a collapsed, filterable block."""
    open_ = [c for c in checks if c.get("passed") is not True]
    passed = [c for c in checks if c.get("passed") is True]
    out = _checks_rows_table(open_) if open_ else ""
    if passed:
        out += (
            f'<details class="passed"><summary>{len(passed)} passing check(s)</summary>'
            '<input class="filter" type="search" placeholder="filter checks" aria-label="filter checks">'
            + _checks_rows_table(passed)
            + "</details>"
        )
    return out


def _checks_rows_table(checks: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for c in failed_first(checks):
        v = verdict(c.get("passed"))
        kind = "warn" if v == "fail" and c.get("severity") == "info" else None
        ratio = c.get("bound_ratio")
        crit = (c.get("criterion") or "") + (f" (bound/exact = {fmt_num(ratio)})" if ratio is not None else "")
        rows.append([
            f"<strong>{esc(c.get('name', ''))}</strong>", esc(c.get("kind") or DASH), badge(v, kind),
            esc(fmt_num(c.get("observed"))), esc(fmt_num(c.get("expected"))), esc(fmt_num(c.get("tolerance"))),
            esc(crit or DASH), esc(c.get("severity") or DASH), esc(c.get("reason") or ""),
        ])  # fmt: skip
    cols = ["check", "kind", "verdict", "observed", "expected", "tolerance", "criterion", "severity", "reason"]
    return table(cols, rows, raw=True, cls="num")


def checks_html(checks: Sequence[Any], heading: str = "Checks") -> str:
    """Evidence (agreement and bound checks) first, then the self-tests apart; failed checks first.

    The verdict is computed from ``passed``, never copied.
    """
    if not checks:
        return ""
    evidence, sanity = split_checks(checks)
    out = ""
    if evidence:
        counts = esc(fmt_counts(check_counts(evidence)))
        out += f"<h3>{esc(heading)}: evidence (agreement and bound) <small>{counts}</small></h3>" + _checks_table(
            evidence
        )
    if sanity:
        counts = esc(fmt_counts(check_counts(sanity)))
        out += f"<h3>{esc(heading)}: self-tests (sanity, not evidence) <small>{counts}</small></h3>" + _checks_table(
            sanity
        )
    return out


def tables_html(tables: Sequence[Any]) -> str:
    """The result's own tables, each with its title and caption."""
    parts = []
    for t in map(as_dict, tables):
        rows = [[to_text(v) for v in as_list(r)] for r in as_list(t.get("rows"))]
        cap = f'<div class="caption">{esc(t.get("caption"))}</div>' if t.get("caption") else ""
        title = esc(t.get("title") or t.get("key") or "table")
        parts.append(f"<h4>{title}</h4>{table(as_list(t.get('columns')), rows, cls='num')}{cap}")
    return "<h3>Tables</h3>" + "".join(parts) if parts else ""


def assumptions_html(assumptions: Sequence[Any]) -> str:
    """Assumptions with their source, the check that tests them and their status."""
    if not assumptions:
        return ""
    rows = [
        [esc(a.get("text", "")), esc(a.get("source") or DASH), esc(a.get("how") or a.get("checked_by") or DASH),
         badge(a.get("status") or "unchecked")]
        for a in map(as_dict, assumptions)
    ]  # fmt: skip
    return "<h3>Assumptions</h3>" + table(["assumption", "source", "checked by", "status"], rows, raw=True)


def predictions_html(predictions: Mapping[str, Any]) -> str:
    """The theory's predictions as a key/value table."""
    return "<h3>Predictions</h3>" + _key_values(predictions) if predictions else ""


def notes_html(notes: Sequence[Any]) -> str:
    """Free-text notes as a list."""
    if not notes:
        return ""
    return '<h3>Notes</h3><ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"


def _types_text(types: Any) -> str:
    items = as_dict(types)
    if not items:
        return DASH
    return ", ".join(f"<code>{esc(k)}</code>: {esc(v)}" for k, v in items.items())


def phase_anchor(phase: Mapping[str, Any]) -> str:
    """A stable anchor for a phase: its name, the same in every run (``#lens-curvature``)."""
    return "lens-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(phase.get("name") or "phase"))


def phase_html(phase: Mapping[str, Any], index: int) -> str:
    """One phase: what ran, plots, estimates, checks, tables, predictions, assumptions, notes."""
    result = phase_result(phase)
    status = phase.get("status") or "unknown"
    head = (
        f'<h2><span class="num">{index + 1}.</span> {esc(phase.get("title") or phase.get("name") or "phase")} '
        f"<code>{esc(phase.get('name', ''))}</code> {badge(status)}</h2>"
    )
    ran = (
        '<dl class="ran">'
        f"<dt>status</dt><dd>{badge(status)}</dd>"
        f"<dt>wall time</dt><dd>{esc(fmt_seconds(phase.get('wall_time_s')))}</dd>"
        f"<dt>consumes</dt><dd>{_types_text(phase.get('consumes'))}</dd>"
        f"<dt>produces</dt><dd>{_types_text(phase.get('produces'))}</dd>"
        + (f"<dt>lens</dt><dd><code>{esc(result.get('lens'))}</code></dd>" if result.get("lens") else "")
        + "</dl>"
    )
    error = (
        f'<div class="error"><strong>Error</strong><pre>{esc(phase.get("error"))}</pre></div>'
        if phase.get("error")
        else ""
    )
    metrics = as_dict(phase.get("metrics"))
    metrics_part = "<h3>Gate metrics</h3>" + _key_values(metrics) if metrics else ""
    figures = as_list(result.get("figures"))
    plots = (
        '<h3>Plots</h3><div class="plots">'
        + "".join(figure_html(f, f"ml-plot-{index}-{j}") for j, f in enumerate(figures))
        + "</div>"
        if figures
        else ""
    )
    body = (
        ran + error + metrics_part + plots
        + estimates_html(as_list(result.get("estimates")))
        + checks_html(as_list(result.get("checks")))
        + tables_html(as_list(result.get("tables")))
        + predictions_html(as_dict(result.get("predictions")))
        + assumptions_html(as_list(result.get("assumptions")))
        + notes_html(as_list(result.get("notes")))
    )  # fmt: skip
    if not result:
        body += _empty("This phase produced no result.")
    return f'<section id="phase-{index}" class="phase"><a id="{esc(phase_anchor(phase))}"></a>{head}{body}</section>'


# --------------------------------------------------------------------------------------------
# Report-level sections
# --------------------------------------------------------------------------------------------


def header_html(summary: Mapping[str, Any]) -> str:
    """Title and the run's key facts as cards."""
    phases = as_list(summary.get("phases"))
    all_checks = [c for p in phases for c in as_list(phase_result(as_dict(p)).get("checks"))]
    all_checks += as_list(summary.get("cross_checks"))
    evidence, sanity = split_checks(all_checks)
    missing = sum(len(as_list(as_dict(p).get("missing_checks"))) for p in phases)
    ev_pass, ev_fail, ev_ne = check_counts(evidence)
    gates = [as_dict(g) for g in as_list(summary.get("gates"))]
    gates_passed = sum(1 for g in gates if g.get("passed") is True)
    status = summary.get("status") or "unknown"
    stopped = f" at <code>{esc(summary.get('stopped_at'))}</code>" if summary.get("stopped_at") else ""
    failed_error = [c for c in all_checks if c.get("passed") is False and c.get("severity", "error") == "error"]
    status_kind = "warn" if status == "complete" and failed_error else None
    cards = [
        ("status", badge(status + (" with failed checks" if status_kind else ""), status_kind) + stopped),
        ("profile", esc(summary.get("profile") or DASH)),
        ("seed", esc(summary.get("seed"))),
        ("wall time", esc(fmt_seconds(summary.get("wall_time_s")))),
        ("started (UTC)", esc(summary.get("started_utc") or DASH)),
        ("evidence checks", esc(fmt_counts((ev_pass, ev_fail, ev_ne + missing)))),
        ("sanity checks", esc(fmt_counts(check_counts(sanity)))),
        ("gates passed", esc(f"{gates_passed} / {len(gates)}")),
    ]
    card_html = "".join(
        f'<div class="card"><div class="label">{esc(k)}</div><div class="value">{v}</div></div>' for k, v in cards
    )
    line = f'<p class="headline">{esc(summary["headline"])}</p>' if summary.get("headline") else ""
    return (
        f'<header><div class="kicker">multilens report</div><h1>{esc(summary.get("title") or "multilens report")}</h1>'
        f'{line}<div class="cards">{card_html}</div></header>'
    )


def verdict_strip(summary: Mapping[str, Any]) -> str:
    """The verdict first: gates, checks by kind and every phase that did not finish, each linked to its section."""
    phases = [as_dict(p) for p in as_list(summary.get("phases"))]
    gates = [as_dict(g) for g in as_list(summary.get("gates"))]
    g_pass = sum(g.get("passed") is True for g in gates)
    g_fail = [g for g in gates if g.get("passed") is not True and not g.get("skipped")]
    blocking = [g for g in g_fail if g.get("effective_action", g.get("action")) == "stop"]
    checks = [c for p in phases for c in as_list(phase_result(p).get("checks"))] + as_list(summary.get("cross_checks"))
    evidence, sanity = split_checks(checks)
    ev, sa = check_counts(evidence), check_counts(sanity)
    items = [
        ("#gates", f"gates: {g_pass} pass, {len(g_fail)} fail or unmeasured ({len(blocking)} blocking)",
         "bad" if blocking else ("warn" if g_fail else "ok")),
        ("#overview", f"evidence checks: {ev[0]} pass, {ev[1]} fail, {ev[2]} not evaluated", "bad" if ev[1] else "ok"),
        ("#overview", f"self-tests: {sa[0]} pass, {sa[1]} fail", "bad" if sa[1] else "ok"),
    ]  # fmt: skip
    for p in phases:
        if p.get("status") not in ("done", None):
            items.append((f"#{phase_anchor(p)}", f"{p.get('name')}: {p.get('status')}", "bad"))
    from multilens.report.system import strip_items

    items = strip_items(summary) + items
    links = "".join(f'<a class="{k}" href="{esc(h)}">{esc(t)}</a>' for h, t, k in items)
    return f'<div class="strip" role="navigation" aria-label="verdict">{links}</div>'


def overview_html(phases: Sequence[Mapping[str, Any]]) -> str:
    """One row per phase: status, wall time, check counts, numbers of estimates and plots."""
    if not phases:
        return _empty("No phases ran.")
    rows = []
    for i, p in enumerate(phases):
        r = phase_result(p)
        evidence, sanity = split_checks(as_list(r.get("checks")))
        n_pass, n_fail, n_ne = check_counts(evidence)
        n_ne += len(as_list(p.get("missing_checks")))
        s_pass, s_fail, s_ne = check_counts(sanity)
        status = (p.get("status") or "unknown") + (f" (cached from {p['cached_from']})" if p.get("cached_from") else "")
        rows.append([
            esc(i + 1), f'<a href="#phase-{i}">{esc(p.get("title") or p.get("name") or "phase")}</a>',
            f"<code>{esc(p.get('name', ''))}</code>", badge(status, "warn" if p.get("cached_from") else None),
            esc(fmt_seconds(p.get("wall_time_s"))), esc(n_pass), esc(n_fail) if not n_fail else badge(n_fail, "bad"),
            esc(n_ne), esc(f"{s_pass}/{s_fail}/{s_ne}"), esc(len(as_list(r.get("estimates")))),
            esc(len(as_list(r.get("figures")))),
        ])  # fmt: skip
    cols = ["#", "phase", "name", "status", "wall time", "evidence pass", "evidence fail", "evidence not evaluated",
            "sanity pass/fail/n.e.", "estimates", "plots"]  # fmt: skip
    return table(cols, rows, raw=True, cls="num")


def gates_html(gates: Sequence[Any]) -> str:
    """Go/no-go gates: rule, observed value, action and the verdict (coloured by action)."""
    if not gates:
        return _empty("No gates were configured.")
    rows = []
    for g in map(as_dict, gates):
        v = verdict(g.get("passed"))
        kind = ("bad" if g.get("action") == "stop" else "warn") if v == "fail" else None
        rows.append([
            f"<strong>{esc(g.get('name', ''))}</strong>", f"<code>{esc(g.get('phase') or DASH)}</code>",
            f"<code>{esc(fmt_rule(g))}</code>", esc(fmt_num(g.get("value"))),
            esc((g.get("action") or DASH) + (f" -> {g['fallback'].get('name')}: {g['fallback'].get('status')}"
                                              if g.get("fallback") else "")),
            badge(v, kind), esc(g.get("reason") or ""),
        ])  # fmt: skip
    return table(["gate", "phase", "rule", "value", "action", "verdict", "reason"], rows, raw=True, cls="num")


def recommendations_html(recs: Sequence[Any]) -> str:
    """Recommendations derived from the measurements, each with its source."""
    if not recs:
        return _empty("No recommendations.")
    items = "".join(
        f'<li>{esc(r.get("text", ""))} <span class="source">{esc(r.get("source") or "")}</span>'
        + (f' <span class="rests">rests on: {esc(", ".join(map(str, as_list(r.get("rests_on")))))}</span>'
           if r.get("rests_on") else "")
        + "</li>"
        for r in map(as_dict, recs)
    )  # fmt: skip
    return f'<ul class="recs">{items}</ul>'


def risks_html(risks: Sequence[Any]) -> str:
    """The risk register."""
    if not risks:
        return _empty("No risks recorded.")
    keys = ["id", "title", "trigger", "likelihood", "impact", "mitigation"]
    rows = [[esc(r.get(k) or DASH) for k in keys] + [badge(r.get("status") or DASH)] for r in map(as_dict, risks)]
    return table(keys + ["status"], rows, raw=True)


def checklist_html(items: Sequence[Any]) -> str:
    """The reproducibility checklist."""
    if not items:
        return _empty("No checklist.")
    rows = [
        [esc(c.get("item", "")), badge(c.get("status") or DASH), esc(c.get("evidence") or "")]
        for c in map(as_dict, items)
    ]
    return table(["item", "status", "evidence"], rows, raw=True)


def safe_relative_href(path: Any) -> str | None:
    """``path`` if it is a plain relative path (no scheme, not absolute), else None."""
    p = str(path)
    if not p or p.startswith(("/", "\\")) or ":" in p.split("/", 1)[0] or "//" in p:
        return None
    return p


def artifacts_html(artifacts: Mapping[str, Any]) -> str:
    """Files written by the run, linked relative to the report."""
    if not artifacts:
        return _empty("No artifacts.")
    rows = []
    for name, path in artifacts.items():
        href = safe_relative_href(path)
        link = f'<a href="{esc(href)}"><code>{esc(path)}</code></a>' if href else f"<code>{esc(path)}</code>"
        rows.append([esc(name), link])
    return table(["artifact", "path"], rows, raw=True)


def manifest_html(manifest: Mapping[str, Any]) -> str:
    """Versions, hardware, seeds, config and checksums inside a collapsible block."""
    scalars = {k: v for k, v in manifest.items() if not isinstance(v, Mapping)}
    parts = [_key_values(scalars)] if scalars else []
    for key, value in manifest.items():
        if not isinstance(value, Mapping):
            continue
        if key == "config":
            text = json.dumps(jsonable_or_str(value), indent=2, ensure_ascii=False)
            parts.append(f"<h4>{esc(key)}</h4><pre>{html.escape(text)}</pre>")
        else:
            parts.append(f"<h4>{esc(key.replace('_', ' '))}</h4>" + (_key_values(value) if value else _empty("none")))
    inner = "".join(parts) or _empty("Empty manifest.")
    summary = "<summary>Versions, hardware, seeds, config and checksums (click to expand)</summary>"
    return f'<details class="manifest">{summary}{inner}</details>'


def jsonable_or_str(obj: Any) -> Any:
    """Like :func:`jsonable` but unknown objects become their ``str`` (for display only)."""
    try:
        return jsonable(obj)
    except TypeError:
        if isinstance(obj, Mapping):
            return {str(k): jsonable_or_str(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [jsonable_or_str(v) for v in obj]
        return str(obj)


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'"
)

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#f6f8fa; --accent:#0969da;
  --ok:#1a7f37; --ok-bg:#dafbe1; --bad:#cf222e; --bad-bg:#ffebe9; --warn:#9a6700; --warn-bg:#fff8c5;
  --neutral:#59636e; --neutral-bg:#eaeef2; }
* { box-sizing: border-box; }
body { margin:0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color:var(--fg); background:#fff; line-height:1.45; font-size:14px; }
.layout { display:grid; grid-template-columns: 220px minmax(0, 1fr); }
nav { position:sticky; top:0; align-self:start; height:100vh; overflow:auto; padding:20px 14px;
  background:var(--bg); border-right:1px solid var(--line); font-size:13px; }
nav .nav-title { font-weight:600; margin-bottom:8px; }
nav ol, nav ul { margin:0; padding-left:18px; } nav li { margin:3px 0; }
nav a { color:var(--fg); text-decoration:none; } nav a:hover { color:var(--accent); text-decoration:underline; }
main { padding:24px 36px 60px; max-width:1400px; }
header .kicker { text-transform:uppercase; letter-spacing:.08em; color:var(--muted); font-size:12px; }
h1 { margin:4px 0 16px; font-size:26px; }
h2 { font-size:20px; margin:0 0 12px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h2 .num { color:var(--muted); } h2 code { font-size:13px; color:var(--muted); font-weight:normal; }
h3 { font-size:15px; margin:20px 0 8px; } h3 small { color:var(--muted); font-weight:normal; margin-left:6px; }
h4 { font-size:14px; margin:14px 0 6px; }
section { margin:32px 0; }
section.phase { border:1px solid var(--line); border-radius:8px; padding:18px 20px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; }
.card { border:1px solid var(--line); border-radius:8px; padding:8px 14px; min-width:120px; background:#fff; }
.card .label { font-size:11px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); }
.card .value { font-size:15px; font-weight:600; margin-top:2px; }
.table-wrap { overflow-x:auto; }
table { border-collapse:collapse; width:100%; margin:4px 0 8px; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left; vertical-align:top; }
th { background:var(--bg); font-weight:600; white-space:nowrap; }
table.num td { font-variant-numeric: tabular-nums; }
table.kv td:first-child { width:30%; color:var(--muted); }
tbody tr:hover { background:#fafbfc; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12px; }
pre { background:var(--bg); padding:10px; border-radius:6px; overflow:auto; max-height:480px; white-space:pre-wrap; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
  white-space:nowrap; }
.badge-ok { color:var(--ok); background:var(--ok-bg); } .badge-bad { color:var(--bad); background:var(--bad-bg); }
.badge-warn { color:var(--warn); background:var(--warn-bg); }
.badge-neutral { color:var(--neutral); background:var(--neutral-bg); }
dl.ran { display:grid; grid-template-columns:max-content 1fr; gap:4px 14px; margin:0 0 8px; }
dl.ran dt { color:var(--muted); } dl.ran dd { margin:0; }
.error { border-left:4px solid var(--bad); background:var(--bad-bg); padding:8px 12px; border-radius:4px;
  margin:10px 0; }
.error pre { background:transparent; padding:4px 0 0; margin:0; }
.plots { display:grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap:14px; }
figure.plot { margin:0; border:1px solid var(--line); border-radius:6px; padding:10px; min-width:0; }
figure.plot figcaption { margin-bottom:4px; }
.caption { color:var(--muted); font-size:12px; margin-top:2px; }
.ml-plot { width:100%; min-height:340px; }
.plot-note, .ml-plot-failed { color:var(--warn); background:var(--warn-bg); padding:14px; border-radius:4px;
  min-height:0; }
.dl { text-align:right; margin:2px 0; } .dl button { font-size:11px; margin-left:4px; padding:1px 6px;
  border:1px solid var(--line); border-radius:4px; background:#fff; cursor:pointer; }
input.filter { margin:6px 0; padding:3px 6px; width:260px; border:1px solid var(--line); border-radius:4px; }
details.passed > summary { cursor:pointer; color:var(--muted); margin:6px 0; }
.strip { display:flex; flex-wrap:wrap; gap:8px; margin:8px 0 18px; }
.strip a { text-decoration:none; border:1px solid var(--line); border-radius:16px; padding:3px 10px; color:var(--fg); }
.strip a.bad { border-color:var(--bad); background:var(--bad-bg); } .strip a.ok { border-color:var(--ok); }
.strip a.warn { border-color:var(--warn); background:var(--warn-bg); }
@media print { nav, .dl, input.filter, .strip { display:none; } .layout { display:block; } main { padding:0; }
  section.phase { break-inside:auto; } .ml-plot { break-inside:avoid; } }
.headline { font-size:15px; font-weight:600; margin:4px 0 10px; } .rests { color:var(--muted); font-size:12px; }
.empty { color:var(--muted); font-style:italic; }
ul.recs li, ul.notes li { margin:4px 0; } .source { color:var(--muted); font-size:12px; margin-left:6px; }
details.manifest summary { cursor:pointer; font-weight:600; padding:6px 0; }
footer { color:var(--muted); font-size:12px; margin-top:40px; }
@media (max-width: 900px) { .layout { display:block; } nav { position:static; height:auto; } main { padding:16px; }
  .plots { grid-template-columns: 1fr; } }
@media print { nav { display:none; } .layout { display:block; } }
"""

_PLOT_JS = """
function multilensTableData(table) {
  var rows = Array.prototype.map.call(table.rows, function (r) {
    return Array.prototype.map.call(r.cells, function (c) { return c.textContent.trim(); });
  });
  return {columns: rows[0] || [], rows: rows.slice(1)};
}
function multilensCsvCell(v) { return /[",\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
document.addEventListener("click", function (ev) {
  var b = ev.target.closest ? ev.target.closest("button[data-dl]") : null;
  if (!b) { return; }
  var d = multilensTableData(b.closest(".table-wrap").querySelector("table"));
  var kind = b.getAttribute("data-dl"), text;
  if (kind === "csv") {
    text = [d.columns].concat(d.rows).map(function (r) { return r.map(multilensCsvCell).join(","); }).join("\\n");
  } else { text = JSON.stringify(d, null, 1); }
  var a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], {type: kind === "csv" ? "text/csv" : "application/json"}));
  a.download = "table." + kind;
  document.body.appendChild(a); a.click(); a.remove();
});
document.addEventListener("input", function (ev) {
  if (!ev.target.classList || !ev.target.classList.contains("filter")) { return; }
  var q = ev.target.value.toLowerCase();
  ev.target.parentNode.querySelectorAll("tbody tr").forEach(function (tr) {
    tr.style.display = tr.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
  });
});
window.addEventListener("beforeprint", function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
});
function multilensPlotFailed(el, err) {
  el.className = "ml-plot-failed";
  el.textContent = "This plot could not be drawn: " + err;
  console.error("multilens: plot " + el.id + " could not be drawn:", err);
}
function multilensPlot(id, fig) {
  var el = document.getElementById(id);
  try {
    var done = Plotly.newPlot(el, fig.data, fig.layout, fig.config);
    if (done && done.catch) { done.catch(function (err) { multilensPlotFailed(el, err); }); }
  } catch (err) {
    multilensPlotFailed(el, err);
  }
}
"""


def plotly_js() -> str:
    """The installed plotly package's bundled plotly.js, made safe to inline in ``<script>``."""
    from plotly.offline import get_plotlyjs

    # plotly.js contains no "</script" today; guard anyway so a future bundle cannot end the element.
    return get_plotlyjs().replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def _nav(entries: Sequence[tuple[str, str]], phases: Sequence[Mapping[str, Any]]) -> str:
    phase_items = "".join(
        f'<li><a href="#{esc(phase_anchor(p))}">{esc(p.get("title") or p.get("name") or "phase")}</a> '
        f"{badge(p.get('status') or 'unknown')}</li>"
        for p in phases
    )
    items = []
    for anchor, title in entries:
        items.append(f'<li><a href="#{esc(anchor)}">{esc(title)}</a></li>')
        if anchor == "gates" and phase_items:
            items.append(f"<li>Phases<ol>{phase_items}</ol></li>")
    return f'<nav><div class="nav-title">Contents</div><ul>{"".join(items)}</ul></nav>'


def render_html(summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    """The full self-contained HTML report of a protocol run (see the module docstring)."""
    summary, manifest = as_dict(summary), as_dict(manifest)
    phases = [as_dict(p) for p in as_list(summary.get("phases"))]
    from multilens.report import system as sysr

    gates = as_list(summary.get("gates"))
    sections = [
        ("decision", "Decision record", sysr.decision_html(as_dict(summary.get("decision")))),
        ("overview", "Overview", overview_html(phases)),
        ("gates", "Go/no-go gates", gates_html(gates)),
        ("fallbacks", "Fallbacks", sysr.fallbacks_html(gates)),
        (
            "consistency",
            "Cross-lens consistency (predeclared)",
            sysr.consistency_html(as_list(summary.get("consistency") or summary.get("cross_checks"))),
        ),
        ("stress", "Stress tests", sysr.stress_html(as_list(summary.get("stress")), bool(summary.get("stress_run")))),
        ("handoffs", "Hand-offs between phases", sysr.handoffs_html(summary)),
        ("timing", "Wall time per phase", sysr.timing_html(summary)),
        ("recommendations", "Recommendations", recommendations_html(as_list(summary.get("recommendations")))),
        ("risks", "Risk register", risks_html(as_list(summary.get("risks")))),
        ("checklist", "Reproducibility checklist", checklist_html(as_list(summary.get("checklist")))),
        ("artifacts", "Artifacts", artifacts_html(as_dict(summary.get("artifacts")))),
        ("manifest", "Manifest", manifest_html(manifest)),
    ]
    head_sections = "".join(_section(a, t, b) for a, t, b in sections[:3])
    phase_sections = "".join(phase_html(p, i) for i, p in enumerate(phases))
    tail_sections = "".join(_section(a, t, b) for a, t, b in sections[3:])
    title = esc(summary.get("title") or "multilens report")
    footer = (
        f"<footer>Generated by multilens \u00b7 schema version {esc(summary.get('schema_version'))} "
        f"\u00b7 self-contained: opens offline, loads nothing from the network "
        f"\u00b7 page size __PAGE_SIZE__ of a {sysr.page_budget(str(summary.get('profile'))) / 1e6:.0f} MB budget "
        f"for the {esc(summary.get('profile'))} profile.</footer>"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title} \u2014 multilens report</title>"
        f"<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{plotly_js()}</script>\n'
        f"<script>{_PLOT_JS}</script>"
        '</head><body><div class="layout">'
        + _nav([(a, t) for a, t, _ in sections], phases)
        + "<main>"
        + header_html(summary)
        + verdict_strip(summary)
        + '<noscript><p class="empty">JavaScript is off: plots are not shown; all tables are.</p></noscript>'
        + head_sections
        + phase_sections
        + tail_sections
        + footer
        + "</main></div></body></html>\n"
    )
    size = len(page.encode("utf-8"))
    over = size > sysr.page_budget(str(summary.get("profile")))
    return page.replace("__PAGE_SIZE__", f"{size / 1e6:.2f} MB" + (" (OVER BUDGET)" if over else ""))
