"""Governance artifacts: assumptions log, risk register and reproducibility checklist.

Everything here is derived from what the run measured: an assumption's status comes from the
check that tests it, a risk is raised by a failed check, gate or phase, and each checklist item's
status is computed (a re-executed run compared bit for bit, recorded seeds and hashes, versions
matching the pins), never asserted.
"""

from __future__ import annotations

import math
from typing import Any

from multilens.experiments.executors import execute_task
from multilens.experiments.store import Store

_TIMING_KEYS = ("wall_time_s",)


def assumptions(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each phase's assumptions with the status its lens derived from the checks it names.

    The status is computed once, in :class:`multilens.results.LensResult`, and copied here
    unchanged, so report.html, report.md and assumptions.md show the same status.
    """
    out = []
    for ph in summary["phases"]:
        for a in (ph.get("result") or {}).get("assumptions", []):
            out.append({"phase": ph["name"], "text": a["text"], "source": a["source"], "status": a["status"],
                        "checked_by": a.get("how") or "not checked in this run"})  # fmt: skip
    return out


def failed_error_checks(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(phase, check) for every failed error-severity check, evidence and sanity alike."""
    return [
        (ph["name"], c)
        for ph in summary["phases"]
        for c in (ph.get("result") or {}).get("checks", [])
        if c["passed"] is False and c.get("severity", "error") == "error"
    ]


def risks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The risk register: one risk per failed phase, failed check, failed cross-check and failed gate."""
    out: list[dict[str, Any]] = []

    def add(title: str, trigger: str, likelihood: str, impact: str, mitigation: str, status: str) -> None:
        out.append({"id": f"R{len(out) + 1}", "title": title, "trigger": trigger, "likelihood": likelihood,
                    "impact": impact, "mitigation": mitigation, "status": status})  # fmt: skip

    for ph in summary["phases"]:
        if ph["status"] in ("failed", "skipped"):
            first = (ph.get("error") or "").splitlines()[0] if ph.get("error") else ""
            missing = ph.get("missing_checks") or []
            add(f"phase `{ph['name']}` {ph['status']}",
                first + (f" ({len(missing)} key check(s) not evaluated: {', '.join(missing)})" if missing else ""),
                "observed", "high: its lens contributes no evidence",
                "read the error in summary.json, fix the input or code, re-run with the same --out "
                "(finished work is kept)", "open")  # fmt: skip
    for phase, c in failed_error_checks(summary):
        if c.get("kind") == "sanity":
            add(f"{phase}: self-test `{c['name']}` failed", c["reason"], "observed",
                "high: an identity the implementation must satisfy does not hold; the lens's numbers are suspect",
                "report it as a bug with summary.json attached; do not use this lens's results", "open")  # fmt: skip
        else:
            add(f"{phase}: {c.get('kind', 'check')} check `{c['name']}` failed", c["reason"], "observed",
                "medium: the measurement disagrees with the theory's prediction or bound",
                "check the theorem's assumptions for this setting; rerun with the `full` profile (more seeds) "
                "to tell noise from a real disagreement; do not rely on this estimate for decisions",
                "open")  # fmt: skip
    for c in summary.get("cross_checks", []):
        if c["passed"] is False:
            add(f"cross-lens check `{c['name']}` failed", c["reason"], "observed",
                "medium: two lenses disagree about the same quantity",
                "find which lens's assumptions are violated before acting on either", "open")  # fmt: skip
    for g in summary["gates"]:
        if g["passed"] is True or g.get("skipped"):
            continue
        act = g.get("effective_action", g["action"])
        fb = g.get("fallback") or {}
        if act == "resolved":
            changed = "; ".join(f"{c.get('artifact') or c.get('setting')}: {c.get('before')} -> {c.get('after')}"
                                for c in fb.get("changed", []))  # fmt: skip
            add(f"gate `{g['name']}` failed; fallback `{fb.get('name')}` applied", f"{g['reason']}; {changed}",
                "observed", "low: the fallback replaced what the failed gate guards",
                "see the fallback's changes in the report; the original path stays unvalidated",
                "mitigated")  # fmt: skip
            continue
        add(f"gate `{g['name']}` {'not evaluated' if g['passed'] is None else 'failed'}"
            + (f" (fallback `{fb.get('name')}` failed: {fb.get('reason')})" if fb else ""), g["reason"], "observed",
            "high: release blocked" if act == "stop" else "medium: release warning",
            "address the measured cause or change the policy threshold with a written justification",
            "blocking" if act == "stop" else "open")  # fmt: skip
    for t in summary.get("stress", []):
        if t.get("passed") is False:
            add(f"stress test `{t['name']}` failed", t["verdict"], "observed",
                "medium: a decision does not hold under the stress its policy predeclared",
                f"expected: {t['expected']}; restrict the decision or fix its cause before relying on it",
                "open")  # fmt: skip
    add("small-model, CPU-only evidence", "always: every lens runs on small models and bundled data",
        "likely", "medium: exponents and thresholds may not transfer to large models",
        "treat fitted laws as hypotheses for the user's own runs; refit with `multilens scaling fit` on them",
        "accepted")  # fmt: skip
    return out


def _strip_timing(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _strip_timing(v) for k, v in d.items() if not any(k.endswith(t) for t in _TIMING_KEYS)}
    return d


def rerun_matches(store: Store) -> tuple[bool | None, str]:
    """Re-execute the first finished run of the store in this process; compare metrics exactly."""
    done = store.runs(status="done")
    if not done:
        return None, "no finished run in the store to re-execute"
    rec = done[0]
    task = store.get_meta(f"task:{rec.sweep}")
    if not task:
        return None, f"sweep `{rec.sweep}` recorded no task"
    out = execute_task(task, dict(rec.config, seed=rec.seed))
    if not out["ok"]:
        return False, f"re-executing run {rec.config_hash}/{rec.seed} raised: {out['error'].splitlines()[0]}"
    a, b = _strip_timing(out["result"]["metrics"]), _strip_timing(rec.metrics)
    same = a == b
    return same, (
        f"run {rec.config_hash}/{rec.seed} re-executed: metrics "
        + ("identical" if same else f"differ: {sorted(k for k in a if a.get(k) != b.get(k))}")
    )


def checklist(summary: dict[str, Any], manifest: dict[str, Any], store: Store | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []

    def item(name: str, ok: bool | None, evidence: str) -> None:
        items.append(
            {"item": name, "status": "done" if ok else ("missing" if ok is False else "partial"), "evidence": evidence}
        )

    item("seeds recorded", bool(manifest.get("seeds")), f"seeds: {manifest.get('seeds')}")
    hashes = manifest.get("config_hashes") or {}
    item("config hashes recorded", bool(hashes) and all(hashes.values()), f"{len(hashes)} phase config hashes")
    pins = manifest.get("package_versions", {})
    torch_ok = str(pins.get("torch") or "").startswith("2.13.0")
    item("pinned torch==2.13.0 in use", torch_ok, f"torch {pins.get('torch')}")
    commit, dirty = manifest.get("git_commit"), manifest.get("git_dirty")
    item(
        "code version recorded (git commit, clean tree)",
        None if commit and dirty else bool(commit),
        f"commit {commit or 'unknown'}" + (" with uncommitted changes" if dirty else ""),
    )
    item(
        "data checksums recorded",
        bool(manifest.get("data_checksums")),
        ", ".join(f"{k}: {str(v)[:12]}…" for k, v in (manifest.get("data_checksums") or {}).items()),
    )
    ests = [e for ph in summary["phases"] for e in ((ph.get("result") or {}).get("estimates", []))]
    with_ci = [e for e in ests if e.get("ci_low") is not None or e.get("stderr") is not None]
    explained = [
        e
        for e in ests
        if e not in with_ci and (e.get("no_interval_reason") or (e.get("value") is None and e.get("note")))
    ]
    item(
        "every estimate has an interval, or says why not",
        bool(ests) and len(with_ci) + len(explained) == len(ests),
        f"{len(with_ci)} of {len(ests)} with an interval or standard error; {len(explained)} deterministic or "
        f"unmeasured, each with its reason; {len(ests) - len(with_ci) - len(explained)} neither",
    )
    iters = [e for e in ests if e.get("converged") is not None]
    conv = [e for e in iters if e["converged"]]
    item(
        "every iterative estimate converged",
        len(conv) == len(iters),
        f"{len(conv)} of {len(iters)} iterative estimates converged",
    )
    counts = (store.counts() if store else summary.get("store_counts")) or {}
    unfinished = counts.get("running", 0) + counts.get("failed", 0)
    item("no unfinished or failed runs in the store", unfinished == 0, f"store: {counts}")
    if store is not None:
        ok, why = rerun_matches(store)
        item("a stored run re-executes to identical metrics", ok, why)
    checks = [c for ph in summary["phases"] for c in ((ph.get("result") or {}).get("checks", []))]
    # A failed or skipped phase's key checks were not evaluated; its reason is the phase's error.
    checks += [{"name": n, "passed": None, "reason": f"phase `{ph['name']}` {ph['status']}"}
               for ph in summary["phases"] for n in ph.get("missing_checks") or []]  # fmt: skip
    evaluated = [c for c in checks if c["passed"] is not None]
    unexplained = [c for c in checks if c["passed"] is None and not c.get("reason")]
    status = (len(evaluated) == len(checks) and bool(checks)) or (None if not unexplained and checks else False)
    item(
        "every check evaluated (or its reason stated)",
        status,
        f"{len(evaluated)} of {len(checks)} checks evaluated; {len(checks) - len(evaluated) - len(unexplained)} not "
        f"evaluated with a stated reason; {len(unexplained)} without one",
    )
    stale = [ph for ph in summary["phases"] if ph.get("cached_from")]
    item(
        "every result computed by this code",
        not stale,
        "all phase results computed (or cached) by the code of this run"
        if not stale
        else "reused with --reuse-stale: " + ", ".join(f"{ph['name']} cached from {ph['cached_from']}" for ph in stale),
    )
    return items


def _md_cell(x: Any) -> str:
    if isinstance(x, float):
        x = f"{x:.4g}" if math.isfinite(x) else "—"
    return str(x if x is not None else "—").replace("|", "\\|").replace("\n", " ")


def md_table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def assumptions_md(items: list[dict[str, Any]]) -> str:
    head = (
        "# Assumptions log\n\nEach assumption a phase relied on, where it comes from, and whether this run "
        "checked it.\n\n"
    )
    return head + md_table(
        ["phase", "assumption", "source", "status", "how checked"],
        [[a["phase"], a["text"], a["source"], a["status"], a["checked_by"]] for a in items],
    )


def risks_md(items: list[dict[str, Any]]) -> str:
    head = "# Risk register\n\nRaised automatically by failed phases, checks and gates of this run.\n\n"
    return head + md_table(
        ["id", "risk", "trigger", "likelihood", "impact", "mitigation", "status"],
        [
            [r["id"], r["title"], r["trigger"], r["likelihood"], r["impact"], r["mitigation"], r["status"]]
            for r in items
        ],
    )


def checklist_md(items: list[dict[str, Any]]) -> str:
    head = "# Reproducibility checklist\n\nEach item's status is computed from this run's artifacts.\n\n"
    return head + md_table(["item", "status", "evidence"], [[i["item"], i["status"], i["evidence"]] for i in items])
