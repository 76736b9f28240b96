"""The Markdown report of a protocol run: the HTML report's content without the plots.

:func:`render_markdown` writes the same sections as :func:`multilens.report.html.render_html`
(header, phase overview, gates, each phase's estimates, checks, tables, assumptions and notes,
cross-lens checks, recommendations, risks, checklist, artifacts, manifest) as GitHub-flavoured
Markdown. Figures are listed by title. Text from configs and data has every ``<`` that could
open raw HTML written as ``&lt;`` (Markdown passes raw HTML through) and, in table cells, backslashes and pipes escaped
and newlines turned into ``<br>`` so every table keeps its shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from multilens.report.html import (
    DASH,
    as_dict,
    as_list,
    check_counts,
    failed_first,
    figure_spec,
    fmt_converged,
    fmt_counts,
    fmt_interval,
    fmt_level_method,
    fmt_n,
    fmt_num,
    fmt_rule,
    fmt_seconds,
    fmt_value_unit,
    jsonable_or_str,
    phase_result,
    split_checks,
    to_text,
    verdict,
)

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def _no_html(text: str) -> str:
    """Write "<" as "&lt;" where it could open raw HTML (a tag, comment, declaration or autolink).

    CommonMark only treats "<" followed by a letter, "/", "!" or "?" as HTML, so "<=" and "a < b"
    stay readable in the raw file.
    """
    return _TAG_START.sub("&lt;", text)


def md_text(value: Any) -> str:
    """Display text safe in Markdown prose: raw HTML neutralised, on one line."""
    return " ".join(_no_html(to_text(value)).splitlines())


def md_cell(value: Any) -> str:
    """Display text safe in a GFM table cell (backslashes and pipes escaped, newlines as <br>)."""
    text = _no_html(to_text(value)).replace("\\", "\\\\").replace("|", "\\|")
    return "<br>".join(line.strip() for line in text.splitlines()).strip() or " "


def md_table(columns: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A GFM table; rows are padded so every line has the same number of cells."""
    width = max([len(columns)] + [len(r) for r in rows])
    cols = list(columns) + [""] * (width - len(columns))

    def line(cells: Sequence[Any]) -> str:
        padded = list(cells) + [""] * (width - len(cells))
        return "| " + " | ".join(md_cell(c) for c in padded) + " |"

    return "\n".join([line(cols), "|" + "|".join(["---"] * width) + "|"] + [line(r) for r in rows])


def _fence(text: str) -> str:
    """A fenced code block whose fence is longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _types_text(types: Any) -> str:
    items = as_dict(types)
    return ", ".join(f"{k}: {v}" for k, v in items.items()) if items else DASH


def estimates_md(estimates: Sequence[Any]) -> str:
    """The estimates table."""
    rows = []
    for e in map(as_dict, estimates):
        conv, n_iter = fmt_converged(e)
        rows.append([
            e.get("name", ""), fmt_value_unit(e), fmt_interval(e), fmt_level_method(e),
            fmt_num(e.get("stderr")), fmt_n(e), conv, n_iter, e.get("note") or "",
        ])  # fmt: skip
    cols = ["estimate", "value", "interval", "level · method", "stderr", "n", "converged", "iterations", "note"]
    return md_table(cols, rows)


def checks_md(checks: Sequence[Any]) -> str:
    """The checks table (failed first); the verdict is computed from ``passed``."""
    rows = [
        [
            c.get("name", ""), c.get("kind") or DASH, verdict(c.get("passed")), fmt_num(c.get("observed")),
            fmt_num(c.get("expected")), fmt_num(c.get("tolerance")), c.get("criterion") or DASH,
            c.get("severity") or DASH, c.get("reason") or "",
        ]
        for c in failed_first(checks)
    ]  # fmt: skip
    cols = ["check", "kind", "verdict", "observed", "expected", "tolerance", "criterion", "severity", "reason"]
    return md_table(cols, rows)


def figures_md(figures: Sequence[Any]) -> str:
    """Figures listed by title, with their caption (or why the HTML report cannot draw them)."""
    lines = []
    for f in map(as_dict, figures):
        _, problem = figure_spec(f)
        title = f.get("title") or f.get("key") or "figure"
        extra = f": {md_text(f['caption'])}" if f.get("caption") else ""
        note = f" _(not drawable: {md_text(problem)})_" if problem else ""
        lines.append(f"- **{md_text(title)}** ({md_text(f.get('key') or DASH)}){extra}{note}")
    return "\n".join(lines)


def phase_md(phase: Mapping[str, Any], index: int) -> str:
    """One phase's section."""
    result = phase_result(phase)
    status = phase.get("status") or "unknown"
    parts = [
        f"### {index + 1}. {md_text(phase.get('title') or phase.get('name') or 'phase')} "
        f"({md_text(phase.get('name', ''))}) — {md_text(status)}",
        "\n".join([
            f"- **Status:** {md_text(status)}",
            f"- **Wall time:** {fmt_seconds(phase.get('wall_time_s'))}",
            f"- **Consumes:** {md_text(_types_text(phase.get('consumes')))}",
            f"- **Produces:** {md_text(_types_text(phase.get('produces')))}",
        ] + ([f"- **Lens:** {md_text(result['lens'])}"] if result.get("lens") else [])),
    ]  # fmt: skip
    if phase.get("error"):
        parts.append("**Error:**\n\n" + _fence(str(phase["error"])))
    metrics = as_dict(phase.get("metrics"))
    if metrics:
        parts.append(
            "#### Gate metrics\n\n" + md_table(["metric", "value"], [[k, fmt_num(v)] for k, v in metrics.items()])
        )
    sub: list[tuple[str, str]] = [
        ("Figures (drawn in report.html)", figures_md(as_list(result.get("figures")))),
        ("Estimates", estimates_md(as_list(result.get("estimates"))) if result.get("estimates") else ""),
    ]
    evidence, sanity = split_checks(as_list(result.get("checks")))
    if evidence:
        sub.append((f"Evidence checks ({fmt_counts(check_counts(evidence))})", checks_md(evidence)))
    if sanity:
        sub.append((f"Self-tests, not evidence ({fmt_counts(check_counts(sanity))})", checks_md(sanity)))
    tables = []
    for t in map(as_dict, as_list(result.get("tables"))):
        rows = [[to_text(v) for v in as_list(r)] for r in as_list(t.get("rows"))]
        cap = f"\n\n_{md_text(t['caption'])}_" if t.get("caption") else ""
        title = md_text(t.get("title") or t.get("key") or "table")
        tables.append(f"**{title}**\n\n{md_table(as_list(t.get('columns')), rows)}{cap}")
    sub.append(("Tables", "\n\n".join(tables)))
    predictions = as_dict(result.get("predictions"))
    if predictions:
        sub.append(("Predictions", md_table(["name", "value"], [[k, to_text(v)] for k, v in predictions.items()])))
    assumptions = [as_dict(a) for a in as_list(result.get("assumptions"))]
    if assumptions:
        rows = [
            [
                a.get("text", ""),
                a.get("source") or DASH,
                a.get("how") or a.get("checked_by") or DASH,
                a.get("status") or "unchecked",
            ]
            for a in assumptions
        ]
        sub.append(("Assumptions", md_table(["assumption", "source", "checked by", "status"], rows)))
    sub.append(("Notes", "\n".join(f"- {md_text(n)}" for n in as_list(result.get("notes")))))
    parts += [f"#### {heading}\n\n{body}" for heading, body in sub if body]
    if not result:
        parts.append("_This phase produced no result._")
    return "\n\n".join(parts)


def header_md(summary: Mapping[str, Any]) -> str:
    """Title and key facts."""
    phases = [as_dict(p) for p in as_list(summary.get("phases"))]
    all_checks = [c for p in phases for c in as_list(phase_result(p).get("checks"))] + as_list(
        summary.get("cross_checks")
    )
    gates = [as_dict(g) for g in as_list(summary.get("gates"))]
    stopped = f" (stopped at {md_text(summary['stopped_at'])})" if summary.get("stopped_at") else ""
    evidence, sanity = split_checks(all_checks)
    ev = check_counts(evidence)
    missing = sum(len(as_list(p.get("missing_checks"))) for p in phases)
    facts = [
        f"- **Status:** {md_text(summary.get('status') or 'unknown')}{stopped}",
        f"- **Verdict:** {md_text(summary.get('headline') or DASH)}",
        f"- **Profile:** {md_text(summary.get('profile') or DASH)}",
        f"- **Seed:** {md_text(summary.get('seed'))}",
        f"- **Wall time:** {fmt_seconds(summary.get('wall_time_s'))}",
        f"- **Started (UTC):** {md_text(summary.get('started_utc') or DASH)}",
        f"- **Evidence checks (agreement, bound):** {fmt_counts((ev[0], ev[1], ev[2] + missing))}",
        f"- **Self-tests (sanity):** {fmt_counts(check_counts(sanity))}",
        f"- **Gates passed:** {sum(1 for g in gates if g.get('passed') is True)} / {len(gates)}",
    ]
    return f"# {md_text(summary.get('title') or 'multilens report')}\n\n" + "\n".join(facts)


def overview_md(phases: Sequence[Mapping[str, Any]]) -> str:
    """One row per phase."""
    rows = []
    for i, p in enumerate(phases):
        r = phase_result(p)
        evidence, _ = split_checks(as_list(r.get("checks")))
        n_pass, n_fail, n_ne = check_counts(evidence)
        n_ne += len(as_list(p.get("missing_checks")))
        rows.append([
            i + 1, p.get("title") or p.get("name") or "phase", p.get("name", ""), p.get("status") or "unknown",
            fmt_seconds(p.get("wall_time_s")), n_pass, n_fail, n_ne,
            len(as_list(r.get("estimates"))), len(as_list(r.get("figures"))),
        ])  # fmt: skip
    cols = ["#", "phase", "name", "status", "wall time", "evidence pass", "evidence fail", "evidence not evaluated",
            "estimates", "figures"]  # fmt: skip
    return md_table(cols, rows) if rows else "_No phases ran._"


def gates_md(gates: Sequence[Any]) -> str:
    """The gates table."""
    rows = [
        [g.get("name", ""), g.get("phase") or DASH, fmt_rule(g), fmt_num(g.get("value")), g.get("action") or DASH,
         verdict(g.get("passed")), g.get("reason") or ""]
        for g in map(as_dict, gates)
    ]  # fmt: skip
    cols = ["gate", "phase", "rule", "value", "action", "verdict", "reason"]
    return md_table(cols, rows) if rows else "_No gates were configured._"


def manifest_md(manifest: Mapping[str, Any]) -> str:
    """Versions, hardware, seeds, config and checksums."""
    scalars = [[k, to_text(v)] for k, v in manifest.items() if not isinstance(v, Mapping)]
    parts = [md_table(["name", "value"], scalars)] if scalars else []
    for key, value in manifest.items():
        if not isinstance(value, Mapping):
            continue
        if key == "config":
            text = json.dumps(jsonable_or_str(value), indent=2, ensure_ascii=False)
            parts.append(f"**{md_text(key)}**\n\n" + _fence(text))
        elif value:
            rows = [[k, to_text(v)] for k, v in value.items()]
            parts.append(f"**{md_text(key.replace('_', ' '))}**\n\n" + md_table(["name", "value"], rows))
    return "\n\n".join(parts) or "_Empty manifest._"


def recommendations_md(recs: Sequence[Any]) -> str:
    """Recommendations with their source."""
    items = [as_dict(r) for r in recs]
    lines = [
        f"- {md_text(r.get('text', ''))} _({md_text(r.get('source') or DASH)}; rests on "
        f"{md_text(', '.join(map(str, as_list(r.get('rests_on')))) or DASH)})_"
        for r in items
    ]
    return "\n".join(lines) or "_No recommendations._"


_RISK_KEYS = ("id", "title", "trigger", "likelihood", "impact", "mitigation", "status")


def risks_md(risks: Sequence[Any]) -> str:
    """The risk register."""
    rows = [[as_dict(r).get(k) or DASH for k in _RISK_KEYS] for r in risks]
    return md_table(_RISK_KEYS, rows) if rows else "_No risks recorded._"


def checklist_md(items: Sequence[Any]) -> str:
    """The reproducibility checklist."""
    rows = [[c.get("item", ""), c.get("status") or DASH, c.get("evidence") or ""] for c in map(as_dict, items)]
    return md_table(["item", "status", "evidence"], rows) if rows else "_No checklist._"


def artifacts_md(artifacts: Mapping[str, Any]) -> str:
    """Files written by the run."""
    rows = [[k, v] for k, v in artifacts.items()]
    return md_table(["artifact", "path"], rows) if rows else "_No artifacts._"


def render_markdown(summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    """The full Markdown report of a protocol run (see the module docstring)."""
    summary, manifest = as_dict(summary), as_dict(manifest)
    phases = [as_dict(p) for p in as_list(summary.get("phases"))]
    from multilens.protocol.decision import decision_md
    from multilens.report.system import system_md

    phase_text = "\n\n".join(phase_md(p, i) for i, p in enumerate(phases)) or "_No phases ran._"
    record = as_dict(summary.get("decision"))
    decision = decision_md(record).split("\n", 2)[2] if record.get("decisions") else "_No decision record._"
    decision = decision.replace("\n## ", "\n### ")
    system = "\n".join(system_md(summary)).replace("\n## ", "\n### ").removeprefix("## ")
    sections = [
        ("Decision record", decision),
        ("Overview", overview_md(phases)),
        ("Go/no-go gates", gates_md(as_list(summary.get("gates")))),
        ("The protocol as one system", "### " + system),
        ("Phases", phase_text),
        ("Recommendations", recommendations_md(as_list(summary.get("recommendations")))),
        ("Risk register", risks_md(as_list(summary.get("risks")))),
        ("Reproducibility checklist", checklist_md(as_list(summary.get("checklist")))),
        ("Artifacts", artifacts_md(as_dict(summary.get("artifacts")))),
        ("Manifest", manifest_md(manifest)),
    ]
    return "\n\n".join([header_md(summary)] + [f"## {title}\n\n{body}" for title, body in sections]) + "\n"
