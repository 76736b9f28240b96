"""Decision record, stress tests without their hand-offs, and a gate for every phase."""

from __future__ import annotations

from types import SimpleNamespace

from multilens.lenses.registry import LENSES
from multilens.protocol.decision import decision_md, decision_record
from multilens.protocol.gates import load_policy
from multilens.protocol.stress import cpu_competitor, run_stress


def test_every_registered_phase_has_a_gate_in_the_default_policy():
    phases = {g.phase for g in load_policy().gates}
    assert [e.section for e in LENSES if e.section not in phases] == []


def _summary():
    check = {"name": "law_prediction_at_optimum", "kind": "agreement", "passed": False, "reason": "no overlap"}
    return {
        "phases": [
            {"name": "scaling", "result": {"checks": [{"name": "lnd_fit_quality", "kind": "agreement", "passed": True,
                                                       "reason": "r2 0.95"}],
                                           "assumptions": [{"text": "one power law", "status": "violated",
                                                            "how": "regimes_single_power_law failed"}]}},
            {"name": "allocation", "result": {"checks": [check], "assumptions": [{"text": "same recipe",
                                                                                "status": "holds", "how": "ok"}]}},
        ],
        "gates": [{"name": "scaling law fits the runs", "phase": "scaling", "action": "fallback", "passed": False,
                   "reason": "r2 0.8", "effective_action": "resolved",
                   "fallback": {"name": "Approach 2 allocation", "status": "applied", "reason": "swapped"}},
                  {"name": "failure-rate certificate", "phase": "robustness", "action": "stop", "passed": True,
                   "reason": "slack 0.02"}],
        "consistency": [{"number": 1, "name": "law prediction at N*, D* vs the realised loss", "passed": False,
                         "reason": "gap 0.1", "metrics": ["scaling.x", "allocation.realised_loss"]}],
        "stress": [{"name": "budget contraction", "kind": "budget", "passed": True, "verdict": "inside"}],
        "artifacts_final": {"scaling.allocation": {"n_star": 1000.0, "n_star_ci": [800.0, 1300.0], "d_star": 5e4,
                                                   "d_star_ci": [4e4, 6e4], "budget": 3e8, "width": 30,
                                                   "method": "approach2", "lr": 0.01}},
        "metrics": {"allocation.realised_loss": 0.3, "double_descent.interpolation_ratio": 1.0},
        "recommendation_stability": {"allocation": {"held": 5, "total": 6, "perturbations": ["a"] * 6}},
    }  # fmt: skip


def test_decisions_carry_the_evidence_and_a_disagreement_is_resolved_from_assumptions():
    rec = decision_record(_summary())
    byname = {d["name"]: d for d in rec["decisions"]}
    alloc = byname["allocation"]
    assert "N* = 1000" in alloc["decision"] and "approach2" in alloc["decision"]
    assert alloc["status"] == "contested"  # a failed agreement check and a failed cross-lens check bear on it
    assert {e["item"] for e in alloc["evidence"]} >= {"lnd_fit_quality", "law_prediction_at_optimum",
                                                       "law prediction at N*, D* vs the realised loss",
                                                       "budget contraction", "scaling law fits the runs"}  # fmt: skip
    assert alloc["stability"]["held"] == 5
    assert byname["release"]["decision"].startswith("GO: all 1 release stop gates pass")
    # N*/D* = 0.02, far from the interpolation ratio 1.0
    assert "no extra regularisation" in byname["regularisation"]["decision"]
    (dis,) = rec["disagreements"]
    assert (
        dis["status"] == "resolved" and "trust allocation" in dis["resolution"] and "one power law" in dis["resolution"]
    )
    md = decision_md(rec, "headline")
    assert "## Allocation: contested" in md and "holds under 5 of 6 perturbations" in md


def test_release_no_go_when_a_stop_gate_fails():
    s = _summary()
    s["gates"][1]["passed"] = False
    rel = next(d for d in decision_record(s)["decisions"] if d["name"] == "release")
    assert rel["decision"].startswith("NO-GO") and "failure-rate certificate" in rel["decision"]


def test_stress_tests_without_their_hand_offs_are_not_evaluated_with_the_reason():
    cfg = SimpleNamespace(seed=0, phases=("scaling",))
    out = run_stress(load_policy(), {"metrics": {}}, {}, None, cfg)
    assert [r["passed"] for r in out] == [None, None, None]
    assert all(r["verdict"].startswith("not evaluated: ") for r in out)


def test_cpu_competitor_starts_and_stops():
    import time

    t0 = time.perf_counter()
    with cpu_competitor(1):
        pass
    assert time.perf_counter() - t0 < 30


def test_stability_text_names_the_perturbations_under_which_a_decision_does_not_hold():
    from multilens.protocol.decision import stability_text

    st = {"held": 1, "total": 3, "perturbations": ["a", "b", "c"],
          "items": [{"perturbation": "a", "holds": True},
                    {"perturbation": "b", "holds": False, "why": "N* = 9 outside [1, 2]"},
                    {"perturbation": "c", "holds": False, "error": "RuntimeError: boom"}]}  # fmt: skip
    assert stability_text(st) == (
        "holds under 1 of 3 perturbations (a, b, c); not under: b (N* = 9 outside [1, 2]); c (RuntimeError: boom)"
    )
    assert stability_text({"held": 2, "total": 2, "perturbations": ["a", "b"], "items": []}) == (
        "holds under 2 of 2 perturbations (a, b)"
    )


def test_a_rule_that_names_its_assumptions_is_resolved_from_those_only():
    """The scaling lens's violated assumption is checked by `regimes_single_power_law`: a rule that names other
    checks is not resolved by it (the disagreement stands as a finding); one that names that check is."""
    from multilens.protocol.decision import resolve

    s = _summary()
    s["phases"][0]["result"]["assumptions"][0]["checked_by"] = ["regimes_single_power_law"]
    rule = dict(s["consistency"][0])
    assert resolve(rule | {"assumptions": ["lnd_fit_quality"]}, s)["status"] == "unresolved"
    assert "is itself a finding" in resolve(rule | {"assumptions": ["lnd_fit_quality"]}, s)["resolution"]
    assert resolve(rule | {"assumptions": ["regimes_single_power_law"]}, s)["status"] == "resolved"
    assert resolve(rule, s)["status"] == "resolved"  # no list: every assumption of the two lenses
