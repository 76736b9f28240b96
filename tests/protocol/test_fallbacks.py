"""Fallback gates (swap a hand-off, rerun with changed settings) and predeclared consistency rules."""

from __future__ import annotations

import _fake_lens as fake
import pytest

from multilens.errors import ConfigError
from multilens.lenses import registry
from multilens.lenses.registry import LensEntry
from multilens.protocol.config import run_config_from_dict
from multilens.protocol.consistency import ConsistencyRule, evaluate_rule
from multilens.protocol.gates import policy_from_dict
from multilens.protocol.runner import run_protocol

PRODUCER = LensEntry("producer", "producer", "_fake_lens", "fake producer", "p", "a float",
                     produces={"fake.value": float, "fake.alt": float})  # fmt: skip
CONSUMER = LensEntry("consumer", "consumer", "_fake_consumer", "fake consumer", "c", "a float",
                     consumes={"fake.value": float})  # fmt: skip


@pytest.fixture
def fake_registry(monkeypatch):
    entries = (PRODUCER, CONSUMER)
    monkeypatch.setattr(registry, "LENSES", entries)
    import multilens.protocol.config as pc

    monkeypatch.setattr(pc, "LENSES", entries)
    fake.CALLS.clear()


def gate(fallback):
    g = {"name": "value ok", "kind": "threshold", "inputs": {"value": "metric:fake.value"}, "op": ">=",
         "threshold": 0.5, "action": "fallback", "phase": "producer", "fallback": fallback}  # fmt: skip
    return policy_from_dict({"gate": [g]})


def cfg(value):
    return run_config_from_dict({"phases": ["producer", "consumer"], "producer": {"value": value}})


def test_swap_fallback_replaces_the_hand_off_and_says_what_changed(tmp_path, fake_registry):
    s = run_protocol(cfg(0.1), tmp_path, None, gate({"kind": "swap", "replace": {"fake.value": "fake.alt"}}))
    g = s["gates"][0]
    assert g["passed"] is False and g["fallback"]["status"] == "applied" and g["effective_action"] == "resolved"
    assert g["fallback"]["changed"] == [{"artifact": "fake.value", "before": 0.1, "after": 1.0, "from": "fake.alt"}]
    assert s["metrics"]["consumer.twice"] == pytest.approx(2.0)  # the consumer got the replacement
    assert s["status"] == "complete"


def test_rerun_fallback_scales_a_setting_until_the_gate_passes(tmp_path, fake_registry):
    fb = {"kind": "rerun", "scale": {"value": 2.0}, "max_times": 4, "then": "stop"}
    s = run_protocol(cfg(0.1), tmp_path, None, gate(fb))
    g = s["gates"][0]
    assert g["fallback"]["status"] == "applied" and g["fallback"]["reruns"] == 3
    assert [c["after"] for c in g["fallback"]["changed"]] == pytest.approx([0.2, 0.4, 0.8])
    assert s["metrics"]["consumer.twice"] == pytest.approx(1.6) and s["status"] == "complete"
    assert fake.CALLS == ["producer"] * 4 + ["consumer"]
    assert s["phases"][0]["fallbacks"][0]["gate"] == "value ok"


def test_rerun_fallback_that_cannot_fix_the_gate_acts_as_then(tmp_path, fake_registry):
    fb = {"kind": "rerun", "scale": {"value": 1.5}, "max_times": 1, "then": "stop"}
    s = run_protocol(cfg(0.1), tmp_path, None, gate(fb))
    g = s["gates"][0]
    assert g["fallback"]["status"] == "failed" and g["effective_action"] == "stop"
    assert s["status"] == "stopped" and s["blocking_gates"] == ["value ok"]


def test_swap_fallback_without_its_replacement_fails_and_warns(tmp_path, fake_registry):
    s = run_protocol(cfg(0.1), tmp_path, None, gate({"kind": "swap", "replace": {"fake.value": "fake.nothing"}}))
    g = s["gates"][0]
    assert g["fallback"]["status"] == "failed" and g["effective_action"] == "warn" and s["status"] == "complete"


def test_fallback_tables_are_validated():
    with pytest.raises(ConfigError, match="needs a \\[gate.fallback\\]"):
        policy_from_dict({"gate": [{"name": "g", "kind": "threshold", "inputs": {"value": 1.0}, "op": ">=",
                                    "threshold": 0.0, "action": "fallback", "phase": "p"}]})  # fmt: skip
    with pytest.raises(ConfigError, match="rerun"):
        gate({"kind": "rerun"})


# ---- consistency rules ---------------------------------------------------------------------------


def rule(compare, metrics, **kw):
    return ConsistencyRule("r", tuple(metrics), compare, **kw)


def iv(name, v, lo, hi):
    return {name: v, f"{name}_ci_low": lo, f"{name}_ci_high": hi}


def test_overlap_band_and_log_scale():
    m = iv("a.x", 1.0, 0.9, 1.1) | iv("b.y", 1.3, 1.2, 1.4)
    assert evaluate_rule(rule("overlap", ["a.x", "b.y"]), m).passed is False
    assert evaluate_rule(rule("overlap", ["a.x", "b.y"], band=0.1), m).passed is True  # gap 0.1 exactly
    m = iv("a.x", 1.0, 0.5, 2.0) | iv("b.y", 10.0, 8.0, 20.0)  # gap 0.6 decades
    assert evaluate_rule(rule("overlap", ["a.x", "b.y"], scale="log10", band=0.5), m).passed is False
    assert evaluate_rule(rule("overlap", ["a.x", "b.y"], scale="log10", band=0.7), m).passed is True


def test_all_overlap_le_positive_abs_diff_and_not_evaluated():
    m = iv("a.x", 1.0, 0.9, 1.1) | iv("b.y", 1.05, 1.0, 1.2) | iv("c.z", 1.5, 1.3, 1.6)
    assert evaluate_rule(rule("all_overlap", ["a.x", "b.y"]), m).passed is True
    assert evaluate_rule(rule("all_overlap", ["a.x", "b.y", "c.z"]), m).passed is False
    assert evaluate_rule(rule("le", ["c.z", "a.x"], kind="bound"), m).passed is False  # 1.3 > 1.1
    assert evaluate_rule(rule("le", ["a.x", "c.z"], kind="bound"), m).passed is True
    assert evaluate_rule(rule("positive", ["a.x"]), m).passed is True
    assert evaluate_rule(rule("positive", ["a.x"]), iv("a.x", 0.2, -0.1, 0.5)).passed is False
    assert evaluate_rule(rule("abs_diff", ["a.x", "b.y"], band=0.06), m).passed is True
    assert evaluate_rule(rule("abs_diff", ["a.x", "b.y"], band=0.04), m).passed is False
    c = evaluate_rule(rule("overlap", ["a.x", "d.w"]), m)
    assert c.passed is None and "d.w" in c.reason and "phase(s) d" in c.reason


def test_default_policy_declares_the_ten_cross_lens_checks_and_three_stress_tests():
    from multilens.protocol.gates import load_policy

    p = load_policy()
    assert set(range(1, 11)) <= {c.number for c in p.consistency}
    assert {t.kind for t in p.stress} == {"shift", "contention", "budget"}
    assert all(t.expected for t in p.stress)


def test_a_rerun_fallback_never_undoes_a_swap_of_the_same_phase(tmp_path, fake_registry):
    base = {"kind": "threshold", "inputs": {"value": "metric:fake.value"}, "op": ">=", "action": "fallback",
            "phase": "producer"}  # fmt: skip
    gates = [
        base
        | {"name": "swap it", "threshold": 5.0, "fallback": {"kind": "swap", "replace": {"fake.value": "fake.alt"}}},
        base
        | {
            "name": "rerun it",
            "threshold": 0.5,
            "fallback": {"kind": "rerun", "scale": {"value": 2.0}, "max_times": 4},
        },
    ]
    s = run_protocol(cfg(0.1), tmp_path, None, policy_from_dict({"gate": gates}))
    g = {x["name"]: x for x in s["gates"]}
    assert [x["name"] for x in s["gates"]] == ["swap it", "rerun it"]  # reported in the policy's order
    assert g["rerun it"]["fallback"]["status"] == "applied"  # 0.1 -> 0.8
    assert g["swap it"]["fallback"]["status"] == "applied"  # then 0.8 < 5: swapped for 10 * 0.8
    assert s["metrics"]["consumer.twice"] == pytest.approx(16.0)
