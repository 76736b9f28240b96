"""The chapter's four release examples as gate rules, with its numbers (seed lines 57-96)."""

from __future__ import annotations

import pytest

from multilens.errors import ConfigError
from multilens.protocol.gates import GateRule, evaluate_gate, policy_from_dict


def rule(kind, inputs, op, threshold, action="stop", tol=1e-9):
    return GateRule(
        name=f"{kind} gate", kind=kind, inputs=inputs, op=op, threshold=threshold, action=action, tolerance=tol
    )


def test_unified_objective_matches_chapter():
    r = rule("objective", {"r_emp": 0.42, "lam": 0.30, "omega": 0.50, "rho": 0.40, "w": 0.20}, "<=", 0.70)
    res = evaluate_gate(r, {})
    assert res.value == pytest.approx(0.65, abs=1e-12)
    assert res.passed is True
    worse = evaluate_gate(
        rule("objective", {"r_emp": 0.42, "lam": 0.30, "omega": 0.50, "rho": 0.40, "w": 0.45}, "<=", 0.70), {}
    )
    assert worse.value == pytest.approx(0.75, abs=1e-12)
    assert worse.passed is False and worse.blocks


def test_geometry_score_matches_chapter_and_threshold_is_met_up_to_rounding():
    sharp = evaluate_gate(rule("geometry", {"m": 0.18, "kappa": 4.0}, ">=", 0.12), {})
    assert sharp.value == pytest.approx(0.036, abs=1e-12)
    assert sharp.passed is False
    flat = evaluate_gate(rule("geometry", {"m": 0.18, "kappa": 0.5}, ">=", 0.12), {})
    assert flat.value == pytest.approx(0.12, abs=1e-12)
    assert flat.passed is True  # exactly at the threshold: the chapter says it meets it


def test_composition_bound_matches_chapter():
    ok = evaluate_gate(rule("composition", {"lipschitz": [1.2, 1.5, 1.1]}, "<=", 2.0), {})
    assert ok.value == pytest.approx(1.98, abs=1e-12) and ok.passed is True
    bad = evaluate_gate(rule("composition", {"lipschitz": [1.2, 1.8, 1.1]}, "<=", 2.0), {})
    assert bad.value == pytest.approx(2.376, abs=1e-12) and bad.passed is False


def test_certificate_slack_needs_tolerance():
    # In floating point 0.015 - 0.012 is 0.0029999999999999996, not 0.003.
    assert 0.015 - 0.012 != 0.003
    ok = evaluate_gate(rule("certificate", {"u": 0.012, "u_max": 0.015}, ">=", 0.003), {})
    assert ok.passed is True
    strict = evaluate_gate(rule("certificate", {"u": 0.012, "u_max": 0.015}, ">=", 0.003, tol=0.0), {})
    assert strict.passed is False  # without the tolerance the chapter's own example would block
    blocked = evaluate_gate(rule("certificate", {"u": 0.017, "u_max": 0.015}, ">=", 0.0), {})
    assert blocked.value == pytest.approx(-0.002, abs=1e-12) and blocked.passed is False and blocked.blocks


def test_metric_inputs_and_missing_metric_is_not_a_pass():
    r = rule("geometry", {"m": "metric:curvature.margin", "kappa": "metric:curvature.kappa"}, ">=", 0.12)
    assert evaluate_gate(r, {"curvature.margin": 0.18, "curvature.kappa": 0.5}).passed is True
    missing = evaluate_gate(r, {"curvature.margin": 0.18})
    assert missing.passed is None and missing.blocks and "curvature.kappa" in missing.reason
    nan = evaluate_gate(r, {"curvature.margin": float("nan"), "curvature.kappa": 0.5})
    assert nan.passed is None


def test_warn_gate_does_not_block():
    r = rule("threshold", {"value": 0.5}, ">=", 0.9, action="warn")
    res = evaluate_gate(r, {})
    assert res.passed is False and not res.blocks


@pytest.mark.parametrize(
    "gate, fragment",
    [
        ({"name": "g", "kind": "geometry", "inputs": {"m": 1}, "op": ">=", "threshold": 0.1}, "missing ['kappa']"),
        ({"name": "g", "kind": "nope", "inputs": {}, "op": ">=", "threshold": 0.1}, "kind`"),
        (
            {"name": "g", "kind": "threshold", "inputs": {"value": 1}, "op": "=>", "threshold": 0.1},
            "op` must be one of",
        ),
        (
            {"name": "g", "kind": "threshold", "inputs": {"value": 1}, "op": ">=", "threshold": 0.1, "colour": 1},
            "colour",
        ),
        ({"name": "g", "kind": "threshold", "inputs": {"value": 1}, "op": ">=", "threshold": "high"}, "threshold"),
    ],
)
def test_bad_policy_is_a_clear_error(gate, fragment):
    with pytest.raises(ConfigError) as e:
        policy_from_dict({"gate": [gate]}, "p.toml")
    assert fragment in str(e.value)


def test_default_policy_loads():
    from multilens.protocol.gates import load_policy

    pol = load_policy()
    assert pol.gates and all(g.phase for g in pol.gates)
