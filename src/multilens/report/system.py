"""Report sections of the protocol as one system: decision record, hand-offs, cross-lens checks,
stress tests, fallbacks and wall time per phase (issue 14). HTML builders reuse the report's table
(every table downloadable as CSV/JSON from the page); markdown builders feed report.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from multilens.protocol.decision import stability_text
from multilens.report.html import DASH, as_dict, as_list, badge, esc, fmt_num, fmt_seconds, table, verdict

# Page size budgets per profile (bytes). plotly.js is inlined (~4.6 MB) so the page opens offline;
# the rest is data. A report over its budget says so in its footer.
PAGE_BUDGET_BYTES = {"smoke": 8_000_000, "quick": 9_000_000, "full": 14_000_000}

_STATUS_KIND = {"supported": "ok", "partly supported": "warn", "contested": "bad", "not made": "warn"}


def decision_html(record: Mapping[str, Any]) -> str:
    record = as_dict(record)
    decisions = [as_dict(d) for d in as_list(record.get("decisions"))]
    if not decisions:
        return '<p class="empty">No decision record (re-render the run with this version).</p>'
    out = []
    for d in decisions:
        st = as_dict(d.get("stability"))
        stab = esc(stability_text(st)) if st else "not recomputed under perturbations in this run"
        ev = [as_dict(e) for e in as_list(d.get("evidence"))]
        ev = sorted(ev, key=lambda e: {False: 0, None: 1, True: 2}.get(e.get("passed"), 1))
        rows = [
            [esc(e.get("source")), esc(e.get("item")), badge(verdict(e.get("passed"))), esc(e.get("detail"))]
            for e in ev
        ]
        n_fail = sum(e.get("passed") is False for e in ev)
        body = (
            f"<p><strong>Decision.</strong> {esc(d.get('decision'))}</p>"
            f"<p><strong>Uncertainty.</strong> {esc(d.get('uncertainty'))}</p>"
            f"<p><strong>Stability.</strong> {stab}</p>"
            + (
                f"<details{' open' if n_fail else ''}><summary>Evidence: {len(ev)} item(s), {n_fail} failed</summary>"
                + table(["source", "item", "verdict", "detail"], rows, raw=True)
                + "</details>"
                if ev
                else ""
            )
        )
        name = str(d.get("name", ""))
        out.append(
            f'<div class="decision" id="decision-{esc(name.replace(" ", "-"))}"><h3>{esc(name.capitalize())} '
            f"{badge(d.get('status'), _STATUS_KIND.get(str(d.get('status')), 'neutral'))}</h3>{body}</div>"
        )
    dis = [as_dict(g) for g in as_list(record.get("disagreements"))]
    if dis:
        rows = [
            [
                esc(f"#{g.get('number')} {g.get('check')}"),
                esc(", ".join(map(str, as_list(g.get("lenses"))))),
                esc(g.get("decision") or DASH),
                badge(g.get("status"), "ok" if g.get("status") == "resolved" else "warn"),
                esc(g.get("resolution")),
            ]
            for g in dis
        ]
        out.append(
            "<h3>Disagreements between lenses</h3>"
            + table(["cross-lens check", "lenses", "bears on", "status", "resolution"], rows, raw=True)
        )
    else:
        out.append('<p class="empty">No evaluated cross-lens check failed: no disagreement to resolve.</p>')
    return "".join(out)


def consistency_html(rules: Sequence[Any]) -> str:
    if not rules:
        return '<p class="empty">The policy declares no [[consistency]] rules.</p>'
    rows = []
    for c in sorted(map(as_dict, rules), key=lambda c: {False: 0, None: 1, True: 2}.get(c.get("passed"), 1)):
        rows.append(
            [
                f"<strong>{esc(c.get('name'))}</strong>",
                esc(c.get("number") or DASH),
                esc(c.get("kind")),
                f"<code>{esc(', '.join(map(str, as_list(c.get('metrics')))))}</code>",
                esc(c.get("criterion")),
                badge(verdict(c.get("passed"))),
                esc(c.get("reason")),
            ]
        )
    return table(["check", "#", "kind", "metrics", "criterion (predeclared)", "verdict", "measured"], rows, raw=True)


def stress_html(tests: Sequence[Any], ran: bool) -> str:
    if not tests:
        return '<p class="empty">The policy declares no [[stress]] tests.</p>'
    rows = [
        [
            f"<strong>{esc(t.get('name'))}</strong>",
            esc(t.get("kind")),
            esc(t.get("expected")),
            badge(verdict(t.get("passed"))),
            esc(t.get("verdict")),
            esc(fmt_seconds(t.get("wall_time_s"))),
        ]
        for t in map(as_dict, tests)
    ]
    note = "" if ran else '<p class="empty">Stress tests were not run: pass --stress (the full profile runs them).</p>'
    return note + table(
        ["stress test", "kind", "expected outcome (predeclared)", "verdict", "observed", "wall time"], rows, raw=True
    )


def handoffs_html(summary: Mapping[str, Any]) -> str:
    hs = [as_dict(h) for h in as_list(summary.get("handoffs"))]
    producers = {}
    for p in map(as_dict, as_list(summary.get("phases"))):
        for k in as_dict(p.get("produces")):
            producers[k] = p.get("name")
    if not hs:
        return '<p class="empty">No phase consumed another phase\'s output in this run.</p>'
    rows = []
    for h in hs:
        v = h.get("value")
        shown = fmt_num(v) if isinstance(v, (int, float)) else (str(v)[:160] if v is not None else DASH)
        rows.append(
            [
                f"<code>{esc(h.get('artifact'))}</code>",
                esc(producers.get(h.get("artifact"), DASH)),
                esc(h.get("consumer")),
                esc("required" if h.get("required") else "optional"),
                badge(
                    "used" if h.get("available") else "not available",
                    "ok" if h.get("available") else ("bad" if h.get("required") else "warn"),
                ),
                esc(shown),
            ]
        )
    return table(["artifact", "produced by", "consumed by", "kind", "status", "value"], rows, raw=True)


def fallbacks_html(gates: Sequence[Any]) -> str:
    fbs = [(as_dict(g), as_dict(g.get("fallback"))) for g in map(as_dict, gates) if g.get("fallback")]
    if not fbs:
        return '<p class="empty">No fallback ran: every fallback gate passed or was not evaluated.</p>'
    rows = []
    for g, fb in fbs:
        changed = "; ".join(
            f"{c.get('artifact') or c.get('setting')}: {str(c.get('before'))[:80]} -> {str(c.get('after'))[:80]}"
            for c in map(as_dict, as_list(fb.get("changed")))
        )
        rows.append(
            [
                esc(g.get("name")),
                esc(fb.get("name")),
                esc(fb.get("kind")),
                badge(fb.get("status"), "ok" if fb.get("status") == "applied" else "bad"),
                esc(changed or DASH),
                esc(fb.get("reason")),
            ]
        )
    return table(["gate", "fallback", "kind", "status", "what it changed", "reason"], rows, raw=True)


def timing_html(summary: Mapping[str, Any]) -> str:
    phases = [as_dict(p) for p in as_list(summary.get("phases"))]
    total = float(summary.get("wall_time_s") or 0.0) or sum(float(p.get("wall_time_s") or 0) for p in phases)
    rows = []
    for p in phases:
        w = float(p.get("wall_time_s") or 0.0)
        reruns = len(as_list(p.get("fallbacks")))
        rows.append(
            [
                esc(p.get("name")),
                esc(p.get("status")),
                esc(fmt_seconds(w)),
                esc(f"{100 * w / total:.0f}%" if total else DASH),
                esc("cached" if p.get("cached") else "computed") + (f" + {reruns} fallback rerun(s)" if reruns else ""),
            ]
        )
    for t in map(as_dict, as_list(summary.get("stress"))):
        if t.get("wall_time_s") is not None:
            w = float(t["wall_time_s"])
            rows.append(
                [
                    esc(f"stress: {t.get('name')}"),
                    esc(verdict(t.get("passed"))),
                    esc(fmt_seconds(w)),
                    esc(f"{100 * w / total:.0f}%" if total else DASH),
                    "computed",
                ]
            )
    rows.append(["<strong>total</strong>", "", f"<strong>{esc(fmt_seconds(total))}</strong>", "100%", ""])
    ex = as_dict(summary.get("executor"))
    note = f"<p>executor: {esc(ex.get('kind', DASH))}, {esc(ex.get('workers', DASH))} worker(s)</p>" if ex else ""
    return note + table(["phase", "status", "wall time", "share", "source"], rows, raw=True, cls="num")


def strip_items(summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Extra verdict-strip links: decisions, cross-lens checks and stress tests."""
    items = []
    for d in map(as_dict, as_list(as_dict(summary.get("decision")).get("decisions"))):
        k = _STATUS_KIND.get(str(d.get("status")), "warn")
        items.append(
            (f"#decision-{str(d.get('name', '')).replace(' ', '-')}", f"{d.get('name')}: {d.get('status')}", k)
        )
    cs = [as_dict(c) for c in as_list(summary.get("consistency"))]
    if cs:
        p, f = sum(c.get("passed") is True for c in cs), sum(c.get("passed") is False for c in cs)
        ne = len(cs) - p - f
        items.append(("#consistency", f"cross-lens: {p} pass, {f} fail, {ne} not evaluated", "bad" if f else "ok"))
    st = [as_dict(t) for t in as_list(summary.get("stress"))]
    if st:
        p, f = sum(t.get("passed") is True for t in st), sum(t.get("passed") is False for t in st)
        label = f"stress tests: {p} pass, {f} fail" if summary.get("stress_run") else "stress tests: not run"
        items.append(("#stress", label, "bad" if f else ("ok" if summary.get("stress_run") else "warn")))
    return items


def page_budget(profile: str) -> int:
    return PAGE_BUDGET_BYTES.get(profile, PAGE_BUDGET_BYTES["full"])


# ---- markdown -----------------------------------------------------------------------------------


def _md_cell(x: Any) -> str:
    return str(x if x is not None else "—").replace("|", "\\|").replace("\n", " ")


def _mark(p: Any) -> str:
    return {True: "pass", False: "**FAIL**", None: "not evaluated"}.get(p, str(p))


def system_md(summary: Mapping[str, Any]) -> list[str]:
    """Markdown lines: consistency, stress tests, fallbacks, hand-offs and wall time per phase."""
    lines = [
        "## Cross-lens consistency (predeclared)",
        "",
        "| # | check | kind | criterion | verdict | measured |",
        "|---|---|---|---|---|---|",
    ]
    for c in map(as_dict, as_list(summary.get("consistency") or summary.get("cross_checks"))):
        lines.append(
            f"| {c.get('number')} | {_md_cell(c.get('name'))} | {c.get('kind')} | "
            f"{_md_cell(c.get('criterion'))} | {_mark(c.get('passed'))} | {_md_cell(c.get('reason'))} |"
        )
    lines += ["", "## Stress tests", ""]
    if not summary.get("stress_run"):
        lines += ["Not run: pass `--stress` (the full profile runs them).", ""]
    lines += ["| test | expected (predeclared) | verdict | observed |", "|---|---|---|---|"]
    for t in map(as_dict, as_list(summary.get("stress"))):
        lines.append(
            f"| {_md_cell(t.get('name'))} | {_md_cell(t.get('expected'))} | {_mark(t.get('passed'))} | "
            f"{_md_cell(t.get('verdict'))} |"
        )
    lines += ["", "## Fallbacks", ""]
    fbs = [
        (as_dict(g), as_dict(g.get("fallback")))
        for g in map(as_dict, as_list(summary.get("gates")))
        if g.get("fallback")
    ]
    if not fbs:
        lines.append("No fallback ran.")
    for g, fb in fbs:
        changed = "; ".join(
            f"{c.get('artifact') or c.get('setting')}: {str(c.get('before'))[:60]} -> {str(c.get('after'))[:60]}"
            for c in map(as_dict, as_list(fb.get("changed")))
        )
        lines.append(
            f"- gate `{g.get('name')}` -> fallback `{fb.get('name')}` ({fb.get('kind')}): {fb.get('status')}; "
            f"{changed or 'nothing changed'}; {fb.get('reason')}"
        )
    lines += ["", "## Hand-offs", "", "| artifact | consumed by | kind | status |", "|---|---|---|---|"]
    for h in map(as_dict, as_list(summary.get("handoffs"))):
        lines.append(
            f"| `{h.get('artifact')}` | {h.get('consumer')} | {'required' if h.get('required') else 'optional'} "
            f"| {'used' if h.get('available') else 'not available'} |"
        )
    lines += ["", "## Wall time per phase", "", "| phase | status | wall time s |", "|---|---|---|"]
    for p in map(as_dict, as_list(summary.get("phases"))):
        lines.append(f"| {p.get('name')} | {p.get('status')} | {float(p.get('wall_time_s') or 0):.1f} |")
    for t in map(as_dict, as_list(summary.get("stress"))):
        if t.get("wall_time_s") is not None:
            lines.append(f"| stress: {t.get('name')} | {_mark(t.get('passed'))} | {float(t['wall_time_s']):.1f} |")
    lines.append(f"| **total** | | {float(summary.get('wall_time_s') or 0):.1f} |")
    return lines + [""]
