"""Governance and the headline are derived from what ran (issue 8, items 4 and 8)."""

from __future__ import annotations

from multilens.protocol import governance
from multilens.protocol.capstone import headline, overall_check_counts


def _phase(checks, status="done", assumptions=(), missing=()):
    return {
        "name": "p",
        "status": status,
        "error": None if status == "done" else "RuntimeError: boom",
        "missing_checks": list(missing),
        "result": {"checks": list(checks), "assumptions": list(assumptions)} if status == "done" else None,
    }


def _check(name, passed, kind="agreement", severity="error"):
    return {"name": name, "passed": passed, "kind": kind, "severity": severity, "reason": f"{name} reason"}


def _summary(phases, cross=(), gates=(), status="complete"):
    s = {
        "phases": list(phases),
        "cross_checks": list(cross),
        "gates": list(gates),
        "status": status,
        "failed_phases": [p["name"] for p in phases if p["status"] == "failed"],
        "blocking_gates": [],
    }
    return s


def test_failed_cross_lens_checks_and_self_tests_raise_risks():
    s = _summary(
        [_phase([_check("ok", True), _check("self", False, kind="sanity")])],
        cross=[_check("scaling floors agree", False)],
    )
    titles = [r["title"] for r in governance.risks(s)]
    assert "p: self-test `self` failed" in titles
    assert "cross-lens check `scaling floors agree` failed" in titles


def test_a_run_with_failed_error_checks_is_not_plain_complete():
    s = _summary([_phase([_check("a", False), _check("b", False, severity="info")])])
    assert headline(s).startswith("protocol complete with 1 failed error-severity check")
    s2 = _summary([_phase([_check("a", True)])])
    assert headline(s2).startswith("protocol complete: every phase ran")


def test_a_failed_phase_counts_its_key_checks_as_not_evaluated():
    s = _summary([_phase([], status="failed", missing=("k1", "k2"))], status="failed")
    assert overall_check_counts(s)["agreement"]["not evaluated"] == 2
    risk = governance.risks(s)[0]
    assert "2 key check(s) not evaluated: k1, k2" in risk["trigger"]
    assert headline(s).startswith("protocol failed: phase(s) `p` failed")


def test_assumption_status_is_copied_never_recomputed():
    a = {"text": "t", "source": "s", "checked_by": ["x"], "status": "violated", "how": "check `x` (fail): r"}
    s = _summary([_phase([_check("x", True)], assumptions=[a])])  # the check now passes: status stays the lens's
    assert governance.assumptions(s)[0]["status"] == "violated"
